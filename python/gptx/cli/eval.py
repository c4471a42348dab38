"""`gptx eval`: loss, perplexity and bits per byte of a checkpoint over a text file, in non-overlapping windows; on
document/summary pairs, the loss of the summaries or (--rouge) ROUGE of generated summaries next to the lead
baseline."""
from __future__ import annotations

import math
import sys
import time

import numpy as np

from gptx.cli._numbers import integer


def add_parser(sub):
    from gptx.cli.sample import add_tokenizer_argument
    from gptx.weights import add_weights_argument

    from gptx.cli.summarize import add_decode_arguments, add_pair_arguments

    p = sub.add_parser("eval", help="loss, perplexity and bits per byte on a text file; ROUGE on summary pairs",
                       description="Score a UTF-8 text file with a gptx checkpoint or a Hugging Face GPT-2 directory: "
                       "the file is tokenized (with the tokenizer saved in the folder, or --tokenizer) and cut into "
                       "non-overlapping windows of block_size tokens, each token predicted from the ones before it "
                       "in its window. With --jsonl: the loss of the summaries given their documents (the "
                       "fine-tuning prompt), or with --rouge, ROUGE-1/2/L/Lsum F1 of generated summaries with 95% "
                       "bootstrap intervals next to the lead baseline (each document's first sentence).")
    p.add_argument("checkpoint", metavar="CHECKPOINT")
    add_tokenizer_argument(p)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", metavar="FILE", help="UTF-8 text file")
    src.add_argument("--jsonl", metavar="FILE", help="document/summary pairs (keys as for fine-tuning)")
    p.add_argument("--rouge", action="store_true", help="with --jsonl: generate a summary per document and score it "
                   "with ROUGE (needs rouge-score: pip install \"gptx-engine[eval]\")")
    p.add_argument("--json", nargs="?", const="-", default=None, metavar="FILE", help="with --rouge: the scores as "
                   "one JSON object (rouge1, rouge2, rougeL, rougeLsum for \"model\" and \"lead\"), to FILE "
                   "(atomically) or, without FILE, to stdout instead of the table")
    p.add_argument("--output", "-o", metavar="FILE", help="with --rouge: also write the predictions (as gptx "
                   "summarize does)")
    p.add_argument("--limit", type=integer(1), metavar="N", help="with --jsonl: only the first N pairs")
    p.add_argument("--no-progress", action="store_true", help="no progress line")
    add_pair_arguments(p)
    add_decode_arguments(p, batch_size=False)
    p.add_argument("--block-size", type=integer(1), default=None, metavar="T",
                   help="window length (default and maximum: "
                   "the model's block_size)")
    p.add_argument("--batch-size", type=integer(1), default=None, metavar="B", help="windows per forward pass "
                   "(default 4); with --jsonl, pairs per forward pass or documents per generate call (default 8)")
    p.add_argument("--threads", type=integer(1), default=None, metavar="N")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    add_weights_argument(p)
    return p


def evaluate(model, tokens: np.ndarray, block: int, batch: int) -> tuple[float, int]:
    """(summed cross-entropy in nats, number of predicted tokens) over windows of block + 1 tokens that overlap by
    one: window w predicts tokens[w*block + 1 .. (w+1)*block] from the ones before them, so every token but the
    first is predicted exactly once. The last, shorter window is scored too."""
    n = tokens.size - 1
    starts = list(range(0, n, block))
    losses, sizes = [], []  # loss tensors, read at the end (no wait for the device per window)
    for i in range(0, len(starts), batch):
        group = starts[i:i + batch]
        full = [s for s in group if s + block <= n]
        parts = [full] + [[s] for s in group if s + block > n]  # the short tail window goes alone (its own T)
        for part in parts:
            if not part:
                continue
            T = min(block, n - part[0])
            x = np.stack([tokens[s:s + T] for s in part]).astype(np.int32)
            y = np.stack([tokens[s + 1:s + T + 1] for s in part]).astype(np.int32)
            losses.append(model.forward_loss(x, y))
            sizes.append(x.size)
    total = sum(float(loss) * size for loss, size in zip(losses, sizes))
    return total, sum(sizes)


def run(args) -> int:
    import gptx

    if args.jsonl or args.rouge:
        from gptx.cli.eval_pairs import run_pairs

        return run_pairs(args)
    try:
        if args.threads:
            gptx.set_num_threads(args.threads)
        model, tok = gptx.load(args.checkpoint, tokenizer=args.tokenizer, device=args.device, dtype=args.dtype)
        if args.weights != "f32":
            model.quantize(args.weights)
        block = model.config.block_size if args.block_size is None else args.block_size
        if not 1 <= block <= model.config.block_size:
            raise ValueError(f"--block-size must be in [1, {model.config.block_size}], got {block}")
        args.batch_size = args.batch_size or 4
        if args.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
        try:
            with open(args.data, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"cannot read {args.data} as UTF-8 text: {e}") from None
        tokens = np.asarray(tok.encode(text), dtype=np.int64)
        if tokens.size < 2:
            raise ValueError(f"{args.data} has {tokens.size} token(s): at least 2 are needed to score one")
        t0 = time.perf_counter()
        nats, count = evaluate(model, tokens, block, args.batch_size)
        wall = time.perf_counter() - t0
        # Bits per byte over the bytes of the predicted tokens (all but the first): comparable across tokenizers.
        nbytes = len(tok.decode_bytes(tokens[1:].tolist()))
        loss = nats / count
        print(f"tokens scored: {count:,} ({nbytes:,} bytes) in {wall:.1f} s, windows of {block}")
        print(f"loss: {loss:.4f} nats/token")
        print(f"perplexity: {math.exp(min(loss, 700.0)):.4f}")
        print(f"bits per byte: {nats / math.log(2) / max(nbytes, 1):.4f}")
        return 0
    except ValueError as e:
        print(f"gptx eval: error: {e}", file=sys.stderr)
        return 1
