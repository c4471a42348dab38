"""`gptx train`: train a GPT from scratch, fine-tune one (gptx checkpoint or Hugging Face GPT-2), or resume a run."""
from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import time
from pathlib import Path

from gptx.cli._numbers import integer, number

# Presets: a model shape, its tokenizer, and training defaults that suit it.
# shakespeare: a byte-level model of 0.8 M parameters (4 layers, 128 wide, 64-byte context), trained nanoGPT
# "baby GPT" style on 12 x 64 bytes per step. Short contexts and small batches buy many steps per minute, which is
# what a few-minute run on 2 cores needs: measured on a busy 2-core machine (1 thread), 600 steps in 80 s reach val
# loss 2.07 (from 5.55), where 16 x 128-byte batches reached only 2.39 in the same time; lr 5e-3 beat 2e-3 and 1e-2.
PRESETS = {
    "shakespeare": {
        "model": dict(n_layer=4, n_head=4, n_embd=128, block_size=64),
        "tokenizer": "bytes",
        "train": dict(steps=2000, batch_size=12, block_size=64, grad_accum=1, lr=5e-3, min_lr=5e-4, warmup=50,
                      weight_decay=0.1, grad_clip=1.0, eval_every=200, eval_batches=8, ckpt_every=500, log_every=20),
    },
    # GPT-2 small (124 M) from scratch with the GPT-2 tokenizer: the GPT-3 paper's small-model settings.
    "gpt2": {
        "model": dict(n_layer=12, n_head=12, n_embd=768, block_size=1024),
        "tokenizer": "gpt2",
        "train": dict(steps=5000, batch_size=4, block_size=1024, grad_accum=8, lr=6e-4, min_lr=6e-5, warmup=200,
                      weight_decay=0.1, grad_clip=1.0, eval_every=250, eval_batches=8, ckpt_every=500, log_every=10),
    },
}
# Fine-tuning (--init) starts from trained weights: a smaller, briefly warmed-up learning rate and shorter runs.
FINETUNE = dict(steps=200, batch_size=4, block_size=256, grad_accum=1, lr=1e-4, min_lr=1e-5, warmup=20,
                weight_decay=0.0, grad_clip=1.0, eval_every=50, eval_batches=8, ckpt_every=100, log_every=10)

# flag dest -> TrainConfig field, for the flags that override training settings (None = not given)
TRAIN_FLAGS = {"zero": "zero", "bucket_mb": "bucket_mb",
               "steps": "steps", "batch_size": "batch_size", "block_size": "block_size", "grad_accum": "grad_accum",
               "lr": "lr", "min_lr": "min_lr", "warmup": "warmup", "weight_decay": "weight_decay",
               "grad_clip": "grad_clip", "eval_every": "eval_every", "eval_batches": "eval_batches",
               "ckpt_every": "ckpt_every", "log_every": "log_every", "threads": "threads", "seed": "seed",
               "keep": "keep_checkpoints"}
MODEL_FLAGS = ("n_layer", "n_head", "n_embd")


