"""A fast slice of the loaders' mutation fuzzing (tests/fuzz_loaders.py runs thousands): no crash, no hang, no
silent load of bytes a sha256 list covers, no error that fails to name its file, no tokenizer that loses text."""
import os

import pytest

import fuzz_loaders as fuzz

FAILURES = ("crashes", "hangs", "silent", "unclear", "lossy")
DIGESTS = ("native", "checkpoint", "shards")  # the targets whose folders carry a sha256 list


@pytest.mark.parametrize("target", fuzz.TARGETS)
def test_mutated_folders_are_refused_without_crash_or_hang(tmp_path, target):
    seed = int.from_bytes(os.urandom(4), "little")  # fresh cases each run; the seed is in the failure message
    counts = fuzz.run(fuzz.make_folder(tmp_path, target), target, seed, count=100)
    assert not any(counts[k] for k in FAILURES), (seed, counts)
    assert counts["errors"] + counts["loaded"] + counts["unchanged"] == 100, counts
    assert counts["errors"] > 40, counts  # the mutations do reach the loaders


@pytest.mark.parametrize("target", DIGESTS)
def test_parsers_behind_the_digest_check_survive_mutations(tmp_path, target):
    # the digests rewritten to vouch for each mutated file: the safetensors, JSON, tokenizer and shard parsers see it
    seed = int.from_bytes(os.urandom(4), "little")
    counts = fuzz.run(fuzz.make_folder(tmp_path, target), target, seed, count=100, vouch=True)
    assert not any(counts[k] for k in FAILURES), (seed, counts)


def test_the_harness_sees_a_silent_load(tmp_path):
    # Without its manifest a checkpoint's flipped weight bit is undetectable by design; the native target still
    # counts model.safetensors as covered, so the harness must report those loads as silent.
    step = fuzz.make_folder(tmp_path, "native")
    (step / "manifest.json").unlink()
    counts = fuzz.run(step, "native", seed=3, count=40)
    assert counts["silent"], counts


def test_the_harness_tells_clear_errors_and_lost_text(tmp_path):
    # an error must name its file to count as clear; a tokenizer that drops what it encodes is counted as lossy
    folder = fuzz.make_folder(tmp_path, "pairs")
    assert fuzz.names_the_file(ValueError(f"{folder / fuzz.PAIRS_FILE}:3: invalid JSON"), folder, "pairs")
    assert not fuzz.names_the_file(ValueError("'utf-8' codec can't encode character"), folder, "pairs")

    class Dropping:
        vocab_size = 3

        def encode(self, text, allow_special=False):
            return [1]

        def decode(self, ids):
            return "x"

    with pytest.raises(fuzz.Lossy):
        fuzz.check_round_trip(Dropping())
