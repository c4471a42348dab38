"""GPT vs transformers' GPT2LMHeadModel (float64 autograd): logits, loss and every parameter's gradient."""
import numpy as np
import pytest

import gptx
from gpt2_reference import ODD, REL_SCALE, TINY, close, random_batch, random_hf_model, reference
from gptx.model import GPT
from tolerances import assert_close

# (n_layer, n_head, n_embd, block_size, vocab_size), B, T, fraction of targets set to -100
CASES = [
    (TINY, 2, 5, 0.0),
    (TINY, 1, 16, 0.3),  # T == block_size
    (ODD, 2, 37, 0.2),
    (ODD, 1, 1, 0.0),  # a single token
    ((3, 4, 64, 128, 300), 3, 64, 0.1),
]  # the GPT-2 small layer shape is in test_model_hf_gpt2_layer.py (a slower file of its own)


def case_id(case):
    (L, NH, C, BS, V), B, T, ign = case
    return f"L{L}-NH{NH}-C{C}-V{V}-B{B}-T{T}-ign{ign}"


@pytest.fixture(autouse=True)
def two_threads():
    before = gptx.get_num_threads()
    gptx.set_num_threads(2)
    yield
    gptx.set_num_threads(before)


def load_via_disk(hf, tmp_path):
    """The path a user takes: transformers writes the directory, GPT.from_pretrained reads it."""
    hf.save_pretrained(tmp_path)
    return GPT.from_pretrained(tmp_path)


def with_one_counted_target(targets):
    targets = targets.copy()
    if (targets == -100).all():
        targets[0, 0] = 0
    return targets


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_logits_loss_and_every_gradient(tmp_path, rng, case):
    shape, B, T, ignore = case
    V = shape[4]
    hf = random_hf_model(shape, seed=int(rng.integers(2**31)))
    model = load_via_disk(hf, tmp_path)
    idx, targets = random_batch(rng, B, T, V, ignore)
    targets = with_one_counted_target(targets)

    logits, loss = model.forward(idx, targets)
    ref_logits, ref_loss, ref_grads = reference(hf, idx, targets)
    assert isinstance(logits, gptx.Tensor) and logits.shape == (B, T, V) and logits.dtype == "float32"
    assert isinstance(loss, gptx.Tensor) and loss.size == 1 and loss.dtype == "float32"
    close(logits, ref_logits, "logits")
    assert_close(float(loss), ref_loss, scale=REL_SCALE * ref_loss, what="loss")

    model.backward()
    assert set(model.grads) == set(ref_grads)
    for name, g in ref_grads.items():  # wte's reference gradient is the tied sum (embedding + LM head)
        close(model.grads[name], g, name)
    assert not np.asarray(model._g.wte)[V:].any(), "the padded rows of the wte gradient must stay zero"


def test_inference_without_targets(tmp_path, rng):
    hf = random_hf_model(ODD, seed=int(rng.integers(2**31)))
    model = load_via_disk(hf, tmp_path)
    for B, T in [(1, 1), (1, 23), (3, 64)]:
        idx, _ = random_batch(rng, B, T, ODD[4])
        logits, loss = model.forward(idx)
        assert loss is None
        close(logits, reference(hf, idx)[0], f"logits B{B} T{T}")


def test_gradient_accumulation_adds(tmp_path, rng):
    """Two forward/backward calls without zero_grad give the sum of both batches' gradients, across a change of
    (B, T) (which reallocates the activation buffers)."""
    hf = random_hf_model(ODD, seed=int(rng.integers(2**31)))
    model = load_via_disk(hf, tmp_path)
    batches = [random_batch(rng, 2, 37, ODD[4], 0.1), random_batch(rng, 1, 20, ODD[4], 0.1)]
    batches = [(i, with_one_counted_target(t)) for i, t in batches]

    separate = []
    for idx, targets in batches:
        model.zero_grad()
        model.forward(idx, targets)
        model.backward()
        separate.append({n: np.array(g) for n, g in model.grads.items()})

    model.zero_grad()
    assert not any(np.asarray(g).any() for g in model.grads.values())
    for idx, targets in batches:
        model.forward(idx, targets)
        model.backward()
    refs = [reference(hf, idx, targets)[2] for idx, targets in batches]
    for name, g in model.grads.items():
        expected = refs[0][name] + refs[1][name]
        close(g, expected, name + " (accumulated vs reference)")
        close(g, separate[0][name].astype(np.float64) + separate[1][name], name + " (accumulated vs separate)")


def test_all_targets_ignored(tmp_path, rng):
    model = load_via_disk(random_hf_model(TINY, seed=1), tmp_path)
    idx, _ = random_batch(rng, 2, 4, TINY[4])
    _, loss = model.forward(idx, np.full((2, 4), -100))
    assert np.isnan(float(loss))  # the mean over no positions, as torch's cross_entropy gives
    model.zero_grad()
    model.backward()
    assert not any(np.asarray(g).any() for g in model.grads.values())