def add_parser(sub):
    p = sub.add_parser("train", help="train, fine-tune or resume a GPT",
                       description="Train a GPT on a text file, token shards or prompt/completion pairs; fine-tune "
                       "from a checkpoint or a Hugging Face GPT-2; resume a run exactly where it stopped.")
    src = p.add_argument_group("model and data")
    src.add_argument("--preset", choices=sorted(PRESETS), default="shakespeare",
                     help="model shape, tokenizer and defaults for a new model (default: shakespeare)")
    src.add_argument("--data", metavar="PATH", help="UTF-8 text file, or a folder of token shards from `gptx "
                     "prepare` (default: the bundled Tiny Shakespeare)")
    src.add_argument("--jsonl", metavar="FILE", help="fine-tuning pairs, one JSON object per line: "
                     "document/summary, article/highlights, dialogue/summary or prompt/completion (found from the "
                     "first line); the loss covers only the summary (completion) and its end-of-text token")
    src.add_argument("--val-jsonl", metavar="FILE", help="validation pairs (default: the last --val-fraction of "
                     "--jsonl)")
    src.add_argument("--document-key", metavar="KEY", help="JSON key of the document (default: detected)")
    src.add_argument("--summary-key", metavar="KEY", help="JSON key of the summary (default: detected)")
    src.add_argument("--template", metavar="TEXT", help="prompt template with {document} (default "
                     "'{document}\\nTL;DR:' for documents; prompts are used as they are); a document too long for "
                     "the context is cut at its end")
    src.add_argument("--too-long", choices=("truncate", "skip", "error"), default=None,
                     help="--jsonl pairs longer than the context: cut the document's end (a prompt's start; "
                     "default; counted in the data line), skip the pair, or stop with an error")
    src.add_argument("--init", metavar="PATH", help="start from these weights: a gptx checkpoint (run folder or "
                     "step folder) or a Hugging Face GPT-2 folder (config.json + model.safetensors)")
    src.add_argument("--resume", metavar="DIR", help="continue the run in DIR (model, optimizer, step, RNG, data "
                     "position); --steps is the new TOTAL, so after N steps `--steps 2N` runs N more (see --schedule)")
    src.add_argument("--schedule", choices=("continue", "restart"), default=None,
                     help="with --resume and a larger --steps: 'continue' (default) keeps the run's learning-rate "
                     "schedule, so the added steps run at the final rate; 'restart' stretches the cosine to the new "
                     "total (the rate rises again: a warm restart)")
    src.add_argument("--tokenizer", metavar="bytes|gpt2|PATH", help="tokenizer for a new model (default: the "
                     "preset's; token shards bring their own)")
    src.add_argument("--dropout", type=number(0.0, 1.0, high_open=True), metavar="P",
                     help="dropout probability in [0, 1) at GPT-2's three places (default: a new model 0; with --init "
                          "the checkpoint's or the Hugging Face config's value); training steps only")
    src.add_argument("--val-fraction", type=number(0.0, 1.0, high_open=True), default=0.1, metavar="F",
                     help="fraction of a text file (or of the pairs) held out for validation (default 0.1)")
    for flag in MODEL_FLAGS:
        src.add_argument("--" + flag.replace("_", "-"), type=integer(1), metavar="N",
                         help=f"override the preset's {flag}")
    t = p.add_argument_group("training (defaults: the preset's)")
    t.add_argument("--out", metavar="DIR", help="run folder: checkpoints, log.jsonl, loss.png when matplotlib is "
                   "installed (default: runs/<preset>, or the --resume folder)")
    t.add_argument("--tensorboard", action="store_true", help="also write the log as TensorBoard events into "
                   "<out>/tensorboard (needs tensorboardX or torch's tensorboard writer)")
    t.add_argument("--overwrite", action="store_true", help="clear an existing run in --out first")
    t.add_argument("--steps", type=integer(0), metavar="N", help="total optimizer steps")
    t.add_argument("--batch-size", type=integer(1), metavar="B", help="sequences per micro-batch")
    t.add_argument("--block-size", type=integer(1), metavar="T", help="tokens per sequence (a new model's context)")
    t.add_argument("--grad-accum", type=integer(1), metavar="K", help="micro-batches per step")
    t.add_argument("--lr", type=number(0.0, low_open=True), help="peak learning rate")
    t.add_argument("--min-lr", type=number(0.0), help="final learning rate of the cosine decay")
    t.add_argument("--warmup", type=integer(0), metavar="N", help="linear warmup steps")
    t.add_argument("--weight-decay", type=number(0.0), metavar="WD", help="AdamW weight decay (matrices only)")
    t.add_argument("--grad-clip", type=number(0.0), metavar="NORM", help="max gradient norm (0: off)")
    t.add_argument("--eval-every", type=integer(0), metavar="N", help="steps between validation losses (0: end only)")
    t.add_argument("--eval-batches", type=integer(1), metavar="N", help="batches per validation loss")
    t.add_argument("--ckpt-every", type=integer(0), metavar="N", help="steps between checkpoints (0: end only)")
    t.add_argument("--keep", type=integer(0), metavar="N", help="checkpoints kept (0: all; default 2)")
    t.add_argument("--log-every", type=integer(0), metavar="N", help="steps between log lines")
    t.add_argument("--threads", type=integer(1), metavar="N", help="CPU threads (default: all cores)")
    t.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    t.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                   help="compute dtype; bfloat16 (CUDA only) is mixed precision with float32 master weights")
    t.add_argument("--seed", type=integer(0), help="seed of the model init and the batch order (default 0)")
    d = p.add_argument_group("data parallelism (MPI on CPU, NCCL on GPU; pip install 'gptx-engine[mpi]')")
    d.add_argument("--nproc", type=integer(1), metavar="N", help="start N ranks on this machine through the "
                   "installed MPI's mpiexec (the same as `mpiexec -n N gptx train ...`); --batch-size is per rank, "
                   "the global batch is N times it")
    d.add_argument("--zero", type=int, choices=[0, 1], help="1: ZeRO-1, the optimizer state split over the ranks")
    d.add_argument("--bucket-mb", type=number(0.0, low_open=True), metavar="MB",
                   help="gradients are averaged in buckets of at least MB megabytes of whole blocks (default 25)")
    t.add_argument("--minutes", type=number(0.0), metavar="M", help="stop (and checkpoint) after M minutes")
    t.add_argument("--no-progress", action="store_true", help="no progress bar (there is none unless stderr is a "
                   "terminal: log lines then)")
    return p


