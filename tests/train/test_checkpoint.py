"""Checkpoints: exact round trip, every kind of damage is a ValueError naming the file, writes are atomic."""
import json

import numpy as np
import pytest

from gptx import checkpoint as ckpt
from gptx.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint, verify_checkpoint
from gptx.model import GPT, GPTConfig
from gptx.optim import AdamW
from gptx.tokenizer import Tokenizer

CONFIG = dict(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=70)


def trained(seed=0, steps=2):
    model = GPT(GPTConfig(**CONFIG), seed=seed)
    opt = AdamW(model.named_parameters(), model.grads, lr=1e-2)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        x = rng.integers(0, CONFIG["vocab_size"], size=(2, 8))
        model.zero_grad()
        model.forward(x, np.roll(x, -1, axis=1))
        model.backward()
        opt.step()
    return model, opt


@pytest.fixture
def saved(tmp_path):
    model, opt = trained()
    rng = np.random.default_rng(5)
    rng.random(3)
    state = {"step": 2, "rng": rng.bit_generator.state, "note": np.int64(7)}
    path = save_checkpoint(tmp_path / "run", model, opt, state=state, tokenizer=Tokenizer.bytes())
    return path, model, opt, rng


def test_round_trip_is_exact(saved):
    path, model, opt, rng = saved
    assert path.name == "step-000002" and (path.parent / "latest.json").is_file()
    for where in (path, path.parent):  # the step folder or the run folder (via latest.json)
        ck = load_checkpoint(where)
        assert ck.path == path and ck.step == 2 and ck.state["note"] == 7
        assert ck.config == model.config.to_dict()
        for name, p in model.named_parameters():
            assert np.array_equal(ck.model[name], p), name
            assert np.array_equal(ck.optimizer["m"][name], opt.m[name]), name
            assert np.array_equal(ck.optimizer["v"][name], opt.v[name]), name
        assert ck.optimizer["step"] == 2
    restored = np.random.default_rng()
    restored.bit_generator.state = load_checkpoint(path).state["rng"]
    assert np.array_equal(restored.random(4), rng.random(4))  # the stream continues where it was saved
    assert Tokenizer.load(load_checkpoint(path).tokenizer_dir).name == "bytes"
    manifest = json.loads((path / "manifest.json").read_text())
    assert set(manifest["files"]) >= {"model.safetensors", "optimizer.safetensors", "config.json", "state.json"}


def test_model_safetensors_has_hf_names(saved):
    from safetensors.numpy import load_file

    path, model, _, _ = saved
    tensors = load_file(str(path / "model.safetensors"))
    assert set(tensors) == {n for n, _ in model.named_parameters()}
    assert tensors["transformer.wte.weight"].shape == (CONFIG["vocab_size"], CONFIG["n_embd"])


def _damage_truncate(p):
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


def _damage_flip(p):
    data = bytearray(p.read_bytes())
    data[len(data) - 3] ^= 0x01
    p.write_bytes(bytes(data))


def _damage_delete(p):
    p.unlink()


@pytest.mark.parametrize("damage", [_damage_truncate, _damage_flip, _damage_delete], ids=["truncated", "flipped",
                                                                                         "missing"])
@pytest.mark.parametrize("name", ["model.safetensors", "optimizer.safetensors", "state.json", "config.json",
                                  "tokenizer/gptx_tokenizer.json"])
def test_damaged_file_is_a_clear_error(saved, damage, name):
    path = saved[0]
    damage(path / name)
    with pytest.raises(ValueError, match=name.split("/")[-1]):
        load_checkpoint(path)
    with pytest.raises(ValueError, match=name.split("/")[-1]):
        load_checkpoint(path.parent)


def test_bad_json_is_a_clear_error(saved):
    path = saved[0]
    # a state.json that is not JSON, with the manifest updated to match: the parse itself must fail cleanly
    (path / "state.json").write_text("{not json")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["files"]["state.json"] = {"sha256": ckpt._sha256(path / "state.json"),
                                       "bytes": (path / "state.json").stat().st_size}
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="state.json.*not valid JSON"):
        load_checkpoint(path)
    (path / "manifest.json").write_text("[1, 2")
    with pytest.raises(ValueError, match="manifest.json"):
        load_checkpoint(path)
    (path / "manifest.json").unlink()
    with pytest.raises(ValueError, match="manifest.json"):
        load_checkpoint(path.parent)  # latest.json points to a folder without a manifest
    (path.parent / "latest.json").write_text("nope")
    with pytest.raises(ValueError, match="latest.json"):
        load_checkpoint(path.parent)


def test_safetensors_header_garbage_with_matching_manifest(saved):
    path = saved[0]
    f = path / "model.safetensors"
    f.write_bytes(b"\xff" * 64)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["files"]["model.safetensors"] = {"sha256": ckpt._sha256(f), "bytes": 64}
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="model.safetensors"):
        load_checkpoint(path)


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_checkpoint(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="no gptx checkpoint"):
        load_checkpoint(tmp_path)


def test_failed_save_leaves_previous_checkpoint(saved, monkeypatch):
    path, model, opt, _ = saved
    run = path.parent
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    model2, opt2 = trained(seed=1, steps=3)

    real_save = ckpt._save_tensors
    calls = []

    def failing(p, tensors):
        calls.append(p)
        if len(calls) == 2:  # model.safetensors written, optimizer.safetensors dies half way
            p.write_bytes(b"partial")
            raise OSError("disk full")
        real_save(p, tensors)

    monkeypatch.setattr(ckpt, "_save_tensors", failing)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(run, model2, opt2, state={"step": 3})
    after = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert after == before  # nothing new, nothing changed, no temporary folder left
    assert [p.name for p in list_checkpoints(run)] == ["step-000002"]
    verify_checkpoint(run)
    ck = load_checkpoint(run)
    assert ck.step == 2
    for name, p in model.named_parameters():
        assert np.array_equal(ck.model[name], p)


def test_keep_prunes_old_checkpoints(tmp_path):
    model, opt = trained(steps=1)
    for step in (1, 2, 3, 4):
        save_checkpoint(tmp_path, model, opt, state={"step": step}, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-000003", "step-000004"]
    save_checkpoint(tmp_path, model, opt, state={"step": 4}, keep=0)  # same step again: replaced in place
    assert load_checkpoint(tmp_path).step == 4
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
