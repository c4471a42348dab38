"""SIGKILL `gptx train` at random moments (mostly while it checkpoints: it saves after every step): each --resume
starts from the newest complete checkpoint, no partial one is ever taken, the log survives, and the final weights,
moments and logged losses equal an uninterrupted run's, bit for bit."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import gptx
from gptx.checkpoint import list_checkpoints, load_checkpoint, verify_checkpoint

STEPS = 12
KILLS = 8
TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--batch-size", "2",
        "--eval-every", "0", "--eval-batches", "1", "--threads", "1", "--seed", "3", "--no-progress",
        "--log-every", "0", "--ckpt-every", "1", "--keep", "2"]


def start(args, cwd):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(gptx.__file__).resolve().parent.parent) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.Popen([sys.executable, "-m", "gptx", "train", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def newest_complete(run: Path):
    for folder in reversed(list_checkpoints(run)):
        try:
            verify_checkpoint(folder)
            return folder
        except ValueError:
            continue
    return None


def command(run: Path):
    if newest_complete(run) is None:  # killed before the first checkpoint: start again
        return [*TINY, "--steps", str(STEPS), "--out", str(run), "--overwrite"]
    return ["--resume", str(run), "--steps", str(STEPS), "--no-progress"]


def train_records(run: Path):
    recs = [json.loads(s) for s in (run / "log.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in recs if "loss" in r]


def logged_steps(run: Path) -> int:
    try:
        return (run / "log.jsonl").read_bytes().count(b"\n")
    except OSError:
        return 0


def test_kills_during_checkpointing_resume_exactly(tmp_path):
    ref = start([*TINY, "--steps", str(STEPS), "--out", "ref"], tmp_path)
    out, _ = ref.communicate(timeout=120)
    assert ref.returncode == 0, out
    records = [json.loads(s) for s in (tmp_path / "ref" / "log.jsonl").read_text().splitlines()]
    elapsed = [r["elapsed_s"] for r in records if "elapsed_s" in r]
    step_s = (elapsed[-1] - elapsed[0]) / (len(elapsed) - 1)  # one step and its checkpoint

    run = tmp_path / "run"
    rng = np.random.default_rng(12)
    for _ in range(KILLS):
        p = start(command(run), tmp_path)
        # Once the process logs a step it is in the loop, saving after every step: a kill within the next two steps'
        # time lands in a save most of the time (or in a step, or at the log rewrite of a resume).
        seen = logged_steps(run)
        deadline = time.perf_counter() + 60
        while logged_steps(run) <= seen and p.poll() is None and time.perf_counter() < deadline:
            time.sleep(0.002)
        time.sleep(float(rng.uniform(0.0, 2.0)) * step_s)
        p.send_signal(signal.SIGKILL)
        out, _ = p.communicate(timeout=60)
        expected = newest_complete(run)
        if expected is not None:  # what --resume will take: the newest folder that verifies
            assert load_checkpoint(run).path == expected, out
    p = start(command(run), tmp_path)
    out, _ = p.communicate(timeout=120)
    assert p.returncode == 0, out

    a, b = load_checkpoint(run), load_checkpoint(tmp_path / "ref")
    assert a.step == b.step == STEPS
    for name in b.model:
        assert np.array_equal(a.model[name], b.model[name]), name
        assert np.array_equal(a.optimizer["m"][name], b.optimizer["m"][name]), name
        assert np.array_equal(a.optimizer["v"][name], b.optimizer["v"][name]), name
    assert train_records(run) == train_records(tmp_path / "ref")  # the log survived every kill
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]  # no leftovers after the last save
