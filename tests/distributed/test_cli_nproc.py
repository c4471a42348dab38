"""`gptx train --nproc 2`: only rank 0 prints and writes; the log states the global batch; the run resumes in one
process with the same global batch; an unknown launcher setup fails with a clear message."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from mpi_run import env, needs_mpi  # noqa: E402

TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--block-size", "32", "--batch-size", "3",
        "--steps", "4", "--eval-every", "2", "--eval-batches", "1", "--log-every", "1", "--no-progress"]


def gptx_cli(*args, timeout=180):
    return subprocess.run([sys.executable, "-m", "gptx", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env())


def test_train_nproc_two(tmp_path):
    needs_mpi()
    out = tmp_path / "run"
    r = gptx_cli("train", "--nproc", 2, *TINY, "--zero", 1, "--out", out)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("model: GPT(") == 1  # rank 0 alone prints
    assert "2 ranks x 3 x 32 tokens x 1 per step (global batch 6 sequences) | ZeRO-1" in r.stdout
    assert r.stdout.count("step      4/4 | loss") == 1
    state = json.loads((out / "step-000004" / "state.json").read_text())
    assert state["world_size"] == 2 and state["train_config"]["threads"] >= 1
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()
             if "loss" in json.loads(line)]
    assert steps == [1, 2, 3, 4]  # one writer: no line twice
    r = gptx_cli("train", "--resume", out, "--steps", 5, "--no-progress")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "6 x 32 tokens x 1 per step (global batch 6 sequences)" in r.stdout


def test_train_nproc_without_mpiexec(tmp_path):
    """With no launcher to be found, --nproc says how to get one."""
    r = subprocess.run([sys.executable, "-c", "import sys, gptx.distributed.launch as l; "
                        "l.find_mpiexec = lambda: None; sys.exit(l.launch(['train'], 2))"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "pip install 'gptx-engine[mpi]'" in r.stderr
