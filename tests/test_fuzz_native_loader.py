"""A fast slice of the C++ loader's mutation fuzzing (tests/fuzz_native_loader.py runs thousands): no crash, no hang,
and no silent load of changed checkpoint bytes."""
import os

import fuzz_native_loader as fuzz


def test_mutated_checkpoints_are_refused_without_crash_or_hang(tmp_path):
    seed = int.from_bytes(os.urandom(4), "little")  # fresh cases each run; the seed is in the failure message
    counts = fuzz.run(fuzz.make_checkpoint(tmp_path), seed, count=150)
    assert not counts["crashes"] and not counts["hangs"] and not counts["silent"], (seed, counts)
    assert counts["errors"] + counts["loaded"] + counts["unchanged"] == 150, counts


def test_the_harness_sees_a_silent_load(tmp_path):
    # Without a manifest a flipped weight bit is not detectable by design: the harness must report it as silent.
    step = fuzz.make_checkpoint(tmp_path)
    (step / "manifest.json").unlink()
    counts = fuzz.run(step, seed=3, count=40, files=("model.safetensors",))
    assert counts["silent"], counts
