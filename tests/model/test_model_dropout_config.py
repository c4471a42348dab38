"""GPTConfig.dropout: validated, saved with checkpoints and save_pretrained (as GPT-2's three pdrop values that
transformers reads), read from Hugging Face configs, 0 for files written before it existed."""
import json

import numpy as np
import pytest

import gptx
from gptx import _core
from gptx.model import GPT, GPTConfig

SHAPE = dict(n_layer=1, n_head=2, n_embd=16, block_size=16, vocab_size=50)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan"), float("inf")])
def test_out_of_range_is_a_clear_error(bad):
    with pytest.raises(ValueError, match=r"GPTConfig.dropout must be a number in \[0, 1\)"):
        GPTConfig(**SHAPE, dropout=bad)


@pytest.mark.parametrize("bad", ["0.1", True, None])
def test_not_a_number_is_refused_in_files(bad):
    with pytest.raises(ValueError, match="GPTConfig.dropout"):
        GPTConfig.from_dict(dict(SHAPE, dropout=bad))


def test_old_config_without_dropout_reads_as_zero():
    c = GPTConfig.from_dict(dict(SHAPE))
    assert c.dropout == 0.0 and GPTConfig.from_dict(c.to_dict()) == c
    assert GPTConfig.from_dict(dict(SHAPE, dropout=0.125)).dropout == 0.125


def hf_folder(tmp_path, **pdrops):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(n_layer=1, n_head=2, n_embd=16, n_positions=16, vocab_size=50, **pdrops)
    transformers.GPT2LMHeadModel(cfg).save_pretrained(tmp_path)
    return tmp_path


def test_hf_pdrop_values_are_kept_and_written_back(tmp_path):
    transformers = pytest.importorskip("transformers")
    src = hf_folder(tmp_path / "src", resid_pdrop=0.15, embd_pdrop=0.15, attn_pdrop=0.15)
    model = GPT.from_pretrained(src)
    assert model.config.dropout == 0.15 and not model.training
    model.save_pretrained(tmp_path / "out")
    back = transformers.GPT2Config.from_pretrained(tmp_path / "out")
    assert (back.resid_pdrop, back.embd_pdrop, back.attn_pdrop) == (0.15, 0.15, 0.15)
    assert GPT.from_pretrained(tmp_path / "out").config.dropout == 0.15
    # transformers' own default config (0.1 everywhere) is read as 0.1
    assert GPT.from_pretrained(hf_folder(tmp_path / "default")).config.dropout == pytest.approx(0.1)


def test_hf_differing_pdrops_take_the_largest_with_a_warning(tmp_path):
    src = hf_folder(tmp_path, resid_pdrop=0.1, embd_pdrop=0.0, attn_pdrop=0.2)
    with pytest.warns(UserWarning, match="differ.*reads 0.2"):
        model = GPT.from_pretrained(src)
    assert model.config.dropout == pytest.approx(0.2)


@pytest.mark.parametrize("value", [1.0, -0.5, '"0.1"'])
def test_hf_bad_pdrop_names_the_file_and_key(tmp_path, value):
    src = hf_folder(tmp_path)
    cfg = json.loads((src / "config.json").read_text())
    cfg["attn_pdrop"] = json.loads(value) if isinstance(value, str) else value
    (src / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"config.json: attn_pdrop=.* is not a dropout probability"):
        GPT.from_pretrained(src)


def test_checkpoint_keeps_dropout_and_cpp_reads_it(tmp_path):
    from gptx.data import TokenDataset
    from gptx.tokenizer import Tokenizer
    from gptx.trainer import TrainConfig, Trainer

    tok = Tokenizer.bytes()
    model = GPT(GPTConfig(**dict(SHAPE, vocab_size=tok.vocab_size), dropout=0.3), seed=0)
    data = TokenDataset(np.arange(2000) % 200)
    Trainer(model, TrainConfig(steps=1, batch_size=2, block_size=16, out_dir=str(tmp_path), progress=False,
                               log_every=0), data, tokenizer=tok).fit()
    loaded, _ = gptx.load(tmp_path)
    assert loaded.config.dropout == pytest.approx(0.3) and not loaded.training
    _, values = _core.read_config_file(str(tmp_path))  # the C++ reader of the same file
    assert values["dropout"] == pytest.approx(0.3)
    assert _core.load_model(str(tmp_path)).config.dropout == pytest.approx(0.3)  # and the C++ inference loader
