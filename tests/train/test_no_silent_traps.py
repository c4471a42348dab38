"""What a user would otherwise miss: conflicting flags, counted truncation, the plot notice, no progress-bar frames in
a redirected log, the run-time estimate, callbacks (TensorBoard), the demo's re-planned step count."""
import json
import math
import struct
import sys

import numpy as np
import pytest

from gptx import trainer as trainer_module
from gptx.__main__ import main
from gptx.data import FinetuneDataset, TokenDataset, encode_pairs, shakespeare_text, train_val_split
from gptx.model import GPT, GPTConfig
from gptx.tokenizer import Tokenizer
from gptx.trainer import TrainConfig, Trainer

SHAPE = dict(n_layer=1, n_head=2, n_embd=16, block_size=16, vocab_size=257)
TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--batch-size", "2",
        "--eval-every", "0", "--eval-batches", "1", "--threads", "1", "--no-progress"]


def data():
    tokens = Tokenizer.bytes().encode_array(shakespeare_text()[:20_000])
    train, val = train_val_split(tokens, 0.1)
    return TokenDataset(train), TokenDataset(val)


def config(**kw):
    base = dict(steps=4, batch_size=2, block_size=16, warmup=1, eval_every=2, eval_batches=1, log_every=0,
                progress=False)
    return TrainConfig(**dict(base, **kw))


def test_jsonl_and_data_together_is_an_error(tmp_path, capsys):
    pairs = tmp_path / "p.jsonl"
    pairs.write_text(json.dumps({"prompt": "a", "completion": "b"}) + "\n")
    text = tmp_path / "t.txt"
    text.write_text("hello " * 100)
    assert main(["train", *TINY, "--jsonl", str(pairs), "--data", str(text), "--out", str(tmp_path / "r")]) == 1
    assert "--jsonl and --data" in capsys.readouterr().err
    assert main(["train", *TINY, "--data", str(text), "--too-long", "skip", "--out", str(tmp_path / "r")]) == 1
    assert "--too-long applies to --jsonl" in capsys.readouterr().err
    assert main(["train", *TINY, "--schedule", "restart", "--out", str(tmp_path / "r")]) == 1
    assert "--schedule" in capsys.readouterr().err


