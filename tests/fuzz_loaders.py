"""Seeded mutation fuzzing of gptx's loaders: the C++ checkpoint loader, the Python checkpoint loader (model,
optimizer state, tokenizer through gptx.load), token shards, prompt/completion JSONL and a tokenizer folder on its own
(gptx_tokenizer.json, tokenizer.json, vocab.json + merges.txt).

Each mutation corrupts one file of a copy of a small saved folder (flipped bytes, truncation, inserted bytes, a forged
length header, numbers swapped for huge or odd values, copied regions) and loads it in a worker process with a memory
cap; the parent counts the outcomes. A crash (the worker dies on a signal) or a hang (no answer within the timeout)
is a failure, and so is a silent load: success while a file the folder's sha256 list covers (a checkpoint's
manifest, a shard index's digests) differs from the original. The JSONL and tokenizer targets have no digests: there
an error must name the file it is about (else it counts as unclear), and a tokenizer that loads must give back the
text it encodes (else it counts as lossy).

    python tests/fuzz_loaders.py --target checkpoint --count 5000 --seed 1   # a long run; prints the counts
tests/test_fuzz_loaders.py runs a fast slice of each target in the normal suite.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

TARGETS = ("native", "checkpoint", "shards", "pairs", "tokenizer")
NAMED = ("pairs", "tokenizer")  # targets whose errors must name the file
PAIRS_FILE = "train.jsonl"
SAMPLE_TEXT = "Hello, world! Caf\u00e9 \u4e2d\u6587 <|endoftext|> tabs\tand\nnewlines  \U0001F600 end."
MEMORY_CAP = 2 << 30  # bytes of address space for a worker: a runaway allocation fails instead of eating the machine


def make_folder(root: Path, target: str) -> Path:
    """A small saved folder for the target: a training checkpoint (model, optimizer, tokenizer) or token shards."""
    import numpy as np

    import gptx

    if target == "pairs":
        folder = root / "pairs"
        folder.mkdir()
        rows = [{"prompt": f"Summarise {i}: " + "word " * i, "completion": f" short {i}\u00e9\u4e2d", "id": i}
                for i in range(10)]
        lines = [json.dumps(r, ensure_ascii=i % 2 == 0) for i, r in enumerate(rows)]
        (folder / PAIRS_FILE).write_text("\n".join(lines[:5] + [""] + lines[5:]) + "\n", encoding="utf-8")
        return folder
    if target == "tokenizer":
        folder = root / "tok"
        texts = [SAMPLE_TEXT, "the quick brown fox jumps over the lazy dog " * 20, "x = [1, 2, 3]\n" * 30]
        gptx.Tokenizer.train(texts, vocab_size=300).save(folder)
        (folder / "vm").mkdir()  # vocab.json + merges.txt alone: the Hugging Face folder form gptx.load falls back to
        for name in ("vocab.json", "merges.txt"):
            shutil.copy(folder / name, folder / "vm" / name)
        return folder
    if target == "shards":
        text = root / "corpus.txt"
        text.write_text("".join(chr(32 + i % 90) for i in range(3000)))
        gptx.data.prepare([text], root / "shards", tokenizer="bytes", shard_tokens=1000)
        return root / "shards"
    model = gptx.GPT(gptx.GPTConfig(n_layer=2, n_head=2, n_embd=16, block_size=16, vocab_size=300), seed=0)
    opt = gptx.AdamW(model.named_parameters(), model.grads, flat=model.flat_buffers())
    model.forward(np.zeros((1, 4), np.int64), np.ones((1, 4), np.int64))
    model.backward()
    opt.step()
    return Path(gptx.save_checkpoint(root / "run", model, optimizer=opt, tokenizer=gptx.Tokenizer.bytes()))


def covered_files(folder: Path, target: str) -> set:
    """The files whose bytes the folder's own sha256 list vouches for (relative paths)."""
    if target in NAMED:
        return set()
    if target == "shards":
        index = json.loads((folder / "index.json").read_text())
        return {e["file"] for split in ("train", "val") for e in index.get(split, []) if "sha256" in e}
    return set(json.loads((folder / "manifest.json").read_text())["files"]) | {"manifest.json"}


def load(folder: Path, target: str) -> None:
    import numpy as np

    import gptx
    from gptx import _core

    if target == "native":
        _core.load_model(str(folder))
    elif target == "checkpoint":
        gptx.load_checkpoint(folder)
        gptx.load(folder)
    elif target == "pairs":
        pairs = gptx.data.load_jsonl_pairs(folder / PAIRS_FILE)
        examples = gptx.data.encode_pairs(pairs, gptx.Tokenizer.bytes(), block_size=24)
        gptx.FinetuneDataset(examples, seed=1).next_batch(3, block_size=24)
    elif target == "tokenizer":
        from gptx.loading import folder_tokenizer

        for tok in (gptx.Tokenizer.load(folder), folder_tokenizer(folder / "vm", 300)):
            check_round_trip(tok)
    else:
        for split in ("train", "val"):
            np.asarray(gptx.load_shards(folder, split, verify=True)).sum()


