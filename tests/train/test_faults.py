"""Faults around checkpoints and the run folder end cleanly: a failed write is one line and keeps the previous
checkpoint, a save killed before latest.json moved still resumes, killed saves' leftovers are cleaned (only this
run's), the log rewrite of a resume is atomic, bad numbers and unwritable outputs are clear errors."""
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import gptx._fileio
from gptx import checkpoint as ckpt
from gptx.__main__ import main
from gptx.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint, verify_checkpoint
from gptx.data import TokenDataset
from gptx.model import GPT, GPTConfig
from gptx.trainer import TrainConfig, Trainer

SHAPE = dict(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=70)
TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--batch-size", "2",
        "--eval-every", "0", "--eval-batches", "1", "--threads", "1", "--no-progress", "--log-every", "0"]
HUGE = 2**31 - 1


def trainer(out_dir, steps=2, **kw):
    tokens = np.random.default_rng(0).integers(0, SHAPE["vocab_size"], size=2000)
    cfg = TrainConfig(steps=steps, batch_size=2, block_size=8, lr=1e-2, warmup=1, eval_every=0, log_every=0,
                      threads=1, progress=False, out_dir=str(out_dir), **kw)
    return Trainer(GPT(GPTConfig(**SHAPE), seed=0), cfg, TokenDataset(tokens, seed=1))


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def refresh_manifest(path, name):
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["files"][name] = {"sha256": ckpt._sha256(path / name), "bytes": (path / name).stat().st_size}
    (path / "manifest.json").write_text(json.dumps(manifest))


def snapshot(run):
    return {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != "log.jsonl"}


# ---- disk full while checkpointing ------------------------------------------------------------------------------
def test_disk_full_is_one_line_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch, capsys):
    from safetensors import SafetensorError

    run = tmp_path / "run"
    assert main(["train", *TINY, "--steps", "2", "--ckpt-every", "2", "--out", str(run)]) == 0
    before = snapshot(run)
    capsys.readouterr()

    def full(*a, **k):
        raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "
                              "\"No space left on device\" })")

    monkeypatch.setattr("safetensors.numpy.save_file", full)
    assert main(["train", "--resume", str(run), "--steps", "4", "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "step-000004" in err[0] and "No space left" in err[0] and "intact" in err[0], err
    assert snapshot(run) == before  # nothing new, nothing changed, no temporary folder left
    assert load_checkpoint(run).step == 2


# ---- a save killed before latest.json moved ---------------------------------------------------------------------
def test_resume_without_latest_json_takes_the_newest_complete_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *TINY, "--steps", "2", "--ckpt-every", "1", "--out", str(run)]) == 0
    (run / "latest.json").unlink()  # as if killed after the rename of the first save, before the pointer
    assert load_checkpoint(run).step == 2
    (run / "step-000002" / "model.safetensors").write_bytes(b"half")  # the newest is damaged: the older one
    assert load_checkpoint(run).step == 1
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--steps", "3", "--no-progress"]) == 0
    assert "resuming" in capsys.readouterr().out
    assert load_checkpoint(run).step == 3


def test_a_newer_complete_checkpoint_than_latest_json_is_taken(tmp_path):
    t = trainer(tmp_path, steps=2, keep_checkpoints=0)
    t.fit(until=1)
    t.save()
    pointer = (tmp_path / "latest.json").read_bytes()
    t.fit()  # step 2 saved
    (tmp_path / "latest.json").write_bytes(pointer)  # killed between the rename and the pointer move
    assert load_checkpoint(tmp_path).step == 2
    os.unlink(tmp_path / "step-000002" / "manifest.json")  # an incomplete newer folder is never taken
    assert load_checkpoint(tmp_path).step == 1


# ---- leftovers of killed saves ----------------------------------------------------------------------------------
def test_stale_temporaries_of_this_run_are_cleaned_and_nothing_else(tmp_path):
    run = tmp_path
    dead, alive = dead_pid(), os.getppid()
    stale = [f".tmp-step-000004-{dead}", f".old-step-000002-{dead}"]
    kept = [f".tmp-step-000004-{alive}", ".tmp-step-000004-x", "notes", ".tmp-mine"]
    for name in stale + kept:
        (run / name).mkdir()
        (run / name / "model.safetensors").write_bytes(b"x" * 100)
    stale_files = [f".tmp-latest.json-{dead}", f".log.jsonl.{dead}.deadbeef.tmp"]
    kept_files = ["log.jsonl.bak", f".log.jsonl.{dead}.tmp"]
    for name in stale_files + kept_files:
        (run / name).write_text("x")
    t = trainer(run, steps=1)
    t.fit()  # the save cleans
    names = {p.name for p in run.iterdir()}
    assert not names & set(stale + stale_files), names
    assert set(kept + kept_files) <= names
    # and a resume cleans too
    (run / stale[0]).mkdir()
    Trainer.resume(run, t.train_data)
    assert not (run / stale[0]).exists()


