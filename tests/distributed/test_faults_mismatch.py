"""A rank that is killed, raises or hangs ends the whole job with a non-zero status within FAULT_BOUND_S, with a
message naming the rank; ranks started with different jobs stop at start with a clear error."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from mpi_run import needs_mpi, run_job  # noqa: E402

FAULT_BOUND_S = 60  # the bound; the hang case sets the collective timeout to 10 s to stay inside it


@pytest.fixture(autouse=True)
def _mpi():
    needs_mpi()


@pytest.mark.parametrize("how", ["kill", "raise", "hang"])
def test_a_failing_rank_ends_the_job(tmp_path, how):
    # `gptx train --nproc` starts ranks under gptx.distributed.supervise, which names a rank a signal killed
    r = run_job(2, ["fault", tmp_path, how], timeout=FAULT_BOUND_S + 30, extra_env={"GPTX_DIST_TIMEOUT": 10},
                supervised=how == "kill")
    text = r.stdout + r.stderr
    assert r.returncode != 0, text
    assert r.seconds <= FAULT_BOUND_S, f"the job took {r.seconds:.0f} s to end:\n{text}"
    if how == "raise":
        assert "rank 1 of 2 raised" in text and "injected failure" in text, text
    elif how == "hang":
        # rank 0 gives up waiting for the stuck rank and names itself and the collective
        assert "rank 0 of 2" in text and "did not complete within 10 s" in text, text
    else:
        assert "rank 1 (pid" in text and "killed by SIGKILL" in text, text


@pytest.mark.parametrize("what, expect", [("seed", "model weights"), ("shape", "model config.n_layer"),
                                          ("steps", "train config.steps")])
def test_ranks_started_with_different_jobs_are_refused(tmp_path, what, expect):
    r = run_job(2, ["mismatch", tmp_path, what], timeout=90)
    text = r.stdout + r.stderr
    assert r.returncode != 0, text
    assert "no error" not in text
    assert "rank 1 differs from rank 0" in text and expect in text, text


def test_collectives_match_numpy(tmp_path):
    r = run_job(2, ["collectives", tmp_path], timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "collectives.json").is_file()


def test_collectives_on_three_ranks(tmp_path):
    """Odd world size: uneven shards, three-way sums."""
    r = run_job(3, ["collectives", tmp_path], timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr
