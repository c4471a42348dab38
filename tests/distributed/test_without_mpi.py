"""What works with no MPI at all: importing gptx and gptx.distributed, training in one process, the bucket and shard
plans; and the errors that say how to get MPI or what is wrong."""
import subprocess
import sys

import numpy as np
import pytest

import gptx
from gptx import distributed as dist
from gptx.distributed.grad_reduce import plan_buckets


def test_trains_in_one_process_without_mpi4py():
    code = ("import sys; sys.modules['mpi4py'] = None\n"  # any `import mpi4py` now fails
            "import numpy as np, gptx, gptx.distributed as dist\n"
            "assert not dist.is_initialized() and dist.world_size() == 1 and dist.rank() == 0\n"
            "m = gptx.GPT(gptx.GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=16, vocab_size=64))\n"
            "t = gptx.Trainer(m, gptx.TrainConfig(steps=2, batch_size=2, block_size=16, progress=False, log_every=0,"
            " eval_every=0), gptx.TokenDataset(np.arange(1000) % 64))\n"
            "assert t.fit()['step'] == 2\n"
            "try:\n    dist.init()\nexcept ImportError as e:\n    print('IMPORT', e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "IMPORT gptx.distributed needs mpi4py" in r.stdout and "gptx-engine[mpi]" in r.stdout


def test_collectives_before_init_say_so():
    if dist.is_initialized():
        pytest.skip("this process initialised gptx.distributed")
    with pytest.raises(RuntimeError, match="init"):
        dist.all_reduce(np.zeros(3, np.float32))


def test_zero_needs_distributed():
    m = gptx.GPT(gptx.GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=16, vocab_size=64))
    with pytest.raises(ValueError, match="gptx.distributed.init"):
        gptx.Trainer(m, gptx.TrainConfig(steps=1, batch_size=1, block_size=16, zero=1), gptx.TokenDataset(np.arange(99)))


@pytest.mark.parametrize("field, value", [("zero", 2), ("zero", True), ("bucket_mb", 0.0), ("bucket_mb", float("nan"))])
def test_train_config_checks_the_new_fields(field, value):
    with pytest.raises(ValueError, match=f"TrainConfig.{field}"):
        gptx.TrainConfig(**{field: value})


@pytest.mark.parametrize("n, world", [(1, 1), (7, 2), (1000, 3), (124475904, 8), (5, 4), (33, 2)])
def test_shards_cover_the_buffer_once_on_aligned_bounds(n, world):
    spans = [dist.shard_range(n, r, world) for r in range(world)]
    assert spans[0][0] == 0 and spans[-1][1] == n
    for (a, b), (c, _) in zip(spans, spans[1:]):
        assert b == c and a <= b
    assert all(a % dist.SHARD_ALIGN == 0 for a, b in spans if a < n)


def test_buckets_are_whole_blocks_from_the_end():
    starts = [100, 200, 300, 400]  # embeddings [0, 100), blocks of 100, the last block + ln_f [400, 520)
    assert plan_buckets(520, starts, 1) == {3: (400, 520), 2: (300, 400), 1: (200, 300), 0: (100, 200), -1: (0, 100)}
    assert plan_buckets(520, starts, 150) == {2: (300, 520), 0: (100, 300), -1: (0, 100)}
    assert plan_buckets(520, starts, 10**9) == {-1: (0, 520)}
    # the real model: buckets tile the gradient buffer exactly
    m = gptx.GPT(gptx.GPTConfig(n_layer=3, n_head=2, n_embd=32, block_size=16, vocab_size=61))
    n = int(m.flat_buffers()[1].shape[0])
    plan = plan_buckets(n, m.grad_layer_starts(), 1)
    covered = sorted(plan.values())
    assert covered[0][0] == 0 and covered[-1][1] == n
    assert all(b == c for (_, b), (c, _) in zip(covered, covered[1:]))


def test_backward_reports_every_block_in_order():
    m = gptx.GPT(gptx.GPTConfig(n_layer=3, n_head=2, n_embd=32, block_size=16, vocab_size=61))
    x = np.random.default_rng(0).integers(0, 61, (2, 16))
    seen = []
    m.forward_loss(x, x)
    m.backward(seen.append)
    assert seen == [2, 1, 0, -1]
    # the block's gradients are final when it is reported: nothing after the hook writes into a reported range
    snapshots = {}
    starts = m.grad_layer_starts() + [int(m.flat_buffers()[1].shape[0])]
    g = np.asarray(m.flat_buffers()[1])

    def hook(layer):
        if layer >= 0:
            snapshots[layer] = g[starts[layer]:starts[layer + 1]].copy()

    m.zero_grad()
    m.forward_loss(x, x)
    m.backward(hook)
    for layer, snap in snapshots.items():
        assert np.array_equal(g[starts[layer]:starts[layer + 1]], snap), layer
