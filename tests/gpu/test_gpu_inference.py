"""The C++ inference pass (gptx/model.h) on CUDA: a checkpoint loaded onto the GPU generates like the CPU."""
import numpy as np
import pytest

import gptx
from gptx import _core
from gptx.model import GPT, GPTConfig
from tolerances import model_tolerance

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not gptx.cuda.is_available(), reason="no CUDA device")]


@pytest.fixture
def step(tmp_path):
    m = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=64, block_size=32, vocab_size=70), seed=0)
    rng = np.random.default_rng(0)  # spread-out logits: argmax is not decided by rounding
    m.load_state_dict({k: (rng.standard_normal(v.shape) * (1.0 if ".wte" in k or ".wpe" in k else 0.3))
                       .astype(np.float32) for k, v in m.state_dict().items()})
    return gptx.save_checkpoint(tmp_path / "run", m)


def test_loaded_on_cuda_generates_like_cpu(step):
    cpu = _core.load_model(str(step))
    gpu = _core.load_model(str(step), "float32", "cuda")
    assert gpu.device.startswith("cuda") and gpu.dtype == "float32"
    prompt = np.array([5, 9, 1])
    want = list(_core.model_generate_greedy(cpu, prompt, 40))  # past block_size 32: the sliding window too
    assert list(_core.model_generate_greedy(gpu, prompt, 40)) == want


def test_bfloat16_logits_close_to_float32(step):
    ids = np.arange(20) % 70
    out = {}
    for dtype in ("float32", "bfloat16"):
        model = _core.load_model(str(step), dtype, "cuda")
        cache = _core.KVCache.for_model(model, 1)
        out[dtype] = np.asarray(_core.model_prefill(model, cache, 0, ids, True))
        assert out[dtype].shape == (20, 70) and out[dtype].dtype == np.float32
    scale = float(np.abs(out["float32"]).max())
    bound = model_tolerance("cuda", "bfloat16", "logits_max")
    assert float(np.abs(out["bfloat16"] - out["float32"]).max()) < bound * scale