# ---- pieces shared with `gptx demo` -----------------------------------------------------------------------------
def load_tokenizer(spec, vocab_size=None):
    """Tokenizer.from_spec; given the model's vocab_size, "bytes" for a 256-id model is the byte tokenizer without
    end-of-text (gptx.loading.resolve_tokenizer)."""
    from gptx.loading import resolve_tokenizer
    from gptx.tokenizer import Tokenizer

    return Tokenizer.from_spec(spec) if vocab_size is None else resolve_tokenizer(spec, vocab_size)


def build_data(spec: dict, tokenizer, block_size: int, seed: int):
    """(train, val, description) for a data spec {"kind": shakespeare|text|shards|jsonl, "path", "val_fraction"}."""
    from gptx import data

    kind, frac = spec["kind"], spec.get("val_fraction", 0.1)
    if kind == "jsonl":
        keys = dict(source_key=spec.get("document_key"), target_key=spec.get("summary_key"))
        too_long = spec.get("too_long", "truncate")
        pf = data.read_pairs(spec["path"], **keys)
        examples, st = data.encode_pair_file(pf, tokenizer, block_size, spec.get("template"), too_long)
        if not examples:
            raise ValueError(f"{spec['path']}: every pair is longer than the context ({block_size} tokens) and "
                             f"--too-long skip left none")
        if spec.get("val_path"):
            vpf = data.read_pairs(spec["val_path"], **keys)
            val_examples, vst = data.encode_pair_file(vpf, tokenizer, block_size, spec.get("template"), too_long)
            train = data.FinetuneDataset(examples, seed=seed)
        else:
            n_val = max(1, round(len(examples) * frac)) if len(examples) >= 2 and frac > 0 else 0
            train = data.FinetuneDataset(examples[: len(examples) - n_val], seed=seed)
            val_examples, vst = examples[len(examples) - n_val:], {}
        val = data.FinetuneDataset(val_examples, seed=seed) if val_examples else None
        what = {"truncated": f"truncated (longer than {block_size} tokens)",
                "skipped": f"skipped (longer than {block_size} tokens)", "skipped_empty": "skipped (empty)"}
        notes = "".join(f", {st[k] + vst.get(k, 0)} {w}" for k, w in what.items() if st[k] + vst.get(k, 0))
        kind_txt = "prompt-completion" if (pf.source_key, pf.target_key) == ("prompt", "completion") else \
            f"{pf.source_key}/{pf.target_key}"
        return train, val, f"{len(train)} train / {len(val_examples)} val {kind_txt} pairs{notes}"
    if kind == "shards":
        train_tokens = data.load_shards(spec["path"], "train")
        val_tokens = data.load_shards(spec["path"], "val")
    else:
        text = data.shakespeare_text() if kind == "shakespeare" else data.load_text(spec["path"])
        train_tokens, val_tokens = data.train_val_split(tokenizer.encode_array(text), frac)
    val = data.TokenDataset(val_tokens, seed=seed) if len(val_tokens) > block_size else None
    return data.TokenDataset(train_tokens, seed=seed), val, \
        f"{len(train_tokens):,} train / {len(val_tokens):,} val tokens"


