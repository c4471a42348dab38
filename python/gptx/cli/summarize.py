"""`gptx summarize`: a summary per line of a JSONL file (document/summary, article/highlights, ... pairs), written as
JSONL with the input's id, the prediction and the reference."""
from __future__ import annotations

import json
import sys

from gptx.cli._numbers import integer, number


def add_pair_arguments(p):
    """Where the documents are in a JSONL file, and the prompt template (shared with `gptx eval --rouge`)."""
    p.add_argument("--document-key", metavar="KEY", help="JSON key of the document (default: detected from the first "
                   "line: document, article, dialogue or prompt)")
    p.add_argument("--summary-key", metavar="KEY", help="JSON key of the reference summary (default: detected)")
    p.add_argument("--template", metavar="TEXT", help="prompt template with {document}, as in fine-tuning (default "
                   "'{document}\\nTL;DR:'; prompt/completion files: the prompt as it is)")


def add_decode_arguments(p, batch_size: bool = True):
    """Decoding flags, passed to model.generate under transformers' names (shared with `gptx eval --rouge`)."""
    g = p.add_argument_group("decoding (greedy by default)")
    g.add_argument("--max-new-tokens", type=integer(1), metavar="N", help="tokens per summary at most (default "
                   "min(64, block_size / 2)); the document is cut to leave room for them")
    g.add_argument("--num-beams", type=integer(1), metavar="K", help="beam search with K beams (1: greedy)")
    g.add_argument("--length-penalty", type=float, metavar="A", help="beam score = log-probability / length^A")
    g.add_argument("--no-repeat-ngram-size", type=integer(0), metavar="N", help="never repeat an n-gram of N tokens")
    g.add_argument("--early-stopping", choices=["true", "false", "never"], help="when beam search stops "
                   "(transformers' early_stopping)")
    g.add_argument("--num-return-sequences", type=integer(1), metavar="N", help="summaries per document (at most "
                   "--num-beams); the first is the prediction")
    g.add_argument("--temperature", type=number(0.0), metavar="T", help="sample at T > 0 instead of decoding "
                   "greedily (default 0)")
    g.add_argument("--top-k", type=integer(0), metavar="K")
    g.add_argument("--top-p", type=number(0.0, 1.0), metavar="P")
    g.add_argument("--repetition-penalty", type=number(0.0, low_open=True), metavar="R")
    g.add_argument("--min-new-tokens", type=integer(0), metavar="N")
    g.add_argument("--seed", type=integer(0), help="seed of sampled summaries")
    if batch_size:
        g.add_argument("--batch-size", type=integer(1), default=8, metavar="B", help="documents per generate call "
                       "(default 8)")


def decode_kwargs(args) -> dict:
    """The generate() keyword arguments the user gave (none given: greedy)."""
    kw = {}
    for name in ("num_beams", "length_penalty", "no_repeat_ngram_size", "num_return_sequences", "temperature",
                 "top_k", "top_p", "repetition_penalty", "min_new_tokens", "seed"):
        v = getattr(args, name, None)
        if v is not None:
            kw[name] = v
    if getattr(args, "early_stopping", None) is not None:
        kw["early_stopping"] = {"true": True, "false": False}.get(args.early_stopping, args.early_stopping)
    return kw


def add_parser(sub):
    from gptx.cli.sample import add_tokenizer_argument

    p = sub.add_parser("summarize", help="summarise the documents of a JSONL file with a fine-tuned model",
                       description="Write one JSON object per input line: the input's id (its \"id\", else the line "
                       "number), the prediction and the reference when the line has one. The prompt is the "
                       "fine-tuning template; a document too long for the context is cut at its end.")
    p.add_argument("checkpoint", metavar="CHECKPOINT",
                   help="a run folder, a step folder or a Hugging Face GPT-2 folder")
    p.add_argument("--input", "-i", required=True, metavar="FILE", help="JSONL documents (references optional)")
    p.add_argument("--output", "-o", required=True, metavar="FILE", help="JSONL predictions (written atomically)")
    p.add_argument("--limit", type=integer(1), metavar="N", help="only the first N documents")
    add_tokenizer_argument(p)
    add_pair_arguments(p)
    add_decode_arguments(p)
    p.add_argument("--threads", type=integer(1), metavar="N", help="CPU threads (default: all cores)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--no-progress", action="store_true", help="no progress line")
    return p


def predict(args, need_target: bool, where: str, check=None):
    """(pair file, predictions per pair, documents cut, seconds, model) for summarize and eval --rouge."""
    import gptx
    from gptx.data_pairs import read_pairs, unescape
    from gptx.summarize import summarize_all

    if args.threads:
        gptx.set_num_threads(args.threads)
    pf = read_pairs(args.input if where == "summarize" else args.jsonl, args.document_key, args.summary_key,
                    need_target=need_target)
    pairs = pf.pairs[:args.limit] if getattr(args, "limit", None) else pf.pairs
    if check is not None:
        check(pf, pairs)
    model, tok = gptx.load(args.checkpoint, tokenizer=args.tokenizer, device=args.device, dtype=args.dtype)
    show = not args.no_progress and sys.stderr.isatty()

    def progress(done, total):
        if show:
            print(f"\r{where}: {done}/{total} documents", end="" if done < total else "\n", file=sys.stderr,
                  flush=True)

    outs, cut, seconds = summarize_all(model, [p.source for p in pairs], tok, unescape(args.template), raw=pf.raw,
                                       max_new_tokens=args.max_new_tokens, batch_size=args.batch_size or 8,
                                       on_batch=progress, **decode_kwargs(args))
    return pf, pairs, outs, cut, seconds


def records(pairs, outs, raw_cut=None) -> list[dict]:
    rows = []
    for p, o in zip(pairs, outs):
        row = {"id": p.id, "prediction": o[0]}
        if len(o) > 1:
            row["predictions"] = o
        if p.target is not None:
            row["reference"] = p.target
        rows.append(row)
    return rows


def write_jsonl(path, rows) -> None:
    from gptx._fileio import atomic_write_bytes

    atomic_write_bytes(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8"))


def run(args) -> int:
    try:
        pf, pairs, outs, cut, seconds = predict(args, need_target=False, where="summarize")
        write_jsonl(args.output, records(pairs, outs))
    except (ValueError, TypeError, OSError, RuntimeError) as e:  # generate's argument errors are Value/TypeErrors
        print(f"gptx summarize: error: {e}", file=sys.stderr)
        return 1
    notes = [f"{pf.skipped_empty} empty line(s) skipped"] if pf.skipped_empty else []
    if cut:
        notes.append(f"{cut} document(s) cut to fit the context")
    per = seconds / max(1, len(pairs))
    print(f"{len(pairs)} summaries in {seconds:.1f} s ({per:.2f} s per summary) -> {args.output}"
          + (f"; {', '.join(notes)}" if notes else ""))
    return 0
