"""Trainer: a short real run on Shakespeare learns, logs parse, evaluation is repeatable, limits and errors hold."""
import collections
import dataclasses
import json
import math

import numpy as np
import pytest

from gptx.data import FinetuneDataset, TokenDataset, encode_pairs, shakespeare_text, train_val_split
from gptx.model import GPT, GPTConfig
from gptx.tokenizer import Tokenizer
from gptx.trainer import TrainConfig, Trainer

SHAPE = dict(n_layer=1, n_head=2, n_embd=32, block_size=32, vocab_size=256)


def shakespeare(n_chars=200_000):
    tokens = Tokenizer.bytes().encode_array(shakespeare_text()[:n_chars])
    train, val = train_val_split(tokens, 0.1)
    return TokenDataset(train), TokenDataset(val)


def test_short_run_learns_and_logs(tmp_path, capsys):
    cfg = TrainConfig(steps=60, batch_size=8, block_size=32, lr=1e-2, min_lr=1e-3, warmup=5, eval_every=20,
                      eval_batches=4, out_dir=str(tmp_path), log_every=20, threads=2, progress=True)
    trainer = Trainer(GPT(GPTConfig(**SHAPE)), cfg, *shakespeare(), tokenizer=Tokenizer.bytes())
    v0 = trainer.evaluate()
    assert v0 == pytest.approx(math.log(256), abs=0.1)  # untrained: ~uniform over 256 bytes
    summary = trainer.fit()
    assert summary["step"] == 60 and not summary["timed_out"]
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    train = [r for r in records if "loss" in r]
    val = [r for r in records if "val_loss" in r]
    assert [r["step"] for r in train] == list(range(1, 61))
    assert [r["step"] for r in val] == [20, 40, 60]
    for r in train:
        assert set(r) >= {"step", "loss", "lr", "grad_norm", "tokens_per_s"} and math.isfinite(r["loss"])
    first = np.mean([r["loss"] for r in train[:3]])
    last = np.mean([r["loss"] for r in train[-5:]])
    assert last < first - 0.5, (first, last)
    assert val[-1]["val_loss"] < v0 - 0.5
    assert train[4]["lr"] == pytest.approx(1e-2)  # end of warmup
    assert train[-1]["lr"] < 2e-3                 # end of the cosine
    out = capsys.readouterr().out
    assert "step     20/60 | loss" in out and "val loss" in out and "checkpoint" in out
    assert (tmp_path / "latest.json").is_file()
    try:
        import matplotlib  # noqa: F401
        assert (tmp_path / "loss.png").is_file()
    except ImportError:
        assert not (tmp_path / "loss.png").exists()


def test_evaluate_is_repeatable_and_leaves_training_alone():
    trainer = Trainer(GPT(GPTConfig(**SHAPE)), TrainConfig(steps=2, batch_size=4, block_size=32, eval_batches=3,
                                                             progress=False, log_every=0), *shakespeare(20_000))
    state = trainer.rng.bit_generator.state
    val_state = trainer.val_data.state_dict()
    a, b = trainer.evaluate(), trainer.evaluate()
    assert a == b
    assert trainer.rng.bit_generator.state == state and trainer.val_data.state_dict() == val_state


def test_time_limit_stops_and_checkpoints(tmp_path):
    cfg = TrainConfig(steps=10_000, batch_size=2, block_size=16, out_dir=str(tmp_path), max_seconds=0.0,
                      progress=False, log_every=0)
    summary = Trainer(GPT(GPTConfig(**SHAPE)), cfg, *shakespeare(20_000)).fit()
    assert summary["timed_out"] and summary["step"] == 1
    assert (tmp_path / "step-000001").is_dir()


@pytest.mark.parametrize("grad_accum", [1, 3])
def test_ctrl_c_abandons_the_step_in_flight_then_saves(tmp_path, grad_accum):
    """The first Ctrl-C during a step's forward/backward gives that step up at once (between two native calls, not
    after the step) and checkpoints the last complete step; resuming from it is bit for bit the uninterrupted run."""
    import os
    import signal

    train, val = shakespeare(20_000)

    class Interrupting:
        calls = 0

        def get_batch(self, *args):
            Interrupting.calls += 1
            if Interrupting.calls == 2 * grad_accum + min(grad_accum, 2):
                os.kill(os.getpid(), signal.SIGINT)  # in step 3 (with 3 micro-batches: in its second one)
            return train.get_batch(*args)

        def state_dict(self):
            return train.state_dict()

        def load_state_dict(self, st):
            train.load_state_dict(st)

    before = signal.getsignal(signal.SIGINT)
    cfg = TrainConfig(steps=4, batch_size=2, block_size=16, grad_accum=grad_accum, out_dir=str(tmp_path / "cut"),
                      progress=False, log_every=0, eval_every=0, warmup=1)
    summary = Trainer(GPT(GPTConfig(**SHAPE), seed=1), cfg, Interrupting(), val).fit()
    assert summary["interrupted"] and summary["step"] == 2
    assert (tmp_path / "cut" / "step-000002").is_dir() and not (tmp_path / "cut" / "step-000003").exists()
    assert signal.getsignal(signal.SIGINT) is before

    fresh_train, fresh_val = shakespeare(20_000)
    resumed = Trainer.resume(tmp_path / "cut", fresh_train, fresh_val)
    resumed.fit()
    t2, v2 = shakespeare(20_000)
    straight = Trainer(GPT(GPTConfig(**SHAPE), seed=1), dataclasses.replace(cfg, out_dir=None), t2, v2)
    straight.fit()
    for name, p in straight.model.named_parameters():
        assert np.array_equal(np.asarray(p), np.asarray(dict(resumed.model.named_parameters())[name])), name


