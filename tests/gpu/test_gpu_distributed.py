"""gptx.distributed on CUDA: NCCL collectives against numpy and data-parallel training steps through NCCL at N=1
(one GPU is enough) against the same steps without gptx.distributed: a one-rank sum is the identity, so they agree."""
import sys
from pathlib import Path

import numpy as np
import pytest

import gptx

sys.path.insert(0, str(Path(__file__).parent.parent / "distributed"))
from mpi_run import check_ok, needs_mpi, run_job  # noqa: E402

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not gptx.cuda.is_available(), reason="no CUDA device")]


def _nccl_reason():
    try:
        from gptx.distributed.nccl import load_library

        load_library()
    except ImportError as e:
        return str(e)
    return None


def test_nccl_one_rank(tmp_path):
    reason = _nccl_reason()
    if reason:
        pytest.skip(reason)
    needs_mpi()
    check_ok(run_job(1, ["nccl", tmp_path], timeout=300))
    got = np.load(tmp_path / "nccl.npz")
    import worker

    model = gptx.GPT(gptx.GPTConfig(**worker.CONFIG), seed=1).to("cuda")
    t = gptx.Trainer(model, gptx.TrainConfig(steps=5, batch_size=2, **worker.TRAIN), gptx.TokenDataset(worker.tokens()))
    losses = [t.train_step()["loss"] for _ in range(5)]
    assert np.array_equal(got["plain"], losses)
    for name, p in model.state_dict().items():
        assert np.array_equal(got[f"p0/{name}"], p), name
        # ZeRO-1 at N=1: the same update from a norm computed over one shard (the whole buffer)
        np.testing.assert_allclose(got[f"p1/{name}"], p, rtol=0, atol=1e-6, err_msg=name)
