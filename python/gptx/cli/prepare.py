"""`gptx prepare`: tokenize text files once into uint16 train/val token shards for training on large corpora."""
import sys

from gptx.cli._numbers import integer, number


def add_parser(sub):
    p = sub.add_parser(
        "prepare",
        help="tokenize text files into token shards",
        description="Tokenize UTF-8 text files once into memory-mappable uint16 token shards (train_*.bin, "
        "val_*.bin), an index.json, and the tokenizer, all in --out.",
    )
    p.add_argument("--input", "-i", nargs="+", required=True, metavar="FILE", help="UTF-8 text file(s)")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="output folder (created if missing)")
    p.add_argument("--tokenizer", default="gpt2", metavar="bytes|gpt2|PATH",
                   help="'bytes', 'gpt2' (default), or a folder/file saved by Tokenizer.save or a tokenizer.json")
    p.add_argument("--shard-tokens", type=integer(1), default=100_000_000, metavar="N",
                   help="tokens per shard (default 100,000,000 = 200 MB)")
    p.add_argument("--val-fraction", type=number(0.0, 1.0, high_open=True), default=0.1, metavar="F",
                   help="fraction of the tokens (the end of the stream) held out for validation (default 0.1)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar or summary")
    return p


def run(args) -> int:
    from gptx.data_shards import prepare

    try:
        index = prepare(
            args.input,
            args.out,
            tokenizer=args.tokenizer,
            shard_tokens=args.shard_tokens,
            val_fraction=args.val_fraction,
            progress=not args.quiet and sys.stderr.isatty(),
        )
    except (ValueError, TypeError, OSError, ImportError) as e:
        print(f"gptx prepare: error: {e}", file=sys.stderr)
        return 1
    if not args.quiet:
        t = index["tokenizer"]
        n_train, n_val = index["tokens"]["train"], index["tokens"]["val"]
        print(f"tokenized {len(index['sources'])} file(s) with {t['name']} (vocab {t['vocab_size']}): "
              f"{n_train + n_val:,} tokens in {index['seconds']:.1f} s")
        print(f"  train: {n_train:,} tokens in {len(index['train'])} shard(s)")
        print(f"  val:   {n_val:,} tokens in {len(index['val'])} shard(s)")
        print(f"  -> {args.out}")
    return 0
