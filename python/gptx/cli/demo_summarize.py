"""`gptx demo --task summarize`: the summarisation pipeline in one command, within a time budget: docstring corpus ->
BPE tokenizer -> base model pretrained on the corpus text -> fine-tuned on the train pairs -> summaries of three
test documents next to their references, and ROUGE on the test split next to the lead baseline."""
from __future__ import annotations

import os
import sys
import tempfile
import time

import numpy as np

# Shares of the time budget: pretraining, fine-tuning; the rest (about 15%: corpus, tokenizer, ROUGE on the test
# split, the samples) is left for the parts that are not planned by step time.
PRETRAIN_SHARE, FINETUNE_SHARE = 0.55, 0.30
# Small enough for ~10 minutes on 2 cores: a 2,048-id BPE (docstring text is ~3.4 bytes per token at 4,096 ids),
# 4 layers of 128, a 128-token context (most documents' lead fits; longer ones are cut at their end).
TOKENIZER_VOCAB = 2048
MODEL = dict(n_layer=4, n_head=4, n_embd=128, block_size=128)
PRETRAIN = dict(batch_size=16, block_size=128, grad_accum=1, lr=2e-3, min_lr=2e-4, warmup=30, weight_decay=0.1,
                grad_clip=1.0, eval_batches=4, ckpt_every=0)
FINETUNE = dict(batch_size=16, block_size=128, grad_accum=1, lr=5e-4, min_lr=5e-5, warmup=10, weight_decay=0.0,
                grad_clip=1.0, eval_batches=4, ckpt_every=0)
MAX_NEW_TOKENS = 32  # docstring summaries: 13 BPE tokens on average at 2,048 ids, few above 30