class Lossy(Exception):
    """A tokenizer loaded but does not give back the text it encodes."""


def check_round_trip(tok) -> None:
    """Encode and decode with a loaded tokenizer, and decode every id: a tokenizer that loads must work."""
    for special in (False, True):
        ids = tok.encode(SAMPLE_TEXT, allow_special=special)
        if tok.decode(ids) != SAMPLE_TEXT:
            raise Lossy(f"{tok!r}: decode(encode(text)) differs from the text")
    tok.decode(list(range(tok.vocab_size)))


def names_the_file(e: BaseException, folder: Path, target: str) -> bool:
    """Whether an error message says which file (by name or path) it is about."""
    text = str(e)
    names = {p.name for p in folder.rglob("*") if p.is_file()} | {folder.name}
    return any(n in text for n in names)


def files_of(folder: Path, target: str) -> list:
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    if target == "native":  # what the C++ loader reads
        return [f for f in ("model.safetensors", "config.json", "manifest.json") if (folder / f).is_file()]
    if target == "shards":  # what load_shards reads (the tokenizer files beside them are the checkpoint target's)
        return [n for n in names if n == "index.json" or n.endswith(".bin")]
    if target == "tokenizer":  # what Tokenizer.load and the vocab.json + merges.txt fallback read
        return ["gptx_tokenizer.json", "tokenizer.json", "vm/vocab.json", "vm/merges.txt"]
    return names


# Text that parsers of JSON and text formats meet rarely by chance: unpaired surrogate and NUL escapes, deep nesting,
# a byte-order mark, invalid UTF-8, carriage returns, values of the wrong type, duplicated keys.
HOSTILE = [t.encode("utf-8") for t in (
    '"\\ud800"', "\\udc00", '"\\u0000"', "[" * 5000, '{"a":' * 3000, "\ufeff", "\r", "\r\n", '"prompt": 7, ',
    '"completion": null, ', "null", "{}", "[]", '"prompt": "dup", ', "\x00", "1e999", '"' + "x" * 100000 + '"')] + \
    [b"\xff\xfe", b"\x80", b"\xed\xa0\x80"]


