"""One model, several threads: forward/forward_loss return each caller's own loss (the shared activation buffers
are locked), a forward/backward pair split over threads is refused, and concurrent sampling stays correct."""
import threading

import numpy as np
import pytest

from gptx.model import GPT, GPTConfig

# Big enough that a forward pass spans many native calls with the GIL released (where the threads interleave).
SHAPE = dict(n_layer=2, n_head=4, n_embd=64, block_size=32, vocab_size=256)
ROUNDS = 25


def batches(n):
    rng = np.random.default_rng(7)
    return [rng.integers(0, SHAPE["vocab_size"], size=(4, 32)) for _ in range(n)]


def run_threads(fn, n):
    errors = []

    def guarded(i):
        try:
            fn(i)
        except BaseException as e:  # noqa: BLE001 - reported to the main thread
            errors.append(e)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


@pytest.mark.parametrize("call", ["forward", "forward_loss"])
def test_concurrent_forward_returns_each_callers_loss(call):
    model = GPT(GPTConfig(**SHAPE), seed=1)
    data = batches(3)
    expected = [float(model.forward(x, np.roll(x, -1, axis=1))[1]) for x in data]
    got = [[] for _ in data]

    def work(i):
        x = data[i]
        y = np.roll(x, -1, axis=1)
        for _ in range(ROUNDS):
            loss = model.forward(x, y)[1] if call == "forward" else model.forward_loss(x, y)
            got[i].append(float(loss))

    run_threads(work, len(data))
    for i, losses in enumerate(got):
        assert losses == [expected[i]] * ROUNDS, f"thread {i} got another thread's loss"


def test_backward_of_another_threads_forward_is_refused():
    model = GPT(GPTConfig(**SHAPE), seed=1)
    x = batches(1)[0]
    run_threads(lambda i: model.forward(x, np.roll(x, -1, axis=1)), 1)
    with pytest.raises(RuntimeError, match="another thread"):
        model.backward()
    model.forward(x, np.roll(x, -1, axis=1))  # the same thread: fine
    model.backward()


def test_concurrent_generate_is_correct():
    model = GPT(GPTConfig(**SHAPE), seed=2)
    prompts = [[1, 2, 3], [200, 5], [9] * 7, [42]]
    expected = [model.generate(p, 12, temperature=0) for p in prompts]
    sampled = [model.generate(p, 12, temperature=1.0, seed=3) for p in prompts]
    got = [[None, None] for _ in prompts]

    def work(i):
        for _ in range(3):
            got[i] = [model.generate(prompts[i], 12, temperature=0),
                      model.generate(prompts[i], 12, temperature=1.0, seed=3)]

    run_threads(work, len(prompts))
    assert [g[0] for g in got] == expected
    assert [g[1] for g in got] == sampled
