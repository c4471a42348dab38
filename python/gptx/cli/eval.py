"""`gptx eval`: loss, perplexity and bits per byte of a checkpoint over a text file, in non-overlapping windows."""
from __future__ import annotations

import math
import sys
import time

import numpy as np

from gptx.cli._numbers import integer


def add_parser(sub):
    from gptx.cli.sample import add_tokenizer_argument
    from gptx.weights import add_weights_argument

    p = sub.add_parser("eval", help="loss, perplexity and bits per byte of a checkpoint on a text file",
                       description="Score a UTF-8 text file with a gptx checkpoint or a Hugging Face GPT-2 directory: "
                       "the file is tokenized (with the tokenizer saved in the folder, or --tokenizer) and cut into "
                       "non-overlapping windows of block_size tokens, each token predicted from the ones before it "
                       "in its window.")
    p.add_argument("checkpoint", metavar="CHECKPOINT")
    add_tokenizer_argument(p)
    p.add_argument("--data", required=True, metavar="FILE", help="UTF-8 text file")
    p.add_argument("--block-size", type=integer(1), default=None, metavar="T",
                   help="window length (default and maximum: "
                   "the model's block_size)")
    p.add_argument("--batch-size", type=integer(1), default=4, metavar="B", help="windows per forward pass (default 4)")
    p.add_argument("--threads", type=integer(1), default=None, metavar="N")
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

    try:
        if args.threads:
            gptx.set_num_threads(args.threads)
        model, tok = gptx.load(args.checkpoint, tokenizer=args.tokenizer)
        if args.weights != "f32":
            model.quantize(args.weights)
        block = model.config.block_size if args.block_size is None else args.block_size
        if not 1 <= block <= model.config.block_size:
            raise ValueError(f"--block-size must be in [1, {model.config.block_size}], got {block}")
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
