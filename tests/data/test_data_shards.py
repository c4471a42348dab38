"""Token shards: write/read round trip, header validation, uint16 range, memmap, index, prepare() and atomic writes."""
import json
import os
import struct

import numpy as np
import pytest

from gptx import data_shards as ds
from gptx._fileio import atomic_write
from gptx.data import load_shards, prepare, read_shard, train_val_split, write_shard
from gptx.tokenizer import Tokenizer


def test_round_trip(tmp_path, rng):
    for n in (0, 1, 1000):
        tokens = rng.integers(0, 65536, size=n)
        if n:
            tokens[0] = 65535
        entry = write_shard(tmp_path / f"s{n}.bin", tokens)
        assert entry["tokens"] == n and entry["file"] == f"s{n}.bin"
        back = read_shard(tmp_path / f"s{n}.bin")
        assert back.dtype == np.dtype("<u2")
        np.testing.assert_array_equal(back, tokens)
        assert os.path.getsize(tmp_path / f"s{n}.bin") == ds.HEADER_SIZE + 2 * n


def test_read_is_a_memmap(tmp_path):
    write_shard(tmp_path / "a.bin", np.arange(5000) % 50257)
    arr = read_shard(tmp_path / "a.bin")
    assert isinstance(arr, np.memmap) and not arr.flags.writeable
    assert arr.offset == ds.HEADER_SIZE


def test_ids_that_do_not_fit_uint16_are_refused(tmp_path):
    with pytest.raises(ValueError, match="65536"):
        write_shard(tmp_path / "big.bin", [1, 2, 65536])
    with pytest.raises(ValueError, match="negative"):
        write_shard(tmp_path / "neg.bin", [1, -1])
    with pytest.raises(TypeError, match="integers"):
        write_shard(tmp_path / "f.bin", np.array([1.0]))
    assert os.listdir(tmp_path) == []


def _shard(tmp_path, n=100):
    p = tmp_path / "x.bin"
    write_shard(p, np.arange(n))
    return p


def test_truncated_shard(tmp_path):
    p = _shard(tmp_path)
    p.write_bytes(p.read_bytes()[:-1])
    with pytest.raises(ValueError, match=r"x\.bin is truncated.*100 tokens"):
        read_shard(p)
    p.write_bytes(p.read_bytes()[:10])
    with pytest.raises(ValueError, match=r"x\.bin is truncated.*too short"):
        read_shard(p)


def test_trailing_bytes(tmp_path):
    p = _shard(tmp_path)
    p.write_bytes(p.read_bytes() + b"\0\0")
    with pytest.raises(ValueError, match=r"x\.bin is corrupt"):
        read_shard(p)


def _patch(p, offset, fmt, value):
    raw = bytearray(p.read_bytes())
    struct.pack_into(fmt, raw, offset, value)
    p.write_bytes(bytes(raw))


def test_wrong_magic(tmp_path):
    p = _shard(tmp_path)
    _patch(p, 0, "8s", b"NOTTOKEN")
    with pytest.raises(ValueError, match=r"x\.bin is not a gptx token shard"):
        read_shard(p)


def test_wrong_version(tmp_path):
    p = _shard(tmp_path)
    _patch(p, 8, "<I", 2)
    with pytest.raises(ValueError, match=r"x\.bin has format version 2"):
        read_shard(p)


def test_unknown_dtype_and_bad_count(tmp_path):
    p = _shard(tmp_path)
    _patch(p, 12, "<I", 7)
    with pytest.raises(ValueError, match="dtype code 7"):
        read_shard(p)
    p = _shard(tmp_path)
    _patch(p, 24, "<Q", 2**40)  # a count far beyond the file must not map garbage
    with pytest.raises(ValueError, match="truncated"):
        read_shard(p)


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"old")

    def fail(f):
        f.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(str(p), fail)
    assert p.read_bytes() == b"old" and os.listdir(tmp_path) == ["f.bin"]


def test_sharded_tokens_slices_across_boundaries(tmp_path, rng):
    parts = [rng.integers(0, 1000, size=n) for n in (7, 0, 13, 1, 9)]
    arrays = []
    for k, part in enumerate(parts):
        write_shard(tmp_path / f"{k}.bin", part)
        arrays.append(read_shard(tmp_path / f"{k}.bin"))
    st = ds.ShardedTokens(arrays)
    full = np.concatenate(parts)
    assert len(st) == len(full)
    for a in range(len(full) + 1):
        for b in range(a, len(full) + 1, 3):
            np.testing.assert_array_equal(st[a:b], full[a:b])
    assert st[-1] == full[-1] and st[5] == full[5]
    np.testing.assert_array_equal(st[::3], full[::3])
    np.testing.assert_array_equal(st[::-1], full[::-1])
    with pytest.raises(IndexError):
        st[len(full)]
    offs = np.array([0, 5, 15, len(full) - 4])
    np.testing.assert_array_equal(st.windows(offs, 4), np.stack([full[o:o + 4] for o in offs]))
    np.testing.assert_array_equal(np.asarray(st), full)


