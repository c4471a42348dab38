"""Reference GPT-2 models from transformers with random weights, and their logits, loss and gradients via autograd."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
F = torch.nn.functional

from tolerances import assert_close  # noqa: E402

# float32 gptx vs a float64 reference: the worst |error| / max|reference| measured over the test shapes is ~1e-6
# (sums taken in another order, through up to 3 layers). scale = 4 * max|ref| allows 8e-6 * max|ref| absolute on top
# of the table's 2e-5 relative: a wrong term (a missing bias, an unscaled attention) is off by far more.
REL_SCALE = 4.0

# (n_layer, n_head, n_embd, block_size, vocab_size)
TINY = (1, 1, 8, 16, 7)
ODD = (2, 3, 48, 64, 101)


def hf_config(n_layer, n_head, n_embd, block_size, vocab_size):
    """A GPT-2 config with dropout off (the gptx model has none) and eager attention (the plain math reference)."""
    cfg = transformers.GPT2Config(
        n_layer=n_layer, n_head=n_head, n_embd=n_embd, n_positions=block_size, vocab_size=vocab_size,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=None, eos_token_id=None,
        attn_implementation="eager",
    )
    return cfg


def random_hf_model(shape, seed=0):
    """GPT2LMHeadModel with every parameter random: HF's init leaves biases at 0 and layernorms at (1, 0), which
    would hide a bias or layernorm-weight bug, so all of them get noise."""
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(hf_config(*shape)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln_" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.02 * torch.randn_like(p))
    return model


def reference(model, idx, targets=None):
    """(logits, loss, {name: grad}) of the HF model in float64 on a copy; the loss is the mean cross-entropy over
    targets != -100 on UNshifted targets (the gptx convention: targets are already the next tokens)."""
    import copy

    m = copy.deepcopy(model).double()
    m.zero_grad(set_to_none=True)
    logits = m(torch.as_tensor(np.asarray(idx, dtype=np.int64))).logits
    if targets is None:
        return logits.detach().numpy(), None, None
    V = logits.shape[-1]
    loss = F.cross_entropy(logits.reshape(-1, V), torch.as_tensor(np.asarray(targets, dtype=np.int64)).reshape(-1),
                           ignore_index=-100)
    loss.backward()
    grads = {n: p.grad.numpy().copy() for n, p in m.named_parameters()}
    return logits.detach().numpy(), loss.item(), grads


def random_batch(rng, B, T, V, ignore_fraction=0.0):
    idx = rng.integers(0, V, size=(B, T))
    targets = rng.integers(0, V, size=(B, T))
    if ignore_fraction:
        targets[rng.random((B, T)) < ignore_fraction] = -100
    return idx, targets


def close(actual, expected, what):
    """assert_close with the absolute allowance in proportion to the largest reference value."""
    assert_close(actual, expected, scale=REL_SCALE * float(np.abs(expected).max()), what=what)
