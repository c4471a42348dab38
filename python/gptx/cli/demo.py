"""`gptx demo`: train the small byte-level Shakespeare model for a few minutes, then print what it writes; with
--task summarize, the summarisation pipeline (demo_summarize.py)."""
from __future__ import annotations

import os
import sys
import time

import numpy as np

from gptx.cli._numbers import integer, number

# Margin kept out of the time budget for evaluation, the final checkpoint and sampling: a few % of a 3-minute run.
BUDGET_SHARE = 0.9
# Fractions of the planned steps after which the step count is planned again from the real steps' pace (the probe
# before training times a few passes; a busy machine can be several times slower over minutes), so the schedule's
# cosine ends inside the budget instead of being cut by the time limit. Changes under 10% are ignored.
REPLAN_AT = (0.1, 0.4)
REPLAN_MIN_CHANGE = 0.1
MAX_STEPS = 5000


def add_parser(sub):
    p = sub.add_parser("demo", help="train a small Shakespeare model for a few minutes and sample from it",
                       description="Train the shakespeare preset (a 0.8 M-parameter byte-level GPT) on the bundled "
                       "Tiny Shakespeare for a few minutes, showing progress, then print a sample. --task summarize: "
                       "build the docstring summarisation corpus, pretrain a small model on its text, fine-tune it "
                       "on the train pairs, show three test documents with their reference and generated summaries "
                       "and ROUGE on the test split next to the lead baseline (about 10 minutes on 2 cores).")
    p.add_argument("--task", choices=["shakespeare", "summarize"], default="shakespeare",
                   help="what to demonstrate (default shakespeare)")
    p.add_argument("--minutes", type=number(0.0, low_open=True), default=None, metavar="M",
                   help="time budget (default 3; summarize: 10)")
    p.add_argument("--steps", type=integer(1), metavar="N", help="exact number of steps (default: as many as fit in "
                   "--minutes, at most 5000); summarize: of pretraining and of fine-tuning each")
    p.add_argument("--packages", default="stdlib", metavar="NAMES", help="summarize: packages whose docstrings "
                   "make the corpus (default stdlib)")
    p.add_argument("--test-limit", type=integer(1), metavar="N", help="summarize: ROUGE on the first N test pairs "
                   "only (default: all)")
    p.add_argument("--threads", type=integer(1), metavar="N", help="CPU threads (default: all cores)")
    p.add_argument("--out", metavar="DIR", help="also keep the run (checkpoint, log.jsonl) in DIR, for `gptx train "
                   "--resume` or sampling later")
    p.add_argument("--seed", type=integer(0), default=0)
    p.add_argument("--prompt", default="ROMEO:", help="text the sample starts from (default 'ROMEO:')")
    p.add_argument("--chars", type=integer(0), default=500, metavar="N", help="bytes to generate (default 500)")
    p.add_argument("--temperature", type=number(0.0), default=0.8)
    p.add_argument("--top-k", type=integer(0), default=40, metavar="K", help="sample among the K most likely (0: all)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _time_step(model, train, cfg, rng) -> float:
    """Seconds per optimizer step: the median of three forward + backward passes after an untimed warm-up one."""
    times = []
    for _ in range(4):
        x, y = train.get_batch(cfg.batch_size, cfg.block_size, rng)
        t0 = time.perf_counter()
        model.forward_loss(x, y)  # what the Trainer runs (no logits copy)
        model.backward()
        times.append(time.perf_counter() - t0)
    model.zero_grad()
    # + ~5% for the AdamW step, the clipping norm and logging
    return float(np.median(times[1:])) * cfg.grad_accum * 1.05


def _fit_within(trainer, budget: float) -> dict:
    """trainer.fit(), pausing at REPLAN_AT of the plan to fit the step count to the measured pace."""
    cfg = trainer.cfg
    t0 = time.perf_counter()
    for share in REPLAN_AT:
        until = int(cfg.steps * share)
        if until <= trainer.step or until >= cfg.steps:
            continue
        cfg.max_seconds = max(0.0, budget - (time.perf_counter() - t0))
        summary = trainer.fit(until=until)
        if summary["interrupted"] or summary["timed_out"]:
            return summary
        elapsed = time.perf_counter() - t0
        per_step = elapsed / trainer.step
        planned = int(min(MAX_STEPS, trainer.step + (budget * BUDGET_SHARE - elapsed) / per_step))
        planned = max(trainer.step + 1, planned)
        if abs(planned - cfg.steps) > REPLAN_MIN_CHANGE * cfg.steps:
            print(f"re-planned from the pace so far ({per_step:.3f} s per step): {planned} steps instead of "
                  f"{cfg.steps}", flush=True)
            cfg.steps = planned
            cfg.eval_every = max(1, planned // 5)
    cfg.max_seconds = max(0.0, budget - (time.perf_counter() - t0))
    return trainer.fit()


def run(args) -> int:
    import gptx
    from gptx.cli.train import PRESETS, build_data
    from gptx.model import GPT, GPTConfig
    from gptx.tokenizer import Tokenizer
    from gptx.trainer import TrainConfig, Trainer

    if args.task == "summarize":
        from gptx.cli.demo_summarize import run_summarize

        return run_summarize(args)
    if args.minutes is None:
        args.minutes = 3.0
    if args.out:
        from gptx.checkpoint import is_checkpoint

        if is_checkpoint(args.out) or os.path.exists(os.path.join(args.out, "log.jsonl")):
            print(f"gptx demo: error: {args.out} already holds a run; choose another --out", file=sys.stderr)
            return 1
        try:
            os.makedirs(args.out, exist_ok=True)
        except OSError as e:
            print(f"gptx demo: error: --out {args.out}: cannot create it ({e.strerror or e})", file=sys.stderr)
            return 1
    if args.threads:
        gptx.set_num_threads(args.threads)
    preset = PRESETS["shakespeare"]
    tokenizer = Tokenizer.bytes()
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, **preset["model"]), seed=args.seed)
    settings = dict(preset["train"], eval_batches=4, ckpt_every=0, log_every=25)
    probe = TrainConfig(**settings)
    train, val, desc = build_data({"kind": "shakespeare", "val_fraction": 0.1}, tokenizer, probe.block_size, args.seed)
    budget = args.minutes * 60.0
    threads = gptx.get_num_threads()
    print(f"gptx demo: a {model.num_parameters() / 1e6:.2f} M-parameter byte-level GPT "
          f"({model.config.n_layer} layers, {model.config.n_embd} wide, {model.config.block_size}-byte context) "
          f"on Tiny Shakespeare ({desc}), {threads} thread{'s' if threads != 1 else ''}", flush=True)
    if args.steps is not None:
        steps = max(1, args.steps)
    else:
        per_step = _time_step(model, train, probe, np.random.default_rng(args.seed + 1))
        steps = int(min(MAX_STEPS, max(10, budget * BUDGET_SHARE / per_step)))
        print(f"one step takes ~{per_step:.2f} s: training {steps} steps (budget {args.minutes:g} min)", flush=True)
    settings.update(steps=steps, warmup=min(settings["warmup"], max(1, steps // 10)),
                    eval_every=max(1, steps // 5), log_every=max(1, min(settings["log_every"], steps // 10)))
    cfg = TrainConfig(**settings, seed=args.seed, max_seconds=budget, progress=not args.no_progress,
                      out_dir=os.path.abspath(args.out) if args.out else None)
    trainer = Trainer(model, cfg, train, val, tokenizer, extra_state={"data": {"kind": "shakespeare",
                                                                               "val_fraction": 0.1},
                                                                      "preset": "shakespeare"})
    t0 = time.perf_counter()
    try:
        summary = _fit_within(trainer, budget) if args.steps is None else trainer.fit()
    except OSError as e:  # e.g. the disk filled up under --out
        print(f"gptx demo: error: {e}", file=sys.stderr)
        return 1
    wall = time.perf_counter() - t0
    val_txt = f", val loss {summary['val_loss']:.3f}" if summary["val_loss"] is not None else ""
    print(f"\ntrained {summary['step']} steps in {wall:.0f} s: loss {summary['loss']:.3f}{val_txt} "
          f"(uniform guessing over the {model.config.vocab_size} ids: {np.log(model.config.vocab_size):.3f})")
    print(f"\n--- sample (temperature {args.temperature:g}, top-k {args.top_k}) ---")
    prompt_ids = tokenizer.encode(args.prompt) or [ord("\n")]
    sys.stdout.write(args.prompt)
    # The sample is longer than the 64-byte context: the sliding window predicts each byte from the last 64.
    for piece in model.stream(prompt_ids, args.chars, tokenizer=tokenizer, temperature=max(args.temperature, 0.0),
                              top_k=args.top_k or None, seed=args.seed, sliding_window=True):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n---\n")
    if args.out:
        print(f"run saved in {args.out}")
    return 0