def _corpus(tmp_path, texts):
    paths = []
    for i, t in enumerate(texts):
        p = tmp_path / f"in{i}.txt"
        p.write_text(t, encoding="utf-8")
        paths.append(p)
    return paths


def test_prepare_matches_in_memory_split(tmp_path):
    texts = ["To be, or not to be, that is the question.\n" * 40, "Whether 'tis nobler in the mind 😀\n" * 30]
    paths = _corpus(tmp_path, texts)
    out = tmp_path / "out"
    index = prepare(paths, out, tokenizer="gpt2", shard_tokens=100, val_fraction=0.2)
    tok = Tokenizer.gpt2()
    expected = np.array(tok.encode(texts[0]) + [tok.eot_token] + tok.encode(texts[1]))
    train, val = train_val_split(expected, 0.2)
    got_train, got_val = load_shards(out, "train", verify=True), load_shards(out, "val", verify=True)
    np.testing.assert_array_equal(np.asarray(got_train), train)
    np.testing.assert_array_equal(np.asarray(got_val), val)
    assert all(isinstance(s, np.memmap) for s in got_train.shards)
    assert index["tokens"] == {"train": len(train), "val": len(val)}
    assert len(index["train"]) == -(-len(train) // 100)
    assert Tokenizer.load(out).kind == "gpt2"  # the tokenizer travels with the shards
    assert not [f for f in os.listdir(out) if f.endswith(".tmp")]


def test_prepare_again_removes_stale_shards(tmp_path):
    paths = _corpus(tmp_path, ["abcdefghij" * 50])
    out = tmp_path / "out"
    prepare(paths, out, tokenizer="bytes", shard_tokens=50, val_fraction=0.0)
    assert len([f for f in os.listdir(out) if f.startswith("train_")]) == 10
    prepare(paths, out, tokenizer="bytes", shard_tokens=200, val_fraction=0.0)
    assert sorted(f for f in os.listdir(out) if f.endswith(".bin")) == ["train_000000.bin", "train_000001.bin",
                                                                        "train_000002.bin"]
    assert load_shards(out, "val").shards == []
    np.testing.assert_array_equal(np.asarray(load_shards(out)), np.frombuffer(b"abcdefghij" * 50, np.uint8))


def test_load_shards_detects_index_mismatch_and_changes(tmp_path):
    paths = _corpus(tmp_path, ["hello world\n" * 100])
    out = tmp_path / "out"
    prepare(paths, out, tokenizer="bytes", shard_tokens=300, val_fraction=0.1)
    index = json.loads((out / "index.json").read_text())
    raw = bytearray((out / "train_000000.bin").read_bytes())
    raw[-1] ^= 1  # same size, different token
    (out / "train_000000.bin").write_bytes(bytes(raw))
    load_shards(out)  # header still valid: cheap load accepts it
    with pytest.raises(ValueError, match="sha256"):
        load_shards(out, verify=True)
    index["train"][0]["tokens"] += 1
    (out / "index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match="train_000000.bin holds 300 tokens"):
        load_shards(out)
    os.remove(out / "val_000000.bin")
    with pytest.raises(FileNotFoundError, match="val_000000.bin"):
        load_shards(out, "val")
    with pytest.raises(FileNotFoundError, match="index.json"):
        load_shards(tmp_path)


def test_prepare_errors(tmp_path):
    (tmp_path / "bad.txt").write_bytes(b"fine\n\xff\xfe")
    with pytest.raises(ValueError, match=r"bad\.txt is not valid UTF-8: byte offset 5"):
        prepare([tmp_path / "bad.txt"], tmp_path / "o1", tokenizer="bytes")
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        prepare([tmp_path / "nope.txt"], tmp_path / "o2")
    paths = _corpus(tmp_path, ["text"])
    with pytest.raises(ValueError, match="val_fraction"):
        prepare(paths, tmp_path / "o3", tokenizer="bytes", val_fraction=1.0)
    with pytest.raises(ValueError, match="65536"):
        prepare(paths, tmp_path / "o4", tokenizer=Tokenizer("bpe", "huge", 70_000, None))

    class Lying(Tokenizer):
        def encode_batch(self, texts, allow_special=False):
            return [[1, 70_000] for _ in texts]

    with pytest.raises(ValueError, match="token id 70000"):
        prepare(paths, tmp_path / "o5", tokenizer=Lying("bpe", "lying", 60_000, None))
    assert not (tmp_path / "o5" / "index.json").exists()
    assert os.listdir(tmp_path / "o5") == []  # the temporary token stream is removed
