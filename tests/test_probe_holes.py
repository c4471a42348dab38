"""Holes the bad-argument probe (tests/probe_cli.py) found: each once accepted an invalid value silently, ran for
ever, or ended in a traceback; each is now a clear error naming the argument (or a one-line CLI error)."""
import math

import numpy as np
import pytest

import gptx
from gptx import data, ops
from gptx.__main__ import main


@pytest.mark.parametrize("scale", [float("nan"), float("inf"), -float("inf")])
def test_softmax_scale_must_be_finite(scale):
    x = np.random.default_rng(0).standard_normal((2, 5)).astype(np.float32)
    with pytest.raises(ValueError, match="softmax_forward: argument 'scale' must be a finite number"):
        ops.softmax_forward(x, scale=scale)
    out = ops.softmax_forward(x)
    with pytest.raises(ValueError, match="softmax_backward: argument 'scale' must be a finite number"):
        ops.softmax_backward(x, out, scale=scale)
    neg = np.asarray(ops.softmax_forward(x, scale=-1.0))  # a negative scale is a valid reversal
    np.testing.assert_allclose(neg, np.asarray(ops.softmax_forward(-x)), rtol=1e-6)


@pytest.mark.parametrize("field, value", [("lr", -1.0), ("lr", math.nan), ("lr", math.inf), ("eps", 0.0),
                                          ("eps", math.nan), ("weight_decay", -0.1), ("weight_decay", math.inf)])
def test_adamw_hyperparameters_are_checked(field, value):
    model = gptx.GPT(gptx.GPTConfig(n_layer=1, n_head=1, n_embd=8, block_size=4, vocab_size=16))
    with pytest.raises(ValueError, match=f"AdamW: {field} must be a finite number"):
        gptx.AdamW(model.named_parameters(), model.grads, **{field: value})
    with pytest.raises(ValueError, match="AdamW: named_params is empty"):
        gptx.AdamW([], model.grads)


@pytest.mark.parametrize("kw, name", [({"step": -1}, "step"), ({"step": 1.5}, "step"), ({"max_steps": -1}, "max_steps"),
                                      ({"warmup_steps": math.nan}, "warmup_steps"), ({"lr": math.nan}, "lr"),
                                      ({"min_lr": -1.0}, "min_lr")])
def test_lr_schedule_arguments_are_checked(kw, name):
    args = dict(step=3, max_steps=10, lr=1e-3, warmup_steps=2, min_lr=0.0)
    with pytest.raises(ValueError, match=f"lr_schedule: {name} must be"):
        gptx.lr_schedule(**{**args, **kw})
    assert gptx.lr_schedule(**args) > 0


def test_clip_grad_norm_refuses_a_nan_limit():
    grads = {"w": np.ones(4, np.float32)}
    with pytest.raises(ValueError, match="clip_grad_norm: max_norm must be a number"):
        gptx.clip_grad_norm(grads, math.nan)
    assert gptx.clip_grad_norm(grads, None)[1] == 1.0  # None: no clipping, as documented


@pytest.mark.parametrize("field, value", [("steps", "3"), ("batch_size", 1.5), ("block_size", True),
                                          ("grad_accum", 2.0)])
def test_train_config_sizes_must_be_integers(field, value):
    with pytest.raises(ValueError, match=f"TrainConfig.{field} must be an integer"):
        gptx.TrainConfig(**{field: value})


@pytest.mark.parametrize("keep", [-1, 1.5, None, math.nan])
def test_save_checkpoint_keep_is_checked(tmp_path, keep):
    model = gptx.GPT(gptx.GPTConfig(n_layer=1, n_head=1, n_embd=8, block_size=4, vocab_size=16))
    with pytest.raises(ValueError, match="save_checkpoint: keep must be an integer >= 0"):
        gptx.save_checkpoint(tmp_path, model, keep=keep)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("n", [1.5, "2"])