def test_too_long_pairs_are_counted_or_refused(tmp_path, capsys):
    pairs = tmp_path / "p.jsonl"
    rows = [{"prompt": "x" * 40, "completion": " y"}, {"prompt": "short", "completion": " z"}] * 3
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["train", *TINY, "--jsonl", str(pairs), "--steps", "1", "--val-fraction", "0.2"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert "3 truncated (longer than 16 tokens)" in capsys.readouterr().out
    assert main([*args, "--out", str(tmp_path / "b"), "--too-long", "skip"]) == 0
    assert "3 skipped (longer than 16 tokens)" in capsys.readouterr().out
    assert main([*args, "--out", str(tmp_path / "c"), "--too-long", "error"]) == 1
    assert "exceed block_size" in capsys.readouterr().err
    counts = {}
    encode_pairs([("x" * 40, "y")], Tokenizer.bytes(), 16, counts=counts)
    assert counts == {"truncated": 1, "skipped": 0}


def test_no_matplotlib_gives_one_notice(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    t = Trainer(GPT(GPTConfig(**SHAPE)), config(out_dir=str(tmp_path)), *data())
    t.fit()
    t.plot()
    out = capsys.readouterr().out
    assert out.count("loss.png not drawn: matplotlib is not installed") == 1
    assert not (tmp_path / "loss.png").exists()


def test_progress_bar_only_on_a_terminal(monkeypatch, capsys):
    t = Trainer(GPT(GPTConfig(**SHAPE)), config(progress=True, log_every=1), *data())
    t.fit()  # stderr is captured here: not a terminal
    captured = capsys.readouterr()
    assert "\r" not in captured.err and "train:" not in captured.err
    assert captured.out.count("| loss ") == 4  # the plain log lines instead

    class Tty:
        def __init__(self, stream):
            self.stream = stream

        def isatty(self):
            return True

        def __getattr__(self, name):
            return getattr(self.stream, name)

    monkeypatch.setattr(sys, "stderr", Tty(sys.stderr))
    t = Trainer(GPT(GPTConfig(**SHAPE)), config(progress=True, log_every=0), *data())
    t.fit()
    assert "train" in capsys.readouterr().err  # tqdm's bar on a terminal


def test_run_time_estimate_is_printed_once(monkeypatch, capsys):
    monkeypatch.setattr(trainer_module, "ESTIMATE_MIN_S", 0.0)
    Trainer(GPT(GPTConfig(**SHAPE)), config(steps=6, eval_every=0), *data()).fit()
    out = capsys.readouterr().out
    assert out.count("s per step: the remaining 3 steps take about") == 1
    # a long first step is reported at once
    monkeypatch.setattr(trainer_module, "ESTIMATE_FIRST_STEP_S", 0.0)
    Trainer(GPT(GPTConfig(**SHAPE)), config(steps=6, eval_every=0), *data()).fit()
    out = capsys.readouterr().out
    assert out.count("the remaining 5 steps take about") == 1 and "remaining 3 steps" not in out


def test_callbacks_get_every_record(tmp_path):
    seen = []
    t = Trainer(GPT(GPTConfig(**SHAPE)), config(out_dir=str(tmp_path)), *data(), callbacks=[seen.append])
    t.fit()
    logged = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert seen == logged and any("val_loss" in r for r in seen) and any("grad_norm" in r for r in seen)
    with pytest.raises(TypeError, match="callbacks"):
        Trainer(GPT(GPTConfig(**SHAPE)), config(), *data(), callbacks=[3])


def _events(folder):
    """Scalars of TensorBoard event files, read with the record framing and the Event message tensorboardX ships."""
    from tensorboardX.proto import event_pb2

    scalars = {}
    for path in folder.rglob("events.out.tfevents.*"):
        raw = path.read_bytes()
        at = 0
        while at < len(raw):
            (length,) = struct.unpack_from("<Q", raw, at)
            ev = event_pb2.Event.FromString(raw[at + 12: at + 12 + length])
            at += 12 + length + 4
            for v in ev.summary.value:
                scalars.setdefault(v.tag, {})[ev.step] = v.simple_value
    return scalars


def test_tensorboard_callback_writes_the_log(tmp_path):
    pytest.importorskip("tensorboardX", reason="the TensorBoard writer is an optional dependency")
    from gptx.callbacks import TensorBoard

    t = Trainer(GPT(GPTConfig(**SHAPE)), config(), *data(), callbacks=[TensorBoard(tmp_path / "tb")])
    t.fit()
    s = _events(tmp_path / "tb")
    assert sorted(s["train/loss"]) == [1, 2, 3, 4] and sorted(s["val/loss"]) == [2, 4]
    assert s["val/loss"][4] == pytest.approx(t.val_loss, rel=1e-6)
    assert all(math.isfinite(v) for v in s["train/lr"].values())


def test_cli_tensorboard_flag(tmp_path):
    pytest.importorskip("tensorboardX", reason="the TensorBoard writer is an optional dependency")
    assert main(["train", *TINY, "--steps", "2", "--out", str(tmp_path / "run"), "--tensorboard"]) == 0
    assert sorted(_events(tmp_path / "run" / "tensorboard")["train/loss"]) == [1, 2]


def test_demo_replans_its_steps_from_the_real_pace(monkeypatch, capsys):
    from gptx.cli import demo

    train, val = data()
    cfg = config(steps=400, eval_every=0)
    t = Trainer(GPT(GPTConfig(**SHAPE)), cfg, train, val)
    pace = {"n": 0}
    real_step = t.train_step

    def slow_step():  # as if the machine were busy: each step costs ~10 ms whatever it really takes
        pace["n"] += 1
        import time
        time.sleep(0.01)
        return real_step()

    monkeypatch.setattr(t, "train_step", slow_step)
    summary = demo._fit_within(t, budget=1.5)
    out = capsys.readouterr().out
    assert "re-planned from the pace so far" in out
    # The schedule was shortened to the pace; the final stretch may still hit the time limit a step or two early
    # when the machine is slower still (what the limit is for).
    assert t.cfg.steps < 400 and t.cfg.steps - summary["step"] <= max(2, t.cfg.steps // 20)
    assert np.isclose(t.cfg.schedule_length, t.cfg.steps)


def test_first_ctrl_c_stops_a_long_step_within_seconds(tmp_path):
    """`gptx train` whose steps take seconds (many micro-batches): a SIGINT in the middle of a step ends the process
    promptly with the last complete step checkpointed."""
    import os
    import signal
    import subprocess
    import time
    from pathlib import Path

    import gptx
    from gptx.checkpoint import load_checkpoint

    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(gptx.__file__).resolve().parent.parent) + os.pathsep + env.get("PYTHONPATH", "")
    args = [*TINY, "--grad-accum", "10000", "--steps", "5", "--log-every", "1", "--out", str(tmp_path / "run")]
    p = subprocess.Popen([sys.executable, "-u", "-m", "gptx", "train", *args], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        for line in p.stdout:  # wait until step 1 is done: step 2 is then in flight
            lines.append(line)
            if line.startswith("step      1/5 | loss"):
                break
        time.sleep(0.5)  # well inside step 2 (a step takes seconds)
        t0 = time.perf_counter()
        p.send_signal(signal.SIGINT)
        rest, _ = p.communicate(timeout=60)
        waited = time.perf_counter() - t0
    finally:
        p.kill()
    out = "".join(lines) + rest
    assert p.returncode == 130, out
    assert "interrupted during step 2: that step is abandoned" in out
    assert load_checkpoint(tmp_path / "run").step == 1
    assert waited < 10, f"{waited:.1f} s from Ctrl-C to exit"