def data_spec(args) -> dict:
    if args.jsonl and args.data:
        raise ValueError("--jsonl and --data both name training data: give one of them")
    if args.jsonl:
        from gptx.data_pairs import unescape

        spec = {"kind": "jsonl", "path": os.path.abspath(args.jsonl), "val_fraction": args.val_fraction,
                "too_long": args.too_long or "truncate"}
        for key in ("document_key", "summary_key", "template"):
            if getattr(args, key, None) is not None:
                spec[key] = unescape(args.template) if key == "template" else getattr(args, key)
        if getattr(args, "val_jsonl", None):
            spec["val_path"] = os.path.abspath(args.val_jsonl)
        return spec
    if args.too_long:
        raise ValueError("--too-long applies to --jsonl pairs (text and token shards are cut into blocks, never "
                         "truncated)")
    if getattr(args, "val_jsonl", None) or any(getattr(args, k, None) is not None
                                               for k in ("document_key", "summary_key", "template")):
        raise ValueError("--val-jsonl, --document-key, --summary-key and --template go with --jsonl")
    if args.data is None:
        return {"kind": "shakespeare", "val_fraction": args.val_fraction}
    path = os.path.abspath(args.data)
    if os.path.isdir(path):
        return {"kind": "shards", "path": path}
    if not os.path.isfile(path):
        raise ValueError(f"--data {args.data}: no such file or folder")
    return {"kind": "text", "path": path, "val_fraction": args.val_fraction}


def overrides(args) -> dict:
    from gptx import distributed as dist

    o = {field: getattr(args, dest) for dest, field in TRAIN_FLAGS.items() if getattr(args, dest, None) is not None}
    if "threads" not in o and dist.world_size() > 1:
        o["threads"] = max(1, _cores() // dist.local_size())  # the node's cores shared by its ranks
    if getattr(args, "minutes", None) is not None:
        o["max_seconds"] = args.minutes * 60.0
    if getattr(args, "no_progress", False):
        o["progress"] = False
    return o


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def clear_run(out: Path) -> None:
    from gptx.checkpoint import LATEST, list_checkpoints

    for ck in list_checkpoints(out):
        shutil.rmtree(ck)
    for name in (LATEST, "log.jsonl", "loss.png"):
        if (out / name).exists():
            (out / name).unlink()


# ---- the command ------------------------------------------------------------------------------------------------
def _new_run(args):
    """(model, TrainConfig, tokenizer, data spec, extra state) for a fresh or fine-tuning run."""
    from gptx.checkpoint import is_checkpoint, load_checkpoint
    from gptx.model import GPT, GPTConfig
    from gptx.trainer import TrainConfig

    preset = PRESETS[args.preset]
    spec = data_spec(args)
    extra = {"data": spec, "preset": args.preset}
    if args.init:
        given = [f for f in MODEL_FLAGS if getattr(args, f) is not None]
        if given:
            raise ValueError(f"--init takes the model shape from {args.init}; drop --{given[0].replace('_', '-')}")
        if is_checkpoint(args.init):
            ck = load_checkpoint(args.init, with_optimizer=False)
            model = GPT(GPTConfig.from_dict(ck.config))
            model.load_state_dict(ck.model)
            tok_spec = ck.tokenizer_dir or ck.state.get("tokenizer") or "bytes"
        elif (Path(args.init) / "config.json").is_file():
            from gptx.loading import folder_tokenizer

            model = GPT.from_pretrained(args.init)
            # The folder's own tokenizer files; GPT-2 BPE when it has none.
            tok_spec = folder_tokenizer(args.init, model.config.vocab_size) if args.tokenizer is None else None
        else:
            raise ValueError(f"--init {args.init}: neither a gptx checkpoint nor a Hugging Face GPT-2 folder")
        extra["init"] = os.path.abspath(args.init)
        if args.dropout is not None:
            model.config = dataclasses.replace(model.config, dropout=args.dropout)
        settings = dict(FINETUNE, block_size=min(FINETUNE["block_size"], model.config.block_size))
        tokenizer = load_tokenizer(args.tokenizer or tok_spec, model.config.vocab_size)
    else:
        settings = dict(preset["train"])
        if spec["kind"] == "shards":
            shard_tok = load_tokenizer(spec["path"])  # prepare saved the tokenizer next to the shards
            if args.tokenizer and load_tokenizer(args.tokenizer).name != shard_tok.name:
                raise ValueError(f"--tokenizer {args.tokenizer} differs from the shards' tokenizer {shard_tok.name}")
            tokenizer = shard_tok
        else:
            tokenizer = load_tokenizer(args.tokenizer or preset["tokenizer"])
        shape = dict(preset["model"])
        shape.update({f: getattr(args, f) for f in MODEL_FLAGS if getattr(args, f) is not None})
        if args.block_size is not None:
            shape["block_size"] = args.block_size  # a new model's context is the training length
        model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, dropout=args.dropout or 0.0, **shape),
                    seed=args.seed or 0)
        settings["block_size"] = shape["block_size"]
    if (args.device, args.dtype) != ("cpu", "float32"):
        model = model.to(args.device, args.dtype)  # the same initial weights on every device
    if tokenizer.vocab_size > model.config.vocab_size:
        raise ValueError(f"tokenizer {tokenizer.name} has {tokenizer.vocab_size} ids but the model only "
                         f"{model.config.vocab_size}")
    out = args.out or os.path.join("runs", args.preset if not args.init else "finetune")
    settings.update(overrides(args))
    cfg = TrainConfig(out_dir=os.path.abspath(out), **settings)
    return model, cfg, tokenizer, spec, extra


