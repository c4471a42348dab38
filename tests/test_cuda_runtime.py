"""gptx.cuda and CUDA tensors: without a GPU everything says so clearly; with one, copies, conversions, DLPack with
torch (zero-copy both ways), streams and the caching allocator behave."""
import numpy as np
import pytest

import gptx
from gptx.model import GPT, GPTConfig

HAVE_GPU = gptx.cuda.is_available()
gpu = [pytest.mark.gpu, pytest.mark.skipif(not HAVE_GPU, reason="no CUDA device")]


def test_import_and_queries_work_without_a_gpu():
    assert isinstance(gptx.cuda.is_built(), bool)
    assert gptx.cuda.device_count() >= 0
    assert gptx.cuda.is_available() == (gptx.cuda.device_count() > 0)
    info = gptx.info()
    assert info["cuda_devices"] == gptx.cuda.device_count()
    assert len(info["cuda_device_names"]) == info["cuda_devices"]


@pytest.mark.skipif(HAVE_GPU, reason="checks the no-GPU errors")
def test_no_gpu_errors_are_clear():
    t = gptx.Tensor(np.ones(3, np.float32))
    # an absent device is the same RuntimeError for tensors, ops and the model
    with pytest.raises(RuntimeError, match="(?i)cuda"):
        t.to("cuda")
    with pytest.raises(RuntimeError, match="(?i)cuda"):
        gptx.Tensor.empty([2], "float32", "cuda")
    with pytest.raises(RuntimeError, match="(?i)cuda"):
        t.cuda()
    with pytest.raises(RuntimeError, match="(?i)cuda"):
        GPT(GPTConfig(n_layer=1, n_head=1, n_embd=8, block_size=4, vocab_size=10), device="cuda")
    with pytest.raises(RuntimeError, match="not available|no CUDA"):
        gptx.cuda.synchronize()
    with pytest.raises(TypeError, match="CUDA only"):
        gptx.ops.gelu_forward(t.to("bfloat16"))


def test_unknown_device_names_are_rejected():
    with pytest.raises(TypeError, match="unknown device"):
        gptx.Tensor.empty([2], "float32", "tpu")
    with pytest.raises(ValueError, match="unknown device"):
        GPT(GPTConfig(n_layer=1, n_head=1, n_embd=8, block_size=4, vocab_size=10), device="gpu0")


@pytest.mark.parametrize("dtype", ["float32", "int32", "float16"])
@pytest.mark.parametrize("shape", [(0,), (1,), (3, 5), (2, 3, 1001)])
def test_round_trip(rng, dtype, shape):
    if not HAVE_GPU:
        pytest.skip("no CUDA device")
    a = (rng.standard_normal(shape) * 100).astype(dtype)
    d = gptx.Tensor(a).to("cuda")
    assert d.device == "cuda:0" and d.shape == shape and d.dtype == dtype
    np.testing.assert_array_equal(d.numpy(), a)
    np.testing.assert_array_equal(np.asarray(d.to("cpu")), a)
    np.testing.assert_array_equal(d.clone().numpy(), a)
    assert d.to("cuda") is not None and d.cuda().data_ptr == d.data_ptr  # already there: the same memory


@pytest.mark.parametrize("mark", [0])
def test_bfloat16_conversion_matches_cpu(rng, mark):
    if not HAVE_GPU:
        pytest.skip("no CUDA device")
    a = rng.standard_normal(10007).astype(np.float32)
    a[:4] = [np.nan, np.inf, -np.inf, 3.0000002]
    cpu = gptx.Tensor(a).to("bfloat16").to("float32").numpy()
    dev = gptx.Tensor(a).to("cuda").to("bfloat16").to("float32").numpy()
    np.testing.assert_array_equal(dev, cpu)


