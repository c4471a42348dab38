"""`gptx train --device cuda`: a run on the GPU checkpoints device-independent state and resumes bit for bit (the
CUDA kernels are deterministic: no float atomics), in float32 and in bfloat16 mixed precision."""
import numpy as np
import pytest

import gptx
from gptx.__main__ import main
from gptx.checkpoint import load_checkpoint

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not gptx.cuda.is_available(), reason="no CUDA device")]

TINY = ["--preset", "shakespeare", "--n-layer", "1", "--n-head", "2", "--n-embd", "64", "--block-size", "32",
        "--batch-size", "4", "--warmup", "4", "--eval-every", "3", "--eval-batches", "1", "--seed", "3",
        "--no-progress"]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_cli_train_on_cuda_resumes_bit_for_bit(tmp_path, dtype):
    dev = ["--device", "cuda", "--dtype", dtype]
    assert main(["train", *TINY, *dev, "--steps", "4", "--out", str(tmp_path / "half")]) == 0
    assert main(["train", "--resume", str(tmp_path / "half"), *dev, "--steps", "8", "--no-progress"]) == 0
    assert main(["train", *TINY, *dev, "--steps", "8", "--out", str(tmp_path / "full")]) == 0
    a, b = load_checkpoint(tmp_path / "half"), load_checkpoint(tmp_path / "full")
    assert a.step == b.step == 8
    for name in b.model:
        assert a.model[name].dtype == np.float32
        assert np.array_equal(a.model[name], b.model[name]), name
        assert np.array_equal(a.optimizer["m"][name], b.optimizer["m"][name]), name
    assert a.state["loss"] == b.state["loss"] and np.isfinite(a.state["loss"])