def run(args) -> int:
    from gptx import distributed as dist

    if getattr(args, "nproc", None) and not dist.launched_by_mpi():
        from gptx.distributed.launch import launch

        return launch(["train"] + strip_flag(getattr(args, "_argv", None) or sys.argv[1:], "--nproc")[1:],
                      args.nproc)
    if dist.launched_by_mpi():
        try:
            dist.init(args.device if args.device.startswith("cuda") else None)
        except (ImportError, RuntimeError, OSError) as e:
            print(f"gptx train: error: {e}", file=sys.stderr)
            return 1
        if dist.world_size() > 1 and args.device == "cuda":
            args.device = dist.nccl_comm("cuda").device_name  # one GPU per rank
    quiet = dist.rank() != 0
    stdout = sys.stdout
    if quiet:
        sys.stdout = open(os.devnull, "w")  # only rank 0 prints progress
    try:
        return _run(args)
    except (ValueError, TypeError, OSError, FloatingPointError, RuntimeError) as e:  # RuntimeError: no GPU, OOM
        where = f"rank {dist.rank()}: " if dist.world_size() > 1 else ""
        print(f"gptx train: {where}error: {e}", file=sys.stderr, flush=True)
        if dist.world_size() > 1:
            dist._g().comm.Abort(1)  # the other ranks may be waiting in a collective for this one
        return 1
    finally:
        if quiet:
            sys.stdout.close()
            sys.stdout = stdout


