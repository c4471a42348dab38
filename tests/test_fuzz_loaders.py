"""A fast slice of the loaders' mutation fuzzing (tests/fuzz_loaders.py runs thousands): no crash, no hang, and no
silent load of bytes a sha256 list covers."""
import os

import pytest

import fuzz_loaders as fuzz


@pytest.mark.parametrize("target", fuzz.TARGETS)
def test_mutated_folders_are_refused_without_crash_or_hang(tmp_path, target):
    seed = int.from_bytes(os.urandom(4), "little")  # fresh cases each run; the seed is in the failure message
    counts = fuzz.run(fuzz.make_folder(tmp_path, target), target, seed, count=100)
    assert not counts["crashes"] and not counts["hangs"] and not counts["silent"], (seed, counts)
    assert counts["errors"] + counts["loaded"] + counts["unchanged"] == 100, counts
    assert counts["errors"] > 40, counts  # the mutations do reach the loaders


@pytest.mark.parametrize("target", fuzz.TARGETS)
def test_parsers_behind_the_digest_check_survive_mutations(tmp_path, target):
    # the digests rewritten to vouch for each mutated file: the safetensors, JSON, tokenizer and shard parsers see it
    seed = int.from_bytes(os.urandom(4), "little")
    counts = fuzz.run(fuzz.make_folder(tmp_path, target), target, seed, count=100, vouch=True)
    assert not counts["crashes"] and not counts["hangs"], (seed, counts)


def test_the_harness_sees_a_silent_load(tmp_path):
    # Without its manifest a checkpoint's flipped weight bit is undetectable by design; the native target still
    # counts model.safetensors as covered, so the harness must report those loads as silent.
    step = fuzz.make_folder(tmp_path, "native")
    (step / "manifest.json").unlink()
    counts = fuzz.run(step, "native", seed=3, count=40)
    assert counts["silent"], counts