def test_finetune_pairs_train():
    tok = Tokenizer.bytes()
    pairs = [("Q: what is two plus two?\nA:", " four"), ("Q: colour of the sky?\nA:", " blue")] * 4
    examples = encode_pairs(pairs, tok, block_size=32)
    cfg = TrainConfig(steps=30, batch_size=4, block_size=32, lr=1e-2, warmup=2, progress=False, log_every=0,
                      eval_every=0)
    model = GPT(GPTConfig(**dict(SHAPE, vocab_size=tok.vocab_size)))  # 257: the byte tokenizer's end-of-text
    trainer = Trainer(model, cfg, FinetuneDataset(examples), FinetuneDataset(examples))
    before = trainer.evaluate()
    trainer.fit()
    assert trainer.val_loss < before - 1.0
    x, y = FinetuneDataset(examples).get_batch(2, 32, np.random.default_rng(0))
    assert (y == -100).any() and (y != -100).any()


def test_a_step_is_one_optimizer_call_and_one_read(monkeypatch):
    """The update is one native AdamW call over the flat buffers, clipped by a norm that stays on the device; the
    micro-batch losses and the norm are read back once, after the update."""
    from gptx import _host, ops, trainer as trainer_module

    calls = collections.Counter()

    def counting(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapper

    for name in ("adamw_step", "global_norm"):
        monkeypatch.setattr(ops, name, counting(name, getattr(ops, name)))
    monkeypatch.setattr(trainer_module, "host_copy", counting("read", _host.host_copy))
    cfg = TrainConfig(steps=2, batch_size=2, block_size=16, grad_accum=3, progress=False, log_every=0)
    trainer = Trainer(GPT(GPTConfig(**SHAPE)), cfg, *shakespeare(20_000))
    rec = trainer.train_step()
    assert calls == {"adamw_step": 1, "global_norm": 1, "read": 1}
    assert math.isfinite(rec["loss"]) and rec["grad_norm"] > 0 and 0 < rec["clip"] <= 1


def test_a_micro_batch_without_counted_targets_stops_before_the_update():
    train, val = shakespeare(20_000)

    class AllIgnored:
        def get_batch(self, *args):
            x, y = train.get_batch(*args)
            return x, np.full_like(y, -100)

    model = GPT(GPTConfig(**SHAPE))
    before = model.state_dict()
    trainer = Trainer(model, TrainConfig(steps=2, batch_size=2, block_size=16, progress=False, log_every=0),
                      AllIgnored(), val)
    with pytest.raises(FloatingPointError, match="every target ignored"):
        trainer.train_step()
    for name, a in model.state_dict().items():
        np.testing.assert_array_equal(a, before[name], err_msg=name)
    assert trainer.opt.step_count == 0 and trainer.step == 0


def test_config_checks_and_divergence(tmp_path):
    with pytest.raises(ValueError, match="block_size"):
        Trainer(GPT(GPTConfig(**SHAPE)), TrainConfig(block_size=64), *shakespeare(20_000))
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(lr=0.0)
    cfg = TrainConfig(**dict(TrainConfig().to_dict(), steps=5))
    assert cfg.betas == (0.9, 0.95) and TrainConfig.from_dict(cfg.to_dict()) == cfg
    model = GPT(GPTConfig(**SHAPE))
    model.load_state_dict({n: np.full_like(p, np.nan) if n.endswith("ln_f.weight") else p
                           for n, p in model.state_dict().items()})
    before = model.state_dict()
    trainer = Trainer(model, TrainConfig(steps=3, batch_size=2, block_size=16, progress=False, log_every=0),
                      *shakespeare(20_000))
    with pytest.raises(FloatingPointError, match="step 1"):
        trainer.fit()
    # the diverged update was skipped: parameters (NaN where they were) and moments untouched, no step counted
    for name, a in model.state_dict().items():
        np.testing.assert_array_equal(a, before[name], err_msg=name)
    assert trainer.step == 0 and trainer.opt.step_count == 0
    assert not any(np.asarray(m).any() for m in trainer.opt.m.values())