def strip_flag(argv, flag) -> list:
    """argv without `flag VALUE` / `flag=VALUE` (what --nproc leaves behind in the ranks' command line)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == flag:
            skip = True
        elif not a.startswith(flag + "="):
            out.append(a)
    return out


def _run(args) -> int:
    from gptx.checkpoint import LATEST, list_checkpoints, load_checkpoint
    from gptx.trainer import TrainConfig, Trainer

    if args.resume:
        if args.init or any(getattr(args, f) is not None for f in MODEL_FLAGS):
            raise ValueError("--resume continues a run with its own model: drop --init and the model-shape flags")
        if args.dropout is not None:
            raise ValueError("--resume continues a run with its own dropout (saved in its config): drop --dropout")
        ck = load_checkpoint(args.resume)
        st = ck.state
        extra = dict(st.get("extra") or {})
        spec = data_spec(args) if (args.data or args.jsonl) else dict(extra.get("data") or {"kind": "shakespeare"})
        if args.too_long and not (args.data or args.jsonl):
            if spec["kind"] != "jsonl":
                raise ValueError("--too-long applies to --jsonl pairs; this run trains on " + spec["kind"])
            spec["too_long"] = args.too_long
        extra["data"] = spec
        tok_spec = args.tokenizer or ck.tokenizer_dir or st.get("tokenizer") or "bytes"
        tokenizer = load_tokenizer(tok_spec, ck.config.get("vocab_size"))
        # the time limit and the progress bar belong to this invocation, not to the run
        ov = dict(overrides(args), max_seconds=args.minutes * 60.0 if args.minutes is not None else None,
                  progress=not args.no_progress)
        if args.out:
            ov["out_dir"] = os.path.abspath(args.out)
        if "threads" not in ov and st.get("world_size", 1) > 1:
            ov["threads"] = None  # the ranks' share of the cores was for that launch, not for this one
        if args.schedule == "restart":
            if args.steps is None:
                raise ValueError("--schedule restart stretches the schedule to a new total: give --steps")
            ov["schedule_steps"] = args.steps
        cfg_seed = st["train_config"].get("seed", 0)
        block = ov.get("block_size", st["train_config"]["block_size"])
        train, val, desc = build_data(spec, tokenizer, block, cfg_seed)
        trainer = Trainer.resume(ck, train, val, tokenizer, device=args.device, dtype=args.dtype, **ov)
        trainer.extra_state = extra
        print(f"resuming {ck.path} at step {trainer.step} of {trainer.cfg.steps}")
        sched = trainer.cfg.schedule_length
        if trainer.cfg.steps > sched:
            print(f"steps {sched + 1}-{trainer.cfg.steps} run at the final learning rate {trainer.cfg.final_lr:.2e}: "
                  f"the schedule of {sched} steps is kept (--schedule continue; --schedule restart stretches it to "
                  f"{trainer.cfg.steps} steps)")
        elif sched != TrainConfig.from_dict(st["train_config"]).schedule_length:
            print(f"the learning-rate schedule is stretched to {sched} steps (--schedule restart)")
    else:
        if args.schedule:
            raise ValueError("--schedule chooses how --resume extends a run; a new run's schedule spans --steps")
        model, cfg, tokenizer, spec, extra = _new_run(args)
        out = Path(cfg.out_dir)
        from gptx import distributed as dist

        held = (out / LATEST).exists() or list_checkpoints(out) or (out / "log.jsonl").exists()
        if dist.world_size() > 1:
            held = dist.broadcast_object(held)  # rank 0's view decides; it alone clears
        if held:
            if not args.overwrite:
                raise ValueError(f"{out} already holds a run: continue it with --resume {out}, clear it with "
                                 f"--overwrite, or choose another --out")
            if dist.rank() == 0:
                clear_run(out)
        train, val, desc = build_data(spec, tokenizer, cfg.block_size, cfg.seed)
        trainer = Trainer(model, cfg, train, val, tokenizer, extra_state=extra)
    from gptx import distributed as dist

    if args.tensorboard and dist.rank() == 0:  # one writer, like log.jsonl
        from gptx.callbacks import TensorBoard

        trainer.callbacks.append(TensorBoard(os.path.join(trainer.cfg.out_dir, "tensorboard")))
    cfg, model = trainer.cfg, trainer.model
    print(f"model: {model!r}")
    world = dist.world_size()
    ranks = f"{world} ranks x " if world > 1 else ""
    zero = " | ZeRO-1" if cfg.zero else ""
    print(f"data: {desc} | tokenizer {tokenizer.name} | {ranks}{cfg.batch_size} x {cfg.block_size} tokens x "
          f"{cfg.grad_accum} per step (global batch {world * cfg.batch_size * cfg.grad_accum} sequences){zero} | "
          f"out: {cfg.out_dir}")
    if trainer.step >= cfg.steps:
        print(f"nothing to do: the run is at step {trainer.step} and --steps is {cfg.steps}")
        return 0
    t0 = time.perf_counter()
    summary = trainer.fit()
    val = f", val loss {summary['val_loss']:.4f}" if summary["val_loss"] is not None else ""
    print(f"{'stopped' if summary['interrupted'] else 'done'}: step {summary['step']}, loss {summary['loss']:.4f}"
          f"{val} in {time.perf_counter() - t0:.1f} s; checkpoint in {cfg.out_dir}")
    if summary["interrupted"] or summary["timed_out"]:
        print(f"continue with: gptx train --resume {cfg.out_dir} --steps {cfg.steps}")
    return 130 if summary["interrupted"] else 0
