"""TokenDataset: batch contents, determinism, exact resume (random and sequential), memmap/shard sources, splits."""
import json

import numpy as np
import pytest

from gptx.data import TokenDataset, load_text, read_shard, train_val_split, write_shard
from gptx.data_shards import ShardedTokens


def json_round_trip(state):
    return json.loads(json.dumps(state))


def assert_windows(tokens, x, y):
    """Every row of x is a contiguous window of tokens and y is the same window shifted by one."""
    tokens = np.asarray(tokens)
    for row_x, row_y in zip(x, y):
        hits = np.flatnonzero(tokens[: len(tokens) - x.shape[1]] == row_x[0])
        assert any(np.array_equal(tokens[i:i + x.shape[1]], row_x) and
                   np.array_equal(tokens[i + 1:i + 1 + x.shape[1]], row_y) for i in hits)


def test_random_batch_contents():
    tokens = np.arange(5000, dtype=np.uint16)
    ds = TokenDataset(tokens, seed=3)
    x, y = ds.get_batch(8, 16)
    assert x.shape == y.shape == (8, 16) and x.dtype == y.dtype == np.int32
    assert x.flags.c_contiguous and y.flags.c_contiguous
    np.testing.assert_array_equal(y, x + 1)
    np.testing.assert_array_equal(x[:, 1:], x[:, :-1] + 1)
    assert x.min() >= 0 and y.max() <= 4999


def test_random_offsets_cover_both_ends():
    ds = TokenDataset(np.arange(10, dtype=np.int32), seed=0)
    firsts = {int(ds.get_batch(1, 4)[0][0, 0]) for _ in range(300)}
    assert firsts == set(range(6))  # offsets 0..n-T-1: the last window's target is the last token


def test_random_determinism_and_external_rng():
    tokens = np.random.default_rng(0).integers(0, 50257, size=10_000)
    a, b, c = TokenDataset(tokens, seed=1), TokenDataset(tokens, seed=1), TokenDataset(tokens, seed=2)
    xa, xb, xc = a.get_batch(4, 32)[0], b.get_batch(4, 32)[0], c.get_batch(4, 32)[0]
    np.testing.assert_array_equal(xa, xb)
    assert not np.array_equal(xa, xc)
    before = a.state_dict()
    a.get_batch(4, 32, rng=np.random.default_rng(9))  # a caller-owned generator leaves the own state alone
    assert a.state_dict() == before
    np.testing.assert_array_equal(a.get_batch(4, 32)[0], b.get_batch(4, 32)[0])


@pytest.mark.parametrize("mode", ["random", "sequential"])
def test_exact_resume(mode):
    tokens = np.random.default_rng(1).integers(0, 50257, size=3000).astype(np.uint16)
    k, B, T = 7, 3, 50  # 28 sequential draws of 150 tokens cross the 3000-token epoch end (the 20th wraps)
    draw = (lambda d: d.get_batch(B, T)) if mode == "random" else (lambda d: d.next_batch(B, T))
    ds = TokenDataset(tokens, seed=5)
    for _ in range(k * 2):
        draw(ds)
    state = json_round_trip(ds.state_dict())
    after = [draw(ds) for _ in range(k * 2)]
    fresh = TokenDataset(tokens, seed=123)  # the seed comes back from the state
    fresh.load_state_dict(state)
    resumed = [draw(fresh) for _ in range(k * 2)]
    for (x1, y1), (x2, y2) in zip(after, resumed):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    assert fresh.state_dict() == ds.state_dict()


def test_sequential_order_and_epochs():
    tokens = np.arange(100, dtype=np.int32)
    ds = TokenDataset(tokens)
    x, y = ds.next_batch(2, 10)
    np.testing.assert_array_equal(x.ravel(), np.arange(20))
    np.testing.assert_array_equal(y.ravel(), np.arange(1, 21))
    assert ds.num_batches(2, 10) == 4  # 99 usable targets // 20
    for _ in range(3):
        x, y = ds.next_batch(2, 10)
    assert x[-1, -1] == 79 and ds.epoch == 0
    x, y = ds.next_batch(2, 10)  # 80 + 20 + 1 > 100: wraps to the start
    assert ds.epoch == 1 and x[0, 0] == 0 and ds.cursor == 20
    state = ds.state_dict()
    batches = list(ds.iter_batches(2, 10))
    assert len(batches) == 4 and batches[3][0][-1, -1] == 79
    assert ds.state_dict() == state  # evaluation passes leave the training cursor alone
    assert len(list(ds.iter_batches(2, 10, max_batches=2))) == 2


def test_memmap_and_shard_sources_match_arrays(tmp_path):
    tokens = np.random.default_rng(2).integers(0, 65536, size=4000)
    write_shard(tmp_path / "a.bin", tokens[:1500])
    write_shard(tmp_path / "b.bin", tokens[1500:])
    mm = read_shard(tmp_path / "a.bin")
    sharded = ShardedTokens([mm, read_shard(tmp_path / "b.bin")])
    for source, ref in ((mm, tokens[:1500]), (sharded, tokens)):
        d1, d2 = TokenDataset(source, seed=4), TokenDataset(ref, seed=4)
        for _ in range(5):
            for a, b in zip(d1.get_batch(4, 64), d2.get_batch(4, 64)):
                np.testing.assert_array_equal(a, b)
            for a, b in zip(d1.next_batch(4, 64), d2.next_batch(4, 64)):
                np.testing.assert_array_equal(a, b)
    x, y = TokenDataset(sharded, seed=0).get_batch(16, 128)
    assert_windows(tokens, x, y)


def test_errors():
    with pytest.raises(ValueError, match="needs at least 17"):
        TokenDataset(np.arange(16)).get_batch(1, 16)
    with pytest.raises(ValueError, match="needs at least 33"):
        TokenDataset(np.arange(32)).next_batch(2, 16)
    with pytest.raises(ValueError, match="1-D"):
        TokenDataset(np.zeros((2, 8), dtype=np.int32))
    with pytest.raises(TypeError, match="integers"):
        TokenDataset(np.zeros(8))
    with pytest.raises(ValueError, match="positive"):
        TokenDataset(np.arange(100)).get_batch(0, 4)
    state = TokenDataset(np.arange(100)).state_dict()
    with pytest.raises(ValueError, match="saved for 100 tokens"):
        TokenDataset(np.arange(101)).load_state_dict(state)


def test_train_val_split():
    tokens = np.arange(1000, dtype=np.uint16)
    train, val = train_val_split(tokens, 0.1)
    assert len(train) == 900 and len(val) == 100 and train[-1] + 1 == val[0]
    assert np.shares_memory(train, tokens) and np.shares_memory(val, tokens)
    train, val = train_val_split(tokens, 0.0)
    assert len(train) == 1000 and len(val) == 0
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="val_fraction"):
            train_val_split(tokens, bad)


def test_load_text(tmp_path):
    (tmp_path / "ok.txt").write_bytes("héllo 😀\n".encode())
    assert load_text(tmp_path / "ok.txt") == "héllo 😀\n"
    (tmp_path / "bad.txt").write_bytes(b"abc\xc3(")
    with pytest.raises(ValueError, match=r"bad\.txt is not valid UTF-8: byte offset 3"):
        load_text(tmp_path / "bad.txt")
