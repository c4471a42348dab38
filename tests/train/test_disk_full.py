"""Disk full for real: `gptx train --resume` on a tmpfs too small for its next checkpoint ends with one line and exit
status 1, and the previous checkpoint, the log and the folder stay as they were; with room again the run goes on.

A tmpfs needs a mount namespace: an unprivileged user namespace (`unshare -rm`), or root (`unshare -m`). Where
neither is allowed the test is skipped; tests/train/test_faults.py injects the same write failure instead."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import gptx

TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--batch-size", "2",
        "--eval-every", "0", "--eval-batches", "1", "--threads", "1", "--no-progress", "--log-every", "0",
        "--ckpt-every", "2"]

# Runs inside the namespace, with the tmpfs mounted at argv[1]: the checks must happen there, since the mount (and
# what it holds) goes with the namespace.
INSIDE = r'''
import hashlib, json, os, random, shutil, subprocess, sys
from pathlib import Path

mnt, tiny, pristine = Path(sys.argv[1]), json.loads(sys.argv[2]), Path(sys.argv[3])
run = mnt / "run"

def gptx_train(*args):
    return subprocess.run([sys.executable, "-m", "gptx", "train", *args], capture_output=True, text=True)

def snapshot():
    return {str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(run.rglob("*"))
            if p.is_file()}

def used_kib():
    st = os.statvfs(mnt)
    return (st.f_blocks - st.f_bfree) * st.f_frsize // 1024

def remount(kib):
    subprocess.run(["mount", "-o", f"remount,size={kib}k", str(mnt)], check=True)

first = gptx_train(*tiny, "--steps", "2", "--out", str(run))
assert first.returncode == 0, first.stdout + first.stderr
checkpoint_kib = used_kib()
shutil.copytree(run, pristine)
from gptx.checkpoint import load_checkpoint
results = []
# The space left after the first checkpoint, from none to nearly a second checkpoint's: the resume's log rewrite,
# its log lines, or one of the checkpoint's files (weights, moments, tokenizer, manifest, pointer) runs out of it.
rng = random.Random(int(sys.argv[4]))
# (about 8 KiB short of a whole second checkpoint, only latest.json is left to write)
for room in [0] + [int(checkpoint_kib * f) + rng.randrange(8) for f in (0.1, 0.5, 0.85)] + \
        [checkpoint_kib - 10, checkpoint_kib - 8]:
    remount(4096)
    shutil.rmtree(run)
    shutil.copytree(pristine, run)
    remount(used_kib() + room)
    before = snapshot()
    full = gptx_train("--resume", str(run), "--steps", "4", "--no-progress")
    after = snapshot()
    remount(4096)
    step = load_checkpoint(run).step
    again = gptx_train("--resume", str(run), "--steps", "4", "--no-progress")
    results.append({"room_kib": room, "code": full.returncode, "stderr": full.stderr, "step": step,
                    "log_kept": "log.jsonl" in after,
                    "unchanged": {k: v for k, v in before.items() if k != "log.jsonl"} ==
                                 {k: v for k, v in after.items() if k != "log.jsonl"},
                    "extra": sorted(set(after) - set(before)),
                    "again": again.returncode, "again_out": again.stdout + again.stderr,
                    "final_step": load_checkpoint(run).step})
print(json.dumps({"checkpoint_kib": checkpoint_kib, "results": results}))
'''


def namespace_prefix(mnt: Path):
    """The command prefix that gives a private mount namespace where a tmpfs can be mounted, or None."""
    if shutil.which("unshare") is None:
        return None
    for prefix in (["unshare", "-rm"], ["unshare", "-m"]):
        probe = subprocess.run([*prefix, "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs '{mnt}'"],
                               capture_output=True, text=True)
        if probe.returncode == 0:
            return prefix
    return None


def test_resume_on_a_full_tmpfs_keeps_the_previous_checkpoint(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    prefix = namespace_prefix(mnt)
    if prefix is None:
        pytest.skip("cannot mount a small tmpfs here (needs root or unprivileged user namespaces); "
                    "test_faults.py covers disk full with an injected write failure")
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(gptx.__file__).resolve().parent.parent) + os.pathsep + env.get("PYTHONPATH", "")
    r = subprocess.run([*prefix, "sh", "-c", 'mount -t tmpfs -o size=4m tmpfs "$1" && exec "$2" -c "$3" "$1" "$4" "$5" "$6"',
                        "sh", str(mnt), sys.executable, INSIDE, json.dumps(TINY), str(tmp_path / "pristine"),
                        str(int.from_bytes(os.urandom(4), "little"))],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    failed = [res for res in out["results"] if res["code"] != 0]
    assert failed, out  # the smallest room cannot hold a second checkpoint
    for res in out["results"]:
        err = res["stderr"].strip().splitlines()
        if res["code"] == 0:  # there was room after all: a complete step-4 checkpoint
            assert res["step"] == 4, res
            continue
        assert res["code"] == 1 and len(err) == 1 and "No space left on device" in err[0], res
        assert "log.jsonl" in err[0] or "checkpoint" in err[0], res  # it says what was not written
        assert res["log_kept"] and not [f for f in res["extra"] if f.startswith(".")], res  # nothing left behind
        if res["step"] == 4:  # the checkpoint fit and what came after it did not (its pointer): it is complete
            assert "was written but" in err[0] and "--resume takes it" in err[0], res
            assert all(f.startswith("step-000004/") for f in res["extra"]), res
        else:  # the step-2 checkpoint whole and still the one --resume takes
            assert res["unchanged"] and res["step"] == 2 and not res["extra"], res
        assert res["again"] == 0 and res["final_step"] == 4, res["again_out"]
