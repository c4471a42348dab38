"""The include graph of csrc/ has no back edge: each file includes only files of its own layer or of layers below.

Layers, bottom-up (ARCHITECTURE.md): the public headers; the backend contract and plain dtype conversion; the
runtime services (CUDA memory/streams, CPU threads); the tensor; the kernels of every backend; the op dispatchers; the
C++ model; the Python bindings, which may see only the public headers (CMake gives them no other include path).
"""
import re
from pathlib import Path

import pytest

CSRC = Path(__file__).resolve().parents[1] / "csrc"

# (layer rank, name, path prefixes relative to csrc/); the first matching prefix wins, so specific files go first.
LAYERS = [
    (0, "public API", ["include/gptx/"]),
    (1, "contract", ["backend/", "core/dtype_convert."]),
    (2, "runtime", ["cuda/runtime.", "cuda/common.cuh", "cuda/convert.cu", "cuda/device.cu", "cuda/no_cuda.cc",
                    "cpu/threads."]),
    (3, "tensor", ["core/"]),
    (4, "kernels", ["cpu/", "ref/", "cuda/"]),
    (5, "ops", ["ops/"]),
    (6, "model", ["model/"]),
    (7, "bindings", ["python/"]),
]
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def layer_of(rel: str):
    for rank, name, prefixes in LAYERS:
        if any(rel.startswith(p) for p in prefixes):
            return rank, name
    raise AssertionError(f"csrc/{rel} belongs to no layer: add it to LAYERS in {Path(__file__).name}")


def resolve(src: Path, inc: str):
    """The file an #include "..." names: next to the including file, or under csrc/ or csrc/include/."""
    for base in (src.parent, CSRC, CSRC / "include"):
        p = (base / inc).resolve()
        if p.is_file():
            return p
    return None


def sources():
    return sorted(p for p in CSRC.rglob("*") if p.suffix in {".h", ".cc", ".cu", ".cuh"})


def test_every_source_has_a_layer():
    for p in sources():
        layer_of(p.relative_to(CSRC).as_posix())


def test_no_include_goes_up_a_layer():
    back_edges, unresolved = [], []
    for src in sources():
        rel = src.relative_to(CSRC).as_posix()
        rank, name = layer_of(rel)
        for inc in INCLUDE.findall(src.read_text()):
            target = resolve(src, inc)
            if target is None:
                unresolved.append(f"{rel}: #include \"{inc}\"")
                continue
            trel = target.relative_to(CSRC).as_posix()
            trank, tname = layer_of(trel)
            ok = trank <= rank
            if name == "bindings":  # the bindings see the public API and their own folder only
                ok = tname in ("public API", "bindings")
            if not ok:
                back_edges.append(f"{rel} ({name}) -> {trel} ({tname})")
    assert not unresolved, "includes that name no file:\n" + "\n".join(unresolved)
    assert not back_edges, "includes that go up a layer:\n" + "\n".join(back_edges)


@pytest.mark.parametrize("inc,expect", [("core/tensor.cc", 3), ("cuda/runtime.h", 2), ("cuda/matmul.cu", 4)])
def test_layer_rules_place_files_as_documented(inc, expect):
    assert layer_of(inc)[0] == expect
