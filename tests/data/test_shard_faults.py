"""Token shards and their index refuse what would misread or leave the folder: an odd header size (every id read a
byte off), index entries that are not objects, lack a key, or name a path outside the folder."""
import json
import struct

import numpy as np
import pytest

from gptx import data_shards as ds


def shard_with_header(path, header_size, tokens):
    body = np.asarray(tokens, dtype="<u2").tobytes()
    head = struct.pack("<8sIIIIQ", ds.MAGIC, ds.SHARD_VERSION, ds.DTYPE_UINT16, header_size, 0, len(tokens))
    path.write_bytes(head.ljust(header_size, b"\0") + body)


def test_odd_header_size_is_refused(tmp_path):
    p = tmp_path / "s.bin"
    shard_with_header(p, 65, [1, 2, 3])  # sizes agree (65 + 3 * 2 bytes), but the ids would start at an odd byte
    with pytest.raises(ValueError, match=r"s\.bin.*header size 65 is not a multiple"):
        ds.read_shard(p)
    shard_with_header(p, 66, [1, 2, 3])  # an even, larger header is still a valid layout
    assert ds.read_shard(p).tolist() == [1, 2, 3]


@pytest.fixture
def folder(tmp_path):
    entry = ds.write_shard(tmp_path / "train_000000.bin", np.arange(10))
    (tmp_path / "outside.bin").write_bytes(b"")
    return tmp_path, entry


def write_index(folder, entries):
    (folder / ds.INDEX_FILE).write_text(json.dumps({"format": ds.INDEX_FORMAT, "version": 1, "train": entries}))


@pytest.mark.parametrize("entries, match", [
    ([{"tokens": 10}], "train\\[0\\] has no 'file'"),
    ([{"file": "train_000000.bin"}], "train\\[0\\] has no 'tokens'"),
    (["train_000000.bin"], "train\\[0\\] must be an object"),
    ({"file": "train_000000.bin"}, "'train' must be a list"),
    ([{"file": "../outside.bin", "tokens": 0}], "plain file name inside the folder"),
    ([{"file": "/etc/passwd", "tokens": 0}], "plain file name inside the folder"),
    ([{"file": 3, "tokens": 0}], "plain file name"),
    ([{"file": "train_000000.bin", "tokens": -1}], "non-negative integer"),
    ([{"file": "train_000000.bin", "tokens": "10"}], "non-negative integer"),
])
def test_bad_index_entries_are_clear_errors(folder, entries, match):
    d, _ = folder
    write_index(d, entries)
    with pytest.raises(ValueError, match=match) as e:
        ds.load_shards(d, "train")
    assert "index.json" in str(e.value)


def test_good_index_still_loads(folder):
    d, entry = folder
    write_index(d, [entry])
    assert np.asarray(ds.load_shards(d, "train", verify=True)).tolist() == list(range(10))
