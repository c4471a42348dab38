"""SIGKILL `gptx train` at random moments (mostly while it checkpoints: it saves after every step; and in the first
seconds of a `--resume`, while it loads the checkpoint, cleans killed saves' leftovers and rewrites the log): each
--resume starts from the newest complete checkpoint, no partial one is ever taken, the log survives, and the final
weights, moments and logged losses equal an uninterrupted run's, bit for bit."""
import json
import os
import shutil
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
RESUME_KILLS = 8
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


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run: (its folder, the seconds of one step and its checkpoint)."""
    cwd = tmp_path_factory.mktemp("reference")
    ref = start([*TINY, "--steps", str(STEPS), "--out", "ref"], cwd)
    out, _ = ref.communicate(timeout=120)
    assert ref.returncode == 0, out
    records = [json.loads(s) for s in (cwd / "ref" / "log.jsonl").read_text().splitlines()]
    elapsed = [r["elapsed_s"] for r in records if "elapsed_s" in r]
    return cwd / "ref", (elapsed[-1] - elapsed[0]) / (len(elapsed) - 1)


def same_run(run: Path, ref: Path) -> None:
    a, b = load_checkpoint(run), load_checkpoint(ref)
    assert a.step == b.step == STEPS
    for name in b.model:
        assert np.array_equal(a.model[name], b.model[name]), name
        assert np.array_equal(a.optimizer["m"][name], b.optimizer["m"][name]), name
        assert np.array_equal(a.optimizer["v"][name], b.optimizer["v"][name]), name
    assert train_records(run) == train_records(ref)  # the log survived every kill
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]  # no leftovers after the last save


def test_kills_during_checkpointing_resume_exactly(tmp_path, reference):
    ref, step_s = reference

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
    same_run(run, ref)


def killed_before_step_6(tmp_path) -> Path:
    """A run as a kill while it saved step 6 leaves it: newest checkpoint step 3 (latest.json names it), steps 4 and 5
    logged, the half-written step 6 in a temporary folder of the dead process."""
    tmp_path.mkdir()
    run = tmp_path / "run"
    p = start([*TINY, "--ckpt-every", "3", "--keep", "0", "--steps", "6", "--out", str(run)], tmp_path)
    out, _ = p.communicate(timeout=120)
    assert p.returncode == 0, out
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    partial = run / f".tmp-step-000006-{dead.pid}"
    (run / "step-000006").rename(partial)
    (partial / "model.safetensors").write_bytes((partial / "model.safetensors").read_bytes()[:100])
    (run / "latest.json").write_text(json.dumps({"checkpoint": "step-000003"}))
    lines = (run / "log.jsonl").read_text().splitlines()
    (run / "log.jsonl").write_text("".join(s + "\n" for s in lines if json.loads(s).get("step", 0) <= 5))
    return run


def test_kills_while_a_resume_starts_keep_the_run(tmp_path, reference):
    ref, _ = reference
    pristine = killed_before_step_6(tmp_path / "pristine")
    run = tmp_path / "run"
    shutil.copytree(pristine, run)
    resume = ["--resume", str(run), "--steps", str(STEPS), "--no-progress"]
    log = run / "log.jsonl"

    # When a resume rewrites the log (after loading the checkpoint and cleaning the leftovers), and when it logs its
    # first new step: the kills below land at random moments before that, half of them close to the rewrite.
    t0, inode = time.perf_counter(), log.stat().st_ino  # the rewrite replaces the file: a new inode
    p = start(resume, tmp_path)
    rewrite = None
    while p.poll() is None and time.perf_counter() - t0 < 60 and (rewrite is None or logged_steps(run) <= 3):
        if rewrite is None and log.stat().st_ino != inode:
            rewrite = time.perf_counter() - t0
        time.sleep(0.001)
    startup = time.perf_counter() - t0
    p.send_signal(signal.SIGKILL)
    p.communicate(timeout=60)
    assert rewrite is not None

    rng = np.random.default_rng(int.from_bytes(os.urandom(4), "little"))
    moments = []
    for i in range(RESUME_KILLS):
        if newest_complete(run).name != "step-000003":  # the last kill came after the start-up: begin again
            shutil.rmtree(run)
            shutil.copytree(pristine, run)
        before = train_records(run)
        moments.append(float(rng.uniform(0.0, startup) if i % 2 else rng.uniform(max(0.0, rewrite - 0.2), rewrite)))
        p = start(resume, tmp_path)
        time.sleep(moments[-1])
        p.send_signal(signal.SIGKILL)
        out, _ = p.communicate(timeout=60)
        now = newest_complete(run)
        assert now is not None and now.name >= "step-000003", (moments, out)
        assert load_checkpoint(run).path == now, (moments, out)  # what --resume takes: the newest that verifies
        records, step = train_records(run), load_checkpoint(run).step
        # the log keeps every step up to the checkpoint (whatever the kill interrupted), and nothing is invented
        assert [r for r in records if r[0] <= step] == [r for r in train_records(ref) if r[0] <= step], moments
        assert set(records) <= set(before) | set(train_records(ref)), moments
    p = start(resume, tmp_path)
    out, _ = p.communicate(timeout=120)
    assert p.returncode == 0, (moments, out)
    same_run(run, ref)
