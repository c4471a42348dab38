"""Resume is exact: N steps, checkpoint, resume, N more == 2N steps straight, bit for bit (parameters and moments)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gptx
from gptx.checkpoint import load_checkpoint
from gptx.data import TokenDataset, shakespeare_text, train_val_split
from gptx.model import GPT, GPTConfig
from gptx.tokenizer import Tokenizer
from gptx.trainer import TrainConfig, Trainer

SHAPE = dict(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=256)
N = 4


def datasets():
    tokens = Tokenizer.bytes().encode_array(shakespeare_text()[:60_000])
    train, val = train_val_split(tokens, 0.1)
    return TokenDataset(train, seed=3), TokenDataset(val, seed=3)


def config(out_dir, **kw):
    # threads fixed: a kernel's reduction order may depend on the thread count, bitwise equality needs the same one
    base = dict(steps=2 * N, batch_size=4, block_size=16, grad_accum=1, lr=3e-3, min_lr=3e-4, warmup=2,
                grad_clip=0.5, eval_every=3, eval_batches=2, out_dir=str(out_dir), seed=11, log_every=0, threads=2,
                progress=False)
    base.update(kw)
    return TrainConfig(**base)


def assert_same_state(a: Trainer, b: Trainer):
    assert a.step == b.step
    pa, pb = dict(a.model.named_parameters()), dict(b.model.named_parameters())
    for name in pa:
        assert np.array_equal(pa[name], pb[name]), f"parameter {name} differs"
        assert np.array_equal(a.opt.m[name], b.opt.m[name]), f"first moment of {name} differs"
        assert np.array_equal(a.opt.v[name], b.opt.v[name]), f"second moment of {name} differs"
    assert a.opt.step_count == b.opt.step_count
    assert a.rng.bit_generator.state == b.rng.bit_generator.state


def train_losses(out_dir):
    lines = [json.loads(s) for s in (Path(out_dir) / "log.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"], r["lr"], r["grad_norm"]) for r in lines if "loss" in r]


@pytest.mark.parametrize("grad_accum", [1, 2])
def test_resume_is_bitwise(tmp_path, grad_accum):
    straight = Trainer(GPT(GPTConfig(**SHAPE), seed=5), config(tmp_path / "a", grad_accum=grad_accum), *datasets())
    straight.fit()

    first = Trainer(GPT(GPTConfig(**SHAPE), seed=5), config(tmp_path / "b", grad_accum=grad_accum), *datasets())
    first.fit(until=N)
    assert first.step == N and load_checkpoint(tmp_path / "b").step == N
    del first
    resumed = Trainer.resume(tmp_path / "b", *datasets())  # fresh model, optimizer and data: all from disk
    assert resumed.step == N and resumed.cfg.out_dir == str(tmp_path / "b")
    resumed.fit()
    assert_same_state(straight, resumed)
    assert train_losses(tmp_path / "a") == train_losses(tmp_path / "b")  # every logged step, in order, once
    assert straight.val_loss == resumed.val_loss


def test_resume_from_an_earlier_checkpoint(tmp_path):
    """A run that went on past its checkpoint (e.g. crashed later) resumes from that checkpoint exactly, and its log
    forgets the steps it redoes."""
    straight = Trainer(GPT(GPTConfig(**SHAPE), seed=5), config(tmp_path / "a", ckpt_every=3, keep_checkpoints=0),
                       *datasets())
    straight.fit()
    ck3 = tmp_path / "a" / "step-000003"
    assert ck3.is_dir()
    other = Trainer(GPT(GPTConfig(**SHAPE), seed=5), config(tmp_path / "c"), *datasets())
    other.fit()  # the same run to the end, then resumed from its step-3 state copied in: redo steps 4..8
    resumed = Trainer.resume(ck3, *datasets(), out_dir=str(tmp_path / "c"))
    assert resumed.step == 3
    assert max(s for s, *_ in train_losses(tmp_path / "c")) == 3  # steps 4..8 dropped from the log
    resumed.fit()
    assert_same_state(straight, resumed)
    assert train_losses(tmp_path / "a") == train_losses(tmp_path / "c")


def test_extending_a_finished_run_with_a_stretched_schedule(tmp_path):
    """`steps` is the total: a finished N-step run extended to 2N with its schedule stretched to 2N (a warm restart)
    equals a 2N run when warmup covers the first N (the cosine decay depends on the total, the warmup does not)."""
    straight = Trainer(GPT(GPTConfig(**SHAPE), seed=5), config(tmp_path / "a", warmup=N), *datasets())
    straight.fit()
    short = Trainer(GPT(GPTConfig(**SHAPE), seed=5), config(tmp_path / "b", warmup=N, steps=N), *datasets())
    short.fit()
    resumed = Trainer.resume(tmp_path / "b", *datasets(), steps=2 * N, schedule_steps=2 * N)
    resumed.fit()
    assert_same_state(straight, resumed)


def test_extending_a_finished_run_keeps_its_schedule_by_default(tmp_path):
    """Without schedule_steps the added steps run at the final learning rate of the original schedule."""
    short = Trainer(GPT(GPTConfig(**SHAPE), seed=5), config(tmp_path / "b", warmup=1, steps=N), *datasets())
    short.fit()
    resumed = Trainer.resume(tmp_path / "b", *datasets(), steps=2 * N)
    assert resumed.cfg.schedule_length == N
    resumed.fit()
    records = [json.loads(line) for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    lrs = {r["step"]: r["lr"] for r in records if "lr" in r}
    assert sorted(lrs) == list(range(1, 2 * N + 1))
    assert all(lrs[s] == resumed.cfg.final_lr for s in range(N + 1, 2 * N + 1))
    assert lrs[1] > lrs[N]  # the first N steps followed the original warmup + cosine


def test_resume_rejects_a_different_model(tmp_path):
    t = Trainer(GPT(GPTConfig(**SHAPE)), config(tmp_path / "a", steps=1), *datasets())
    t.fit()
    other = Trainer(GPT(GPTConfig(**dict(SHAPE, n_embd=16))), config(tmp_path / "b"), *datasets())
    with pytest.raises(ValueError, match="different model config"):
        other.restore(tmp_path / "a")


def _cli(*args, cwd):
    env = dict(os.environ)
    pkg_root = str(Path(gptx.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = pkg_root + os.pathsep + env.get("PYTHONPATH", "")
    r = subprocess.run([sys.executable, "-m", "gptx", "train", *args], cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_cli_resume_is_bitwise(tmp_path):
    """A 4-step run resumed to 8 with the schedule stretched (warmup covers the first 4 steps) is bit for bit the
    8-step run."""
    tiny = ["--preset", "shakespeare", "--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--block-size", "32",
            "--batch-size", "4", "--warmup", "4", "--eval-every", "3", "--eval-batches", "1", "--threads", "2",
            "--seed", "3", "--no-progress"]
    _cli(*tiny, "--steps", "4", "--out", "half", cwd=tmp_path)
    out = _cli("--resume", "half", "--steps", "8", "--schedule", "restart", cwd=tmp_path)
    assert "resuming" in out and "step 8" in out and "stretched to 8 steps" in out
    _cli(*tiny, "--steps", "8", "--out", "full", cwd=tmp_path)
    a, b = load_checkpoint(tmp_path / "half"), load_checkpoint(tmp_path / "full")
    assert a.step == b.step == 8
    for name in b.model:
        assert np.array_equal(a.model[name], b.model[name]), name
        assert np.array_equal(a.optimizer["m"][name], b.optimizer["m"][name]), name
        assert np.array_equal(a.optimizer["v"][name], b.optimizer["v"][name]), name
    assert a.state["rng"] == b.state["rng"]
    assert train_losses(tmp_path / "half") == train_losses(tmp_path / "full")


def test_cli_resume_says_which_schedule_it_keeps(tmp_path):
    tiny = ["--preset", "shakespeare", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16",
            "--batch-size", "2", "--warmup", "1", "--eval-every", "0", "--eval-batches", "1", "--threads", "1",
            "--no-progress"]
    _cli(*tiny, "--steps", "2", "--out", "run", cwd=tmp_path)
    out = _cli("--resume", "run", "--steps", "4", cwd=tmp_path)
    assert "steps 3-4 run at the final learning rate" in out and "--schedule restart" in out
