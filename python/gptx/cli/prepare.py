"""`gptx prepare`: tokenize text files once into uint16 token shards, or build the docstring summarisation corpus."""
import sys

from gptx.cli._numbers import integer, number


def add_parser(sub):
    p = sub.add_parser(
        "prepare",
        help="tokenize text files into token shards",
        description="Tokenize UTF-8 text files once into memory-mappable uint16 token shards (train_*.bin, "
        "val_*.bin), an index.json, and the tokenizer, all in --out. With --summaries docstrings: build "
        "document -> summary pairs from Python docstrings instead (train/val/test.jsonl split by module, "
        "pretrain.txt, stats.json).",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", "-i", nargs="+", metavar="FILE", help="UTF-8 text file(s)")
    src.add_argument("--summaries", choices=["docstrings"], help="build a summarisation corpus: 'docstrings' reads "
                     "the source of the running Python's standard library (and --packages) without importing it")
    p.add_argument("--packages", default="stdlib", metavar="NAMES", help="with --summaries: comma-separated "
                   "packages to read, 'stdlib' for the standard library (default: stdlib)")
    p.add_argument("--tokenizer-vocab", type=integer(258), default=None, metavar="N", help="with --summaries: "
                   "also train a byte-level BPE of N ids on pretrain.txt into --out/tokenizer")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="output folder (created if missing)")
    p.add_argument("--tokenizer", default="gpt2", metavar="bytes|gpt2|PATH",
                   help="'bytes', 'gpt2' (default), or a folder/file saved by Tokenizer.save or a tokenizer.json")
    p.add_argument("--shard-tokens", type=integer(1), default=100_000_000, metavar="N",
                   help="tokens per shard (default 100,000,000 = 200 MB)")
    p.add_argument("--val-fraction", type=number(0.0, 1.0, high_open=True), default=0.1, metavar="F",
                   help="fraction of the tokens (the end of the stream) held out for validation (default 0.1)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar or summary")
    return p


def run_summaries(args) -> int:
    from gptx.corpus_docstrings import build_corpus, stats_line, write_corpus

    packages = [p.strip() for p in args.packages.split(",") if p.strip()]
    try:
        stats = write_corpus(build_corpus(packages), args.out, args.tokenizer_vocab)
    except (ValueError, OSError) as e:
        print(f"gptx prepare: error: {e}", file=sys.stderr)
        return 1
    if not args.quiet:
        print(stats_line(stats))
        print(f"  -> {args.out}: train.jsonl val.jsonl test.jsonl pretrain.txt stats.json"
              + (" tokenizer/" if args.tokenizer_vocab else ""))
    return 0


def run(args) -> int:
    from gptx.data_shards import prepare

    if args.summaries:
        return run_summaries(args)
    if args.tokenizer_vocab is not None or args.packages != "stdlib":
        print("gptx prepare: error: --packages and --tokenizer-vocab go with --summaries", file=sys.stderr)
        return 1

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
