"""GPT vs transformers at GPT-2 small's layer shape (C=768, 12 heads) and full vocabulary (50257, padded to 50304)."""
import numpy as np
import pytest

import gptx
from gpt2_reference import REL_SCALE, close, random_batch, random_hf_model, reference
from gptx.model import GPT
from tolerances import assert_close

SHAPE = (1, 12, 768, 32, 50257)  # one layer keeps the float64 autograd reference at a few seconds


@pytest.fixture(autouse=True)
def two_threads():
    before = gptx.get_num_threads()
    gptx.set_num_threads(2)
    yield
    gptx.set_num_threads(before)


def test_gpt2_small_layer_logits_loss_gradients(tmp_path, rng):
    hf = random_hf_model(SHAPE, seed=int(rng.integers(2**31)))
    hf.save_pretrained(tmp_path)
    model = GPT.from_pretrained(tmp_path)
    assert model.config.padded_vocab_size == 50304
    idx, targets = random_batch(rng, 1, 8, SHAPE[4], 0.2)
    targets[0, -1] = 50256  # the last real row of the table, next to the padding

    logits, loss = model.forward(idx, targets)
    ref_logits, ref_loss, ref_grads = reference(hf, idx, targets)
    close(logits, ref_logits, "logits")
    assert_close(float(loss), ref_loss, scale=REL_SCALE * ref_loss, what="loss")
    model.backward()
    for name, g in ref_grads.items():
        close(model.grads[name], g, name)
    assert not np.asarray(model._g.wte)[SHAPE[4]:].any()
    assert not np.asarray(model._p.wte)[SHAPE[4]:].any()