def test_copy_and_views():
    if not HAVE_GPU:
        pytest.skip("no CUDA device")
    d = gptx.Tensor.zeros([4, 6], "float32", "cuda")
    d[1:3].copy_(np.full((2, 6), 7, np.float32))
    d[3].fill_(2.5)
    h = d.numpy()
    assert (h[0] == 0).all() and (h[1:3] == 7).all() and (h[3] == 2.5).all()
    with pytest.raises(ValueError, match="shape"):
        d.copy_(np.zeros((3, 6), np.float32))


def test_dlpack_with_torch_is_zero_copy():
    torch = pytest.importorskip("torch")
    if not HAVE_GPU or not torch.cuda.is_available():
        pytest.skip("no CUDA device for torch and gptx")
    x = torch.arange(12, dtype=torch.float32, device="cuda").reshape(3, 4)
    g = gptx.from_dlpack(x)
    assert g.device == "cuda:0" and g.data_ptr == x.data_ptr()
    g.fill_(5.0)
    gptx.cuda.synchronize()
    assert float(x.sum()) == 60.0
    y = torch.from_dlpack(gptx.Tensor(np.ones((2, 2), np.float32)).to("cuda"))
    assert y.is_cuda and float(y.sum()) == 4.0
    out = gptx.ops.gelu_forward(g)  # an op on memory torch owns
    assert torch.from_dlpack(out).shape == (3, 4)


def test_streams_and_allocator():
    if not HAVE_GPU:
        pytest.skip("no CUDA device")
    s = gptx.cuda.Stream()
    with gptx.cuda.stream(s):
        assert gptx.cuda.current_stream() == s.handle
        a = gptx.Tensor(np.ones((256, 256), np.float32)).to("cuda")
        b = gptx.ops.matmul_forward(a, a)
    s.synchronize()
    assert gptx.cuda.current_stream() == 0
    np.testing.assert_allclose(b.numpy(), 256.0)
    before = gptx.cuda.memory_allocated()
    t = gptx.Tensor.empty([1 << 20], "float32", "cuda")
    assert gptx.cuda.memory_allocated() >= before + 4 * (1 << 20)
    del t
    assert gptx.cuda.memory_allocated() == before
    assert gptx.cuda.memory_reserved() >= gptx.cuda.memory_allocated()
    gptx.cuda.empty_cache()
    props = gptx.cuda.get_device_properties()
    assert props["total_memory"] > 0 and props["name"]


def test_bad_device_ops_raise_not_crash():
    if not HAVE_GPU:
        pytest.skip("no CUDA device")
    a = gptx.Tensor(np.ones((4, 4), np.float32))
    with pytest.raises(TypeError, match="cuda:0|cpu"):
        gptx.ops.add_forward(a, a.to("cuda"))
    with pytest.raises(TypeError, match="float16"):
        gptx.ops.gelu_forward(a.to("cuda").to("float16"))
    idx = gptx.Tensor(np.array([[0, 9]], np.int32)).to("cuda")
    w = gptx.Tensor(np.ones((4, 4), np.float32)).to("cuda")
    with pytest.raises(ValueError, match="outside"):
        gptx.ops.embedding_forward(idx, w, w)


def test_builds_with_nvcc_contain_the_cuda_backend():
    """CI has nvcc but no GPU: the wheel it builds must still compile the CUDA sources (GPTX_CUDA=AUTO finds nvcc)."""
    import os
    import shutil

    nvcc = shutil.which("nvcc") or next(
        (p for p in ("/usr/local/cuda/bin/nvcc", os.path.join(os.environ.get("CUDA_HOME", "/nonexistent"), "bin",
                                                              "nvcc")) if os.path.exists(p)), None)
    if nvcc is None or "GPTX_CUDA=OFF" in os.environ.get("CMAKE_ARGS", "").replace(" ", ""):
        pytest.skip("no CUDA compiler on this machine")
    assert gptx.cuda.is_built(), f"nvcc is at {nvcc} but this gptx was built without the CUDA backend"