def mutate(data: bytes, rng: random.Random) -> bytes:
    kind = rng.randrange(7)
    b = bytearray(data)
    if kind == 0 and b:  # flip a few bits
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    elif kind == 1:  # truncate
        del b[rng.randrange(len(b) + 1):]
    elif kind == 2:  # insert bytes
        at = rng.randrange(len(b) + 1)
        b[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    elif kind == 3 and len(b) >= 8:  # forge the safetensors header length (or the first 8 bytes of a JSON file)
        b[:8] = rng.choice([0, 1, len(b), len(b) - 9, 2**40, 2**64 - 1, rng.randrange(2**32)]).to_bytes(8, "little")
    elif kind == 4:  # a number in the text part replaced by a huge, negative, fractional or non-number value
        text = b.decode("latin-1")
        nums = list(re.finditer(r"-?\d+(\.\d+)?", text[:65536]))
        if nums:
            m = rng.choice(nums)
            new = rng.choice(["1e300", "-1", "0", "2147483648", "9223372036854775807", "1.5", "NaN", '"x"', "[]"])
            text = text[:m.start()] + new + text[m.end():]
        b = bytearray(text.encode("latin-1"))
    elif kind == 6:  # a hostile snippet at a random place (mostly inside the text)
        at = rng.randrange(len(b) + 1)
        b[at:at] = rng.choice(HOSTILE)
    else:  # copy one region over another (aliasing inside the data or the header)
        if len(b) > 2:
            n = rng.randint(1, min(64, len(b) // 2))
            src, dst = rng.randrange(len(b) - n), rng.randrange(len(b) - n)
            b[dst:dst + n] = b[src:src + n]
    return bytes(b)


def rehash(folder: Path, target: str, rel: str) -> None:
    """Make the folder's sha256 list vouch for the mutated file, so the parsers behind the check see its bytes."""
    data = (folder / rel).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if target == "shards":
        index_path = folder / "index.json"
        try:
            index = json.loads(index_path.read_text())
            for split in ("train", "val"):
                for e in index.get(split, []):
                    if isinstance(e, dict) and e.get("file") == rel:
                        e["sha256"] = digest
            index_path.write_text(json.dumps(index))
        except (ValueError, AttributeError, TypeError):
            pass  # a mutated index: nothing to vouch with
        return
    manifest_path = folder / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
        manifest["files"][rel] = {"sha256": digest, "bytes": len(data)}
        manifest_path.write_text(json.dumps(manifest))
    except (ValueError, KeyError, TypeError):
        pass


def worker(folder: str, target: str, seed: int, start: int, count: int, vouch: bool = False) -> None:
    """Loads mutations start..count-1 of `seed`, printing 'index outcome file' per load (error, loaded, same)."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))
    src = Path(folder)
    files = files_of(src, target)
    originals = {f: (src / f).read_bytes() for f in files}
    work = Path(tempfile.mkdtemp(prefix="gptx-fuzz-")) / "copy"
    shutil.copytree(src, work)
    load(work, target)  # the unmutated copy loads: otherwise every outcome below would be meaningless
    try:
        for i in range(start, count):
            rng = random.Random(f"{seed}:{i}")
            target_file = rng.choice(files)
            for f, data in originals.items():
                (work / f).write_bytes(mutate(data, rng) if f == target_file else data)
            changed = (work / target_file).read_bytes() != originals[target_file]
            if vouch and target_file not in ("manifest.json", "index.json"):
                rehash(work, target, target_file)
            print(f"{i} start", flush=True)
            detail = ""
            try:
                load(work, target)
                outcome = "loaded" if changed else "same"
            except Lossy:
                outcome = "lossy"
            except (ValueError, TypeError, MemoryError, RuntimeError, OSError, UnicodeDecodeError) as e:
                # the named targets' errors must say which file; an exception of another type is never clean
                clear = target not in NAMED or isinstance(e, MemoryError) or names_the_file(e, work, target)
                outcome = "error" if clear else "unclear"
                detail = "" if clear else f" {type(e).__name__}"
            except Exception as e:  # noqa: BLE001 (a traceback the user would see: counted, not fatal)
                outcome, detail = "unclear", f" {type(e).__name__}"
            print(f"{i} {outcome} {target_file}{detail}", flush=True)
    finally:
        shutil.rmtree(work.parent, ignore_errors=True)


def run(folder: Path, target: str, seed: int, count: int, timeout: float = 20.0, vouch: bool = False) -> dict:
    """Counts of every outcome over `count` mutations; restarts the worker after a crash or a hang. With vouch, the
    sha256 list is rewritten to match each mutated file, so the parsers behind it are fuzzed too; loads of changed
    bytes are then expected, and only crashes and hangs count against the loaders."""
    covered = covered_files(folder, target) if target != "native" else {"model.safetensors", "config.json"}
    counts = {"target": target, "vouched": vouch, "cases": count, "errors": 0, "loaded": 0, "unchanged": 0,
              "crashes": [], "hangs": [], "silent": [], "unclear": [], "lossy": []}
    i = 0
    while i < count:
        cmd = [sys.executable, __file__, "--worker", str(folder), "--target", target, "--seed", str(seed),
               "--start", str(i), "--count", str(count)] + (["--vouch"] if vouch else [])
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        current = i
        try:
            out, _ = proc.communicate(timeout=timeout * (count - i))
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        lines = out.splitlines()
        done = set()
        for line in lines:
            idx, outcome, *rest = line.split()
            idx = int(idx)
            current = idx
            if outcome == "start":
                continue
            done.add(idx)
            if outcome == "error":
                counts["errors"] += 1
            elif outcome in ("unclear", "lossy"):
                counts[outcome].append(idx)
            elif outcome == "same":
                counts["unchanged"] += 1
            elif outcome == "loaded":
                # A changed file the sha256 list covers must never load (the list itself may: a mutation can keep
                # it valid); files outside it (e.g. shards without digests) may load with other bytes.
                if rest and rest[0] in covered and rest[0] != "manifest.json" and not vouch:
                    counts["silent"].append(idx)
                else:
                    counts["loaded"] += 1
        if proc.returncode == 0 and len(done) == count - i:
            break
        # the worker died (crash) or stalled (hang) on `current`; go on after it
        (counts["crashes"] if proc.returncode not in (0, -9) else counts["hangs"]).append(current)
        i = current + 1
    return counts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", choices=TARGETS, default="checkpoint")
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--vouch", action="store_true",
                    help="rewrite the sha256 list for each mutation, so the parsers behind it see the bytes")
    ap.add_argument("--worker", metavar="FOLDER", help=argparse.SUPPRESS)
    ap.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.worker, args.target, args.seed, args.start, args.count, args.vouch)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        counts = run(make_folder(Path(tmp), args.target), args.target, args.seed, args.count, vouch=args.vouch)
    print(json.dumps(counts))
    return 0 if not any(counts[k] for k in ("crashes", "hangs", "silent", "unclear", "lossy")) else 1


if __name__ == "__main__":
    sys.exit(main())
