"""GPT.from_pretrained refuses a config.json that describes more model than its weight files hold, before anything
is sized from it (a few hundred bytes could otherwise ask for terabytes). Checkpoints: tests/train/test_faults.py."""
import json

import pytest

import gptx.hf_io
from gptx.model import GPT, GPTConfig

SHAPE = dict(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=70)
HUGE = 2**31 - 1  # passes every GPTConfig rule at this width; its parameter table alone would be ~10^11 bytes


def set_n_layer(config_file, n):
    cfg = json.loads(config_file.read_text())
    cfg["n_layer"] = n
    config_file.write_text(json.dumps(cfg))


def test_from_pretrained_huge_n_layer(tmp_path, monkeypatch):
    d = tmp_path / "hf"
    GPT(GPTConfig(**SHAPE)).save_pretrained(d)
    for n in (HUGE, 1000):
        set_n_layer(d / "config.json", n)
        with monkeypatch.context() as mp:
            def refuse(*a, **k):
                raise AssertionError("sized from the config before bounding it by the weights")
            mp.setattr(gptx.hf_io, "parameter_shapes", refuse)
            with pytest.raises(ValueError, match=rf"model\.safetensors: holds \d+ tensors .* too few for the {n}-lay"):
                GPT.from_pretrained(d)
    set_n_layer(d / "config.json", 1)
    assert GPT.from_pretrained(d).config.n_layer == 1
