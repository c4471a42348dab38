"""`gptx export`: write a checkpoint as GGUF (llama.cpp) or as a Hugging Face folder (transformers)."""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path


def add_parser(sub):
    from gptx.cli.sample import add_tokenizer_argument

    p = sub.add_parser("export", help="write a checkpoint as GGUF (llama.cpp) or a Hugging Face folder",
                       description="Export a gptx checkpoint (a training run directory or one of its step "
                       "directories) or a Hugging Face GPT-2 directory, with its tokenizer. --format gguf writes one "
                       "file llama.cpp loads (needs the gguf package: pip install 'gptx-engine[gguf]'); --format hf "
                       "writes a folder transformers' GPT2LMHeadModel and AutoTokenizer load. Written atomically.")
    p.add_argument("checkpoint", metavar="CHECKPOINT")
    p.add_argument("--format", required=True, choices=["gguf", "hf"])
    p.add_argument("--out", required=True, metavar="PATH", help="the .gguf file, or the folder for --format hf")
    p.add_argument("--dtype", default=None, choices=["f32", "f16", "q8_0"],
                   help="GGUF weight type of the 2-D matrices (default f32; q8_0: int8 blocks of 32 with a float16 "
                   "scale); --format hf always writes float32")
    p.add_argument("--force", action="store_true", help="replace an existing --out")
    add_tokenizer_argument(p)
    return p


def export_hf(model, tokenizer, out, force: bool = False) -> Path:
    """save_pretrained into a fresh sibling folder, then renamed into place (an existing folder only with force)."""
    out = Path(out)
    if out.exists() and not force and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out} exists; pass --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".", suffix=".tmp", dir=out.parent))
    try:
        model.save_pretrained(tmp, tokenizer=tokenizer)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=out.name + ".", suffix=".old", dir=out.parent))
            os.replace(out, old / "x")  # moved aside first, so a failure leaves one of the two whole
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def run(args) -> int:
    import gptx

    try:
        if args.format == "hf" and args.dtype not in (None, "f32"):
            raise ValueError("--dtype applies to --format gguf (a Hugging Face folder holds float32 weights)")
        out = Path(args.out)
        if args.format == "gguf" and out.is_dir():
            raise ValueError(f"--out {out} is a folder; give the .gguf file to write")
        if args.format == "gguf" and out.exists() and not args.force:
            raise ValueError(f"{out} exists; pass --force to replace it")
        model, tok = gptx.load(args.checkpoint, tokenizer=args.tokenizer)
        if args.format == "gguf":
            from gptx.export_gguf import write_gguf

            write_gguf(model, tok, out, args.dtype or "f32")
            print(f"wrote {out} ({os.path.getsize(out) / 2**20:.1f} MiB, {args.dtype or 'f32'})")
        else:
            export_hf(model, tok, out, force=args.force)
            print(f"wrote {out}/ (config.json, model.safetensors, tokenizer files)")
        return 0
    except (ValueError, ImportError, OSError) as e:
        print(f"gptx export: error: {e}", file=sys.stderr)
        return 1