def test_thread_count_must_be_an_integer(n):
    with pytest.raises(TypeError, match="set_num_threads: n must be an integer"):
        gptx.set_num_threads(n)


def test_datasets_check_their_integer_arguments():
    tokens = np.arange(100, dtype=np.int32)
    with pytest.raises(TypeError, match="TokenDataset: seed must be an integer"):
        gptx.TokenDataset(tokens, seed="3")
    with pytest.raises(ValueError, match="tokens must be ids >= 0, got -1"):
        gptx.TokenDataset(tokens - 1)
    with pytest.raises(TypeError, match="TokenDataset: block_size must be an integer"):
        gptx.TokenDataset(tokens).get_batch(2, 1.5)
    with pytest.raises(ValueError, match=r"train_val_split: tokens must be 1-D, got shape \(1, 100\)"):
        gptx.train_val_split(tokens[None])
    tok = gptx.Tokenizer.bytes()
    examples = data.encode_pairs([("a b", " c")] * 3, tok, 8)
    with pytest.raises(ValueError, match=r"FinetuneDataset: pad_id must be in \[0, 2147483647\], got -1"):
        gptx.FinetuneDataset(examples, pad_id=-1)
    with pytest.raises(TypeError, match="encode_pairs: block_size must be an integer"):
        data.encode_pairs([("a", "b")], tok, 7.5)
    fds = gptx.FinetuneDataset(examples)
    with pytest.raises(ValueError, match="FinetuneDataset: block_size must be >= 1, got 0"):
        fds.next_batch(2, block_size=0)
    with pytest.raises(ValueError, match="does not fit in memory"):  # it used to gather rows for ever
        fds.next_batch(2**62)


def test_cli_misuses_end_in_one_line(tmp_path, capsys):
    assert main(["bench", "--bench-path", str(tmp_path / "missing")]) == 2  # it used to run another binary
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--bench-path" in err[0] and "not an executable file" in err[0], err
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    assert main(["demo", "--out", str(a_file / "run"), "--steps", "1", "--chars", "1"]) == 1  # was a traceback
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--out" in err[0] and "cannot create it" in err[0], err
    (tmp_path / "pairs.jsonl").write_text('{"prompt": "a", "completion": "b"}\n')
    assert main(["train", "--data", str(a_file), "--jsonl", str(tmp_path / "pairs.jsonl"), "--steps", "1",
                 "--out", str(tmp_path / "run")]) == 1  # which of the two would have been used was not said
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--data" in err[0] and "--jsonl" in err[0] and "give one of them" in err[0], err


def test_wrong_kinds_of_argument_name_the_argument(tmp_path):
    import gptx
    from gptx.data import FinetuneDataset, encode_pairs, train_val_split

    cfg = gptx.GPTConfig(n_layer=1, n_head=1, n_embd=8, block_size=4, vocab_size=16)
    for bad in (-1, 1.5, float("nan")):
        with pytest.raises((TypeError, ValueError), match="GPT: seed"):
            gptx.GPT(cfg, seed=bad)
    gptx.GPT(cfg, seed=None)  # fresh random weights
    m = gptx.GPT(cfg)
    for bad in (None, 3):
        with pytest.raises(TypeError, match="save_pretrained: path"):
            m.save_pretrained(bad)
        with pytest.raises(TypeError, match="from_pretrained: path"):
            gptx.GPT.from_pretrained(bad)
    with pytest.raises(ValueError, match="from_pretrained: path is empty"):
        gptx.GPT.from_pretrained("")
    for bad in (None, 3):
        with pytest.raises(TypeError, match="encode_pairs: pairs"):
            encode_pairs(bad, gptx.Tokenizer.bytes(), 8)
        with pytest.raises(TypeError, match="encode_pairs: tokenizer"):
            encode_pairs([("a", "b")], bad, 8)
        with pytest.raises(TypeError, match="FinetuneDataset: examples"):
            FinetuneDataset(bad)
    with pytest.raises(TypeError, match="train_val_split: tokens"):
        train_val_split(None)
