"""Data-parallel training under `mpiexec -n 2` (1 thread per rank) against one process with twice the micro-batch:
the same losses and parameters within DATA_PARALLEL_TOLERANCES (a different summation order), with and without
ZeRO-1 and gradient accumulation; resume 2 -> 2 bit for bit, 2 -> 1 and 1 -> 2 on the same loss curve."""
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import worker  # noqa: E402
from mpi_run import check_ok, needs_mpi, run_job  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent.parent))
from tolerances import DATA_PARALLEL_TOLERANCES as TOL  # noqa: E402

B = 2  # micro-batch per rank


@pytest.fixture(autouse=True)
def _mpi():
    needs_mpi()


def single(batch_size, steps, **kw):
    """The reference: one process, no gptx.distributed, micro-batch batch_size."""
    t = worker.trainer(batch_size, steps, **kw)
    return t, [t.train_step()["loss"] for _ in range(steps)]


@pytest.fixture(scope="module")
def equivalence(tmp_path_factory):
    needs_mpi()
    out = tmp_path_factory.mktemp("equivalence")
    check_ok(run_job(2, ["equivalence", out, B]))
    return out


@pytest.mark.parametrize("name, kw", [("plain", {}), ("zero", {"zero": 1}), ("accum", {"grad_accum": 2}),
                                      ("accum_zero", {"grad_accum": 2, "zero": 1}),
                                      # rows with different numbers of ignored targets on each rank
                                      ("masked", {"grad_accum": 2, "masked": True})])
def test_two_ranks_equal_one_process_with_twice_the_batch(equivalence, name, kw):
    got = np.load(equivalence / f"{name}.npz")
    kw.pop("zero", None)
    t, losses = single(2 * B, 5, **kw)
    np.testing.assert_allclose(got["losses"], losses, rtol=TOL["loss"], atol=0)
    ref = np.asarray(t.model.flat_buffers()[0])
    assert np.abs(got["params"] - ref).max() <= TOL["params"]
    moved = np.abs(ref - np.asarray(worker.trainer(2 * B, 5).model.flat_buffers()[0])).max()
    assert moved > 10 * TOL["params"] / 5, "the parameters barely moved: the comparison would prove nothing"
    # evaluation splits its batches over the ranks and sums them back
    np.testing.assert_allclose(float(got["val"]), t.evaluate(), rtol=TOL["loss"])


@pytest.fixture(scope="module", params=[0, 1], ids=["plain", "zero1"])
def resumed(request, tmp_path_factory):
    needs_mpi()
    zero = request.param
    out = tmp_path_factory.mktemp(f"resume{zero}")
    # the 1 -> 2 input: one process of micro-batch 2B, 3 of 6 steps, checkpointed
    one = worker.trainer(2 * B, 6, out_dir=str(out / "single"))
    one.fit(until=3)
    check_ok(run_job(2, ["resume", out, B, zero]))
    return out, zero


def test_resume_same_ranks_is_bitwise_exact(resumed):
    out, _ = resumed
    got = np.load(out / "resume.npz")
    assert np.array_equal(got["straight"], got["resumed"])
    assert np.array_equal(got["losses"][3:], got["more"])


def test_resume_two_ranks_on_one_process_continues_the_curve(resumed):
    import gptx

    out, _ = resumed
    got = np.load(out / "resume.npz")
    t = gptx.Trainer.resume(out / "run", gptx.TokenDataset(worker.tokens()),
                            gptx.TokenDataset(worker.tokens()[:3000]), progress=False)
    assert t.cfg.batch_size == 2 * B and t.cfg.zero == 0  # the global batch is kept; one process has no shards
    cont = [t.train_step()["loss"] for _ in range(3)]
    np.testing.assert_allclose(cont, got["losses"][3:], rtol=TOL["loss"])
    assert np.abs(np.asarray(t.model.flat_buffers()[0]) - got["straight"]).max() <= TOL["params"]
    # the ZeRO-1 moments were gathered into one whole state
    m = t.opt.state_dict()["m"]["transformer.h.1.mlp.c_fc.weight"]
    assert m.shape == got["m"].shape and np.any(m != 0)


def test_resume_on_ranks_that_cannot_split_the_global_batch(resumed):
    out, _ = resumed
    r = run_job(3, ["resume_on", out, out / "run"], timeout=90)
    text = r.stdout + r.stderr
    assert r.returncode != 0 and "global batch of 4 (2 x 2), which 3 ranks cannot split evenly" in text, text


def test_resume_one_process_on_two_ranks_continues_the_curve(resumed):
    out, _ = resumed
    got = np.load(out / "from_single.npz")
    _, losses = single(2 * B, 6)
    np.testing.assert_allclose(got["losses"], losses[3:], rtol=TOL["loss"])
