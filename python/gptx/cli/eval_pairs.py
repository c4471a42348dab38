"""`gptx eval --jsonl`: the loss of the summaries of document/summary pairs, or (--rouge) ROUGE of generated
summaries with bootstrap intervals next to the lead baseline on the same pairs."""
from __future__ import annotations

import json
import math
import sys


def _rouge_table(n, model_scores, lead_scores) -> str:
    lines = [f"ROUGE F1 x 100 on {n} pairs (95% bootstrap intervals; rouge-score, Porter stemming)",
             f"{'':10} {'model':>22} {'lead-1':>22}"]
    for t in model_scores:
        cells = []
        for s in (model_scores[t], lead_scores[t]):
            cells.append(f"{s['f1'] * 100:6.2f} [{s['low'] * 100:5.2f}, {s['high'] * 100:5.2f}]")
        lines.append(f"{t:10} {cells[0]:>22} {cells[1]:>22}")
    return "\n".join(lines)


def _summary_loss(args) -> int:
    import gptx
    from gptx.data_finetune import FinetuneDataset, encode_pair_file
    from gptx.data_pairs import read_pairs, unescape

    if args.threads:
        gptx.set_num_threads(args.threads)
    model, tok = gptx.load(args.checkpoint, tokenizer=args.tokenizer, device=args.device, dtype=args.dtype)
    pf = read_pairs(args.jsonl, args.document_key, args.summary_key)
    if args.limit:
        pf.pairs = pf.pairs[:args.limit]
    block = model.config.block_size if args.block_size is None else args.block_size
    if not 1 <= block <= model.config.block_size:
        raise ValueError(f"--block-size must be in [1, {model.config.block_size}], got {block}")
    examples, st = encode_pair_file(pf, tok, block, unescape(args.template))
    nats = count = 0.0
    for x, y in FinetuneDataset(examples).iter_batches(args.batch_size or 8):
        k = int((y != -100).sum())
        nats += float(model.forward_loss(x, y)) * k
        count += k
    loss = nats / count
    print(f"{len(examples)} pairs, {int(count):,} summary tokens scored ({st['truncated']} document(s) cut to fit "
          f"{block} tokens)")
    print(f"summary loss: {loss:.4f} nats/token")
    print(f"perplexity: {math.exp(min(loss, 700.0)):.4f}")
    return 0


def _check_references(pf, pairs) -> None:
    """--rouge compares with references: a file (or a line) without one is an error, found before generating."""
    missing = [p.line for p in pairs if p.target is None]
    if missing:
        what = f"no \"{pf.target_key}\" key" if pf.target_key else "no summary key (summary, highlights, completion)"
        raise ValueError(f"--rouge needs references: {pf.path}:{missing[0]} has {what} ({len(missing)} of "
                         f"{len(pairs)} lines lack one; --summary-key names it)")


def _rouge(args) -> int:
    from gptx import rouge
    from gptx.cli.summarize import decode_kwargs, predict, records, write_jsonl

    rouge._scorer()  # fail on a missing rouge-score before generating anything
    pf, pairs, outs, cut, seconds = predict(args, need_target=False, where="eval", check=_check_references)
    refs = [p.target for p in pairs]
    model_scores = rouge.rouge([o[0] for o in outs], refs)
    lead_scores = rouge.rouge([rouge.lead(p.source) for p in pairs], refs)
    if args.output:
        write_jsonl(args.output, records(pairs, outs))
    result = {"n": len(pairs), "model": model_scores, "lead": lead_scores, "checkpoint": args.checkpoint,
              "file": args.jsonl, "decode": decode_kwargs(args), "documents_cut": cut,
              "seconds": seconds, "seconds_per_summary": seconds / len(pairs), "bootstrap_samples":
              rouge.BOOTSTRAP_SAMPLES, "confidence": 0.95}
    if args.json == "-":
        print(json.dumps(result))
        return 0
    if args.json:
        from gptx._fileio import atomic_write_json

        atomic_write_json(args.json, result)
    print(_rouge_table(len(pairs), model_scores, lead_scores))
    notes = [f"{cut} document(s) cut to fit the context"] if cut else []
    if pf.skipped_empty:
        notes.append(f"{pf.skipped_empty} empty line(s) skipped")
    print(f"{len(pairs)} summaries in {seconds:.1f} s ({seconds / len(pairs):.2f} s per summary)"
          + (f"; {', '.join(notes)}" if notes else ""))
    return 0


def run_pairs(args) -> int:
    try:
        if args.rouge and not args.jsonl:
            raise ValueError("--rouge scores generated summaries: give the pairs with --jsonl FILE")
        if not args.rouge and (args.json or args.output):
            raise ValueError("--json and --output go with --rouge")
        return _rouge(args) if args.rouge else _summary_loss(args)
    except ImportError as e:
        print(f"gptx eval: error: {e}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, OSError, RuntimeError) as e:
        print(f"gptx eval: error: {e}", file=sys.stderr)
        return 1
