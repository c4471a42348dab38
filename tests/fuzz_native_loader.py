"""Seeded mutation fuzzing of the C++ checkpoint loader (gptx::load_model through gptx._core.load_model).

Each mutation corrupts a copy of a small checkpoint (model.safetensors, config.json or manifest.json: flipped bytes,
truncation, inserted bytes, a forged header length, numbers swapped for huge or odd values) and loads it in a worker
process with a memory cap; the parent counts the outcomes. Every file the loader reads is listed in the checkpoint's
sha256 manifest, so a load that succeeds while any listed file differs from the original is a silent load of changed
bytes: a failure, like a crash (the worker dies on a signal) or a hang (no answer within the timeout).

    python tests/fuzz_native_loader.py --count 5000 --seed 1     # the long run; prints the counts
tests/test_fuzz_native_loader.py runs a fast slice of it in the normal suite.
"""
from __future__ import annotations

import argparse
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

FILES = ("model.safetensors", "config.json", "manifest.json")
MEMORY_CAP = 2 << 30  # bytes of address space for a worker: a runaway allocation fails instead of eating the machine


def make_checkpoint(root: Path) -> Path:
    import gptx

    model = gptx.GPT(gptx.GPTConfig(n_layer=2, n_head=2, n_embd=16, block_size=16, vocab_size=40), seed=0)
    return Path(gptx.save_checkpoint(root / "run", model))


def mutate(data: bytes, rng: random.Random) -> bytes:
    kind = rng.randrange(6)
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
    else:  # copy one region over another (aliasing inside the data or the header)
        if len(b) > 2:
            n = rng.randint(1, min(64, len(b) // 2))
            src, dst = rng.randrange(len(b) - n), rng.randrange(len(b) - n)
            b[dst:dst + n] = b[src:src + n]
    return bytes(b)


def worker(step: str, seed: int, start: int, count: int, files=FILES) -> None:
    """Loads mutations start..count-1 of `seed`, printing 'index outcome' per load (outcome: error, loaded, same)."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))
    from gptx import _core

    src = Path(step)
    originals = {f: (src / f).read_bytes() for f in files}
    work = Path(tempfile.mkdtemp(prefix="gptx-fuzz-")) / "step"
    shutil.copytree(src, work)  # every file of the checkpoint; FILES are rewritten for each mutation
    _core.load_model(str(work))  # the unmutated copy loads: otherwise every outcome below would be meaningless
    try:
        for i in range(start, count):
            rng = random.Random(f"{seed}:{i}")
            target = rng.choice(files)
            for f, data in originals.items():
                (work / f).write_bytes(mutate(data, rng) if f == target else data)
            changed = (work / target).read_bytes() != originals[target]
            print(f"{i} start", flush=True)
            try:
                _core.load_model(str(work))
                outcome = "loaded" if changed else "same"
            except (ValueError, TypeError, MemoryError, RuntimeError):
                outcome = "error"
            print(f"{i} {outcome} {target}", flush=True)
    finally:
        shutil.rmtree(work.parent, ignore_errors=True)


def run(step: Path, seed: int, count: int, timeout: float = 20.0, files=FILES) -> dict:
    """Counts of every outcome over `count` mutations; restarts the worker after a crash or a hang."""
    counts = {"cases": count, "errors": 0, "loaded": 0, "unchanged": 0, "crashes": [], "hangs": [], "silent": []}
    i = 0
    while i < count:
        cmd = [sys.executable, __file__, "--worker", str(step), "--seed", str(seed), "--start", str(i),
               "--count", str(count), "--files", ",".join(files)]
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
            idx, outcome, *target = line.split()
            idx = int(idx)
            current = idx
            if outcome == "start":
                continue
            done.add(idx)
            if outcome == "error":
                counts["errors"] += 1
            elif outcome == "same":
                counts["unchanged"] += 1
            elif outcome == "loaded":
                # Only a changed manifest may still load (e.g. a digit of a size swapped for the same value): every
                # other file is checked against it.
                if target and target[0] == "manifest.json":
                    counts["loaded"] += 1
                else:
                    counts["silent"].append(idx)
        if proc.returncode == 0 and len(done) == count - i:
            break
        # the worker died (crash) or stalled (hang) on `current`; go on after it
        (counts["crashes"] if proc.returncode not in (0, -9) else counts["hangs"]).append(current)
        i = current + 1
    return counts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--worker", metavar="STEP_DIR", help=argparse.SUPPRESS)
    ap.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--files", default=",".join(FILES), help="comma list of the checkpoint files to mutate")
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.worker, args.seed, args.start, args.count, tuple(args.files.split(",")))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        counts = run(make_checkpoint(Path(tmp)), args.seed, args.count, files=tuple(args.files.split(",")))
    print(json.dumps(counts))
    return 0 if not (counts["crashes"] or counts["hangs"] or counts["silent"]) else 1


if __name__ == "__main__":
    sys.exit(main())