# ---- the log rewrite of a resume --------------------------------------------------------------------------------
def test_log_rewrite_is_atomic(tmp_path, monkeypatch):
    t = trainer(tmp_path, steps=2)
    t.fit()
    log = tmp_path / "log.jsonl"
    log.write_text(log.read_text() + json.dumps({"step": 3, "loss": 1.0}) + "\n")  # a step after the checkpoint
    before = log.read_bytes()
    real_open = io.open

    def killed_open(file, mode="r", *a, **k):  # a kill right after a truncating open of the log
        if isinstance(file, (str, os.PathLike)) and os.fspath(file).endswith("log.jsonl") and "w" in mode:
            real_open(file, mode, *a, **k).close()
            raise OSError("killed")
        return real_open(file, mode, *a, **k)

    def killed_fsync(fd):  # a kill while the replacement is written
        raise OSError("killed")

    monkeypatch.setattr(io, "open", killed_open)
    monkeypatch.setattr("builtins.open", killed_open)
    monkeypatch.setattr(gptx._fileio.os, "fsync", killed_fsync)
    with pytest.raises(OSError, match="killed"):
        t._truncate_log()
    monkeypatch.undo()
    assert log.read_bytes() == before  # the old log, whole
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    t._truncate_log()
    assert [json.loads(s)["step"] for s in log.read_text().splitlines()] == [1, 2]


# ---- checkpoint config bounded by its weights -------------------------------------------------------------------
def test_checkpoint_config_is_bounded_by_its_weights(tmp_path):
    path = save_checkpoint(tmp_path / "run", GPT(GPTConfig(**SHAPE)), state={"step": 1})
    for n in (HUGE, 1000):
        (path / "config.json").write_text(json.dumps(dict(SHAPE, n_layer=n)))
        refresh_manifest(path, "config.json")  # a consistent manifest: only the bound stops it
        verify_checkpoint(path)
        with pytest.raises(ValueError, match=rf"model\.safetensors: holds \d+ tensors .* too few for the {n}-layer"):
            load_checkpoint(path)
    (path / "config.json").write_text(json.dumps(dict(SHAPE, n_layer=0)))
    refresh_manifest(path, "config.json")
    with pytest.raises(ValueError, match="config.json.*n_layer"):
        load_checkpoint(path)


# ---- numbers and outputs on the command line --------------------------------------------------------------------
@pytest.mark.parametrize("flag, value", [("--warmup", "-5"), ("--steps", "-1"), ("--lr", "0"), ("--lr", "nan"),
                                         ("--min-lr", "-1e-3"), ("--weight-decay", "inf"), ("--grad-clip", "-1"),
                                         ("--eval-every", "-2"), ("--keep", "-1"), ("--threads", "0"),
                                         ("--batch-size", "0"), ("--val-fraction", "1"), ("--minutes", "-1"),
                                         ("--seed", "-3"), ("--n-layer", "0"), ("--dropout", "1"),
                                         ("--dropout", "-0.1"), ("--dropout", "nan"), ("--dropout", "half")])
def test_invalid_numbers_are_usage_errors(flag, value, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # were a value accepted, the run would go to ./runs
    with pytest.raises(SystemExit) as e:
        main(["train", f"{flag}={value}"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"argument {flag}: must be" in err, err


@pytest.mark.parametrize("field, value", [("warmup", -5), ("eval_every", -1), ("eval_batches", 0),
                                          ("weight_decay", float("nan")), ("grad_clip", -1.0), ("min_lr", -1.0),
                                          ("keep_checkpoints", -1), ("threads", 0), ("max_seconds", -1.0),
                                          ("betas", (0.9, 1.0)), ("eps", 0.0)])
def test_train_config_refuses_invalid_values(field, value):
    with pytest.raises(ValueError, match=f"TrainConfig.{field}"):
        TrainConfig(**{field: value})


def test_bench_json_to_an_unwritable_path_fails(tmp_path, capsys):
    target = tmp_path / "no-such-folder" / "out.json"
    assert main(["bench", "--json", str(target), "--list"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--json" in err[0] and "cannot write" in err[0], err
    assert not target.parent.exists()


def test_bench_that_leaves_the_json_unwritten_fails(tmp_path, capsys):
    fake = tmp_path / "fake-bench"  # exits 0 without writing, as gptx-bench does when its JSON write fails
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    out = tmp_path / "out.json"
    assert main(["bench", "--bench-path", str(fake), "--json", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "were not written" in err[0], err
    out.write_text("{}")  # an old file that is left as it was is not a result either
    assert main(["bench", "--bench-path", str(fake), "--json", str(out)]) == 1