def _plan(model, dataset, settings: dict, seconds: float, steps: int | None, rng, label: str):
    from gptx.cli.demo import _time_step
    from gptx.trainer import TrainConfig

    if steps is None:
        per_step = _time_step(model, dataset, TrainConfig(**settings), rng)
        steps = int(min(20000, max(5, seconds / per_step)))
        print(f"{label}: one step takes ~{per_step:.2f} s: {steps} steps in ~{seconds / 60:.1f} min", flush=True)
    return dict(settings, steps=steps, warmup=min(settings["warmup"], max(1, steps // 10)),
                eval_every=max(1, steps // 4), log_every=max(1, steps // 8))


def _fit(trainer, seconds: float, steps: int | None) -> dict:
    """An exact step count runs as given; a planned one is re-planned from the real pace (as the default demo)."""
    from gptx.cli.demo import _fit_within

    return trainer.fit() if steps is not None else _fit_within(trainer, seconds)


def run_summarize(args) -> int:
    import gptx
    from gptx.corpus_docstrings import build_corpus, stats_line, write_corpus
    from gptx.data import FinetuneDataset, TokenDataset, encode_pair_file, read_pairs, train_val_split
    from gptx.model import GPT, GPTConfig
    from gptx.tokenizer import Tokenizer
    from gptx.trainer import TrainConfig, Trainer

    minutes = 10.0 if args.minutes is None else args.minutes
    budget = minutes * 60.0
    t_start = time.perf_counter()
    if args.threads:
        gptx.set_num_threads(args.threads)
    if args.out and os.path.exists(os.path.join(args.out, "finetuned")):
        print(f"gptx demo: error: {args.out} already holds a summarisation demo; choose another --out",
              file=sys.stderr)
        return 1
    tmp = None if args.out else tempfile.TemporaryDirectory(prefix="gptx-demo-")
    root = args.out or tmp.name
    try:
        packages = [p.strip() for p in args.packages.split(",") if p.strip()]
        corpus = build_corpus(packages)
        if not corpus.splits["train"] or not corpus.splits["test"]:
            raise ValueError(f"the docstrings of {args.packages} give {corpus.stats['pairs']} pairs: train and test "
                             f"need at least one each (add packages)")
        data_dir = os.path.join(root, "data")
        stats = write_corpus(corpus, data_dir, TOKENIZER_VOCAB)
        print(f"corpus: {stats_line(stats)}", flush=True)
        tok = Tokenizer.load(os.path.join(data_dir, "tokenizer"))
        model = GPT(GPTConfig(vocab_size=tok.vocab_size, **MODEL), seed=args.seed)
        print(f"model: {model.num_parameters() / 1e6:.2f} M parameters ({MODEL['n_layer']} layers, {MODEL['n_embd']} "
              f"wide, {MODEL['block_size']}-token context), BPE of {tok.vocab_size} ids, "
              f"{gptx.get_num_threads()} thread(s)", flush=True)
        progress = not args.no_progress

        # 1. pretraining on the corpus text (test modules excluded)
        tokens = tok.encode_array(corpus.pretrain_text)
        tr, va = train_val_split(tokens, 0.05)
        train, val = TokenDataset(tr, seed=args.seed), TokenDataset(va, seed=args.seed)
        rng = np.random.default_rng(args.seed + 1)
        seconds = budget * PRETRAIN_SHARE
        settings = _plan(model, train, PRETRAIN, seconds, args.steps, rng, f"pretraining on {len(tokens):,} tokens")
        cfg = TrainConfig(**settings, seed=args.seed, max_seconds=seconds * 1.1,
                          progress=progress, out_dir=os.path.join(root, "base") if args.out else None)
        s = _fit(Trainer(model, cfg, train, val, tok), seconds, args.steps)
        print(f"pretrained {s['step']} steps: loss {s['loss']:.3f}"
              + (f", val loss {s['val_loss']:.3f}" if s["val_loss"] is not None else ""), flush=True)

        # 2. fine-tuning on the train pairs (summary tokens only)
        examples, st = encode_pair_file(read_pairs(os.path.join(data_dir, "train.jsonl")), tok, MODEL["block_size"])
        vexamples, _ = encode_pair_file(read_pairs(os.path.join(data_dir, "val.jsonl")), tok, MODEL["block_size"]) \
            if corpus.splits["val"] else ([], None)
        ft_train = FinetuneDataset(examples, seed=args.seed)
        ft_val = FinetuneDataset(vexamples, seed=args.seed) if vexamples else None
        seconds = budget * FINETUNE_SHARE
        settings = _plan(model, ft_train, FINETUNE, seconds, args.steps, rng,
                         f"fine-tuning on {len(examples)} pairs ({st['truncated']} documents cut)")
        cfg = TrainConfig(**settings, seed=args.seed, max_seconds=seconds * 1.1,
                          progress=progress, out_dir=os.path.join(root, "finetuned") if args.out else None)
        s = _fit(Trainer(model, cfg, ft_train, ft_val, tok), seconds, args.steps)
        print(f"fine-tuned {s['step']} steps: loss {s['loss']:.3f}"
              + (f", val loss {s['val_loss']:.3f}" if s["val_loss"] is not None else ""), flush=True)

        # 3. three test documents, then ROUGE on the test split
        test = corpus.splits["test"]
        show = sorted(test, key=lambda p: (len(p.document), p.id))[len(test) // 2:][:3]
        for p in show:
            [pred] = model.summarize([p.document], tokenizer=tok, max_new_tokens=MAX_NEW_TOKENS)
            doc = p.document if len(p.document) <= 400 else p.document[:400] + " [...]"
            print(f"\n--- {p.id} ---\n{doc}\n  reference: {p.summary}\n  generated: {pred}")
        _rouge_on_test(model, tok, test, args.test_limit)
    except (ValueError, OSError, ImportError) as e:
        print(f"gptx demo: error: {e}", file=sys.stderr)
        return 1
    finally:
        if tmp is not None:
            tmp.cleanup()
    print(f"\ndemo done in {(time.perf_counter() - t_start) / 60:.1f} min"
          + (f"; corpus, base and fine-tuned runs in {args.out}" if args.out else ""))
    return 0


def _rouge_on_test(model, tok, test, limit) -> None:
    from gptx import rouge
    from gptx.summarize import summarize_all

    pairs = test[:limit] if limit else test
    try:
        rouge._scorer()
    except ImportError as e:
        print(f"\n(ROUGE skipped: {e})")
        return
    outs, _, seconds = summarize_all(model, [p.document for p in pairs], tok, max_new_tokens=MAX_NEW_TOKENS,
                                     batch_size=16)
    refs = [p.summary for p in pairs]
    m = rouge.rouge([o[0] for o in outs], refs)
    lead = rouge.rouge([rouge.lead(p.document) for p in pairs], refs)
    print(f"\nROUGE F1 x 100 on {len(pairs)} test pairs (greedy, {seconds / len(pairs):.3f} s per summary; 95% "
          f"bootstrap intervals)")
    for t in rouge.ROUGE_TYPES:
        a, b = m[t], lead[t]
        print(f"  {t:10} model {a['f1'] * 100:5.1f} [{a['low'] * 100:4.1f}, {a['high'] * 100:4.1f}]   "
              f"lead-1 {b['f1'] * 100:5.1f} [{b['low'] * 100:4.1f}, {b['high'] * 100:4.1f}]")
