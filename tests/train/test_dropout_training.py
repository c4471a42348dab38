"""Training with dropout: the Trainer keys the masks by (seed, step) so resume is bitwise, the validation loss is
measured without dropout, and `gptx train --dropout` sets, keeps and refuses what it should."""
import numpy as np
import pytest

from gptx.__main__ import main
from gptx.checkpoint import load_checkpoint
from gptx.model import GPT, GPTConfig
from gptx.trainer import Trainer
from test_resume import N, assert_same_state, config, datasets, train_losses

SHAPE = dict(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=256, dropout=0.2)


@pytest.mark.parametrize("grad_accum", [1, 2])
def test_resume_with_dropout_is_bitwise(tmp_path, grad_accum):
    straight = Trainer(GPT(GPTConfig(**SHAPE), seed=5), config(tmp_path / "a", grad_accum=grad_accum), *datasets())
    straight.fit()
    first = Trainer(GPT(GPTConfig(**SHAPE), seed=5), config(tmp_path / "b", grad_accum=grad_accum), *datasets())
    first.fit(until=N)
    del first
    resumed = Trainer.resume(tmp_path / "b", *datasets())
    assert resumed.model.config.dropout == pytest.approx(0.2)
    resumed.fit()
    assert_same_state(straight, resumed)
    assert train_losses(tmp_path / "a") == train_losses(tmp_path / "b")
    assert straight.val_loss == resumed.val_loss


def test_dropout_changes_training_but_not_evaluation(tmp_path):
    plain_shape = dict(SHAPE, dropout=0.0)
    with_drop = Trainer(GPT(GPTConfig(**SHAPE), seed=5), config(tmp_path / "a", steps=3), *datasets())
    plain = Trainer(GPT(GPTConfig(**plain_shape), seed=5), config(tmp_path / "b", steps=3), *datasets())
    assert with_drop.evaluate() == plain.evaluate()  # same weights: validation runs without dropout
    assert with_drop.model.training  # and the model's mode is given back
    with_drop.model.eval()
    with_drop.evaluate()
    assert not with_drop.model.training
    a, b = with_drop.train_step(), plain.train_step()
    assert with_drop.model.training and a["loss"] != b["loss"]
    assert with_drop.model.dropout_step == 1 and with_drop.model.dropout_seed == 11  # (seed, step * G + i) + 1


TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--batch-size", "2",
        "--eval-every", "0", "--eval-batches", "1", "--threads", "1", "--no-progress", "--log-every", "0"]


def test_cli_dropout(tmp_path, capsys):
    run = str(tmp_path / "run")
    assert main(["train", *TINY, "--steps", "2", "--dropout", "0.1", "--out", run]) == 0
    assert "dropout=0.1" in capsys.readouterr().out
    assert load_checkpoint(run).config["dropout"] == pytest.approx(0.1)
    # a resumed run keeps its own dropout
    assert main(["train", "--resume", run, "--steps", "3", "--dropout", "0.3"]) == 1
    assert "drop --dropout" in capsys.readouterr().err
    assert main(["train", "--resume", run, "--steps", "3", "--no-progress"]) == 0
    assert load_checkpoint(run).config["dropout"] == pytest.approx(0.1)
    # fine-tuning: the checkpoint's value unless --dropout is given
    ft = str(tmp_path / "ft")
    ft_args = ["--batch-size", "2", "--block-size", "16", "--eval-every", "0", "--threads", "1", "--no-progress",
               "--steps", "1"]
    assert main(["train", *ft_args, "--init", run, "--out", ft]) == 0
    assert load_checkpoint(ft).config["dropout"] == pytest.approx(0.1)
    assert main(["train", *ft_args, "--init", run, "--dropout", "0", "--out", ft, "--overwrite"]) == 0
    assert load_checkpoint(ft).config["dropout"] == 0.0
    assert load_checkpoint(ft).config["n_embd"] == 16


def test_cli_finetune_keeps_hugging_face_dropout(tmp_path):
    transformers = pytest.importorskip("transformers")
    hf = tmp_path / "hf"
    cfg = transformers.GPT2Config(n_layer=1, n_head=2, n_embd=16, n_positions=32, resid_pdrop=0.05,
                                  embd_pdrop=0.05, attn_pdrop=0.05)
    transformers.GPT2LMHeadModel(cfg).save_pretrained(hf)
    text = tmp_path / "t.txt"
    text.write_text("hello world, " * 400, encoding="utf-8")
    args = ["--batch-size", "2", "--block-size", "16", "--eval-every", "0", "--threads", "1", "--no-progress",
            "--steps", "1", "--data", str(text)]
    assert main(["train", *args, "--init", str(hf), "--out", str(tmp_path / "ft")]) == 0
    assert load_checkpoint(tmp_path / "ft").config["dropout"] == pytest.approx(0.05)
    assert main(["train", *args, "--init", str(hf), "--dropout", "0.2", "--out", str(tmp_path / "ft2")]) == 0
    ck = load_checkpoint(tmp_path / "ft2")
    assert ck.config["dropout"] == pytest.approx(0.2)
    GPT.from_pretrained(tmp_path / "ft2").save_pretrained(tmp_path / "export")
    back = transformers.GPT2Config.from_pretrained(tmp_path / "export")
    assert back.resid_pdrop == back.embd_pdrop == back.attn_pdrop == pytest.approx(0.2)
