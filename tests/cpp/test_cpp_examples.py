"""Builds and runs examples/cpp against the installed gptx C++ package (the CMake config shipped in the wheel)."""
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
HEADERS = ROOT / "csrc" / "include" / "gptx"


def _cmake_dir():
    # GPTX_CMAKE_DIR points the test at another install (e.g. `cmake --install --prefix P`: P/lib/cmake/gptx).
    if os.environ.get("GPTX_CMAKE_DIR"):
        return os.environ["GPTX_CMAKE_DIR"]
    r = subprocess.run([sys.executable, "-m", "gptx", "--cmake-dir"], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"no installed gptx CMake package (gptx imported from a source checkout?): {r.stderr.strip()}")
    return r.stdout.strip()


def _toolchain():
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not on PATH")
    cxx = os.environ.get("CXX") or next((c for c in ("c++", "g++", "clang++") if shutil.which(c)), None)
    if cxx is None or shutil.which(cxx.split()[0]) is None:
        pytest.skip("no C++ compiler (c++, g++, clang++ or $CXX) on PATH")
    return cxx


def _run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r.stdout


def _build(example, tmp_path):
    """Configures and builds examples/cpp/<example> against the installed package; returns its build folder."""
    cxx = _toolchain()
    cmake_dir = _cmake_dir()
    assert os.path.isfile(os.path.join(cmake_dir, "gptxConfig.cmake")), cmake_dir
    build = tmp_path / f"build-{example}"
    out = _run(["cmake", "-S", ROOT / "examples" / "cpp" / example, "-B", build, f"-Dgptx_DIR={cmake_dir}",
                f"-DCMAKE_CXX_COMPILER={cxx}", "-DCMAKE_BUILD_TYPE=Release"])
    assert "gptx 0." in out
    _run(["cmake", "--build", build, "-j2"])
    return build


def test_ops_example_builds_and_runs(tmp_path):
    out = _run([_build("ops", tmp_path) / "gptx_ops_example"])
    assert out.strip().endswith("OK"), out


def test_generate_example_matches_python_greedy(tmp_path):
    import numpy as np

    import gptx

    exe = _build("generate", tmp_path) / "gptx_generate"
    model = gptx.GPT(gptx.GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=32, vocab_size=70))
    # Larger weights than the init: spread-out logits, so argmax is not decided by rounding.
    rng = np.random.default_rng(0)
    model.load_state_dict({k: (rng.standard_normal(v.shape) * (1.0 if ".wte" in k or ".wpe" in k else 0.3))
                           .astype(np.float32) for k, v in model.state_dict().items()})
    step = gptx.save_checkpoint(tmp_path / "run", model)
    ids = [5, 9, 1]
    for _ in range(12):
        logits, _ = model.forward(np.array([ids]))
        ids.append(int(np.argmax(np.asarray(logits)[0, -1])))
    out = _run([exe, step, "12", "5", "9", "1"])
    assert [int(t) for t in out.split()] == ids
    # the run folder, as a save killed before its first latest.json leaves it: the newest verified step
    (tmp_path / "run" / "latest.json").unlink()
    assert [int(t) for t in _run([exe, tmp_path / "run", "12", "5", "9", "1"]).split()] == ids
    broken = tmp_path / "run" / "step-000009"  # a newer step folder that does not verify is passed over
    shutil.copytree(step, broken)
    (broken / "model.safetensors").write_bytes(b"")
    assert [int(t) for t in _run([exe, tmp_path / "run", "12", "5", "9", "1"]).split()] == ids


def test_public_headers_are_plain_cpp():
    """The C++ package must not drag in Python or pybind11: consumers are plain C++ programs."""
    for h in sorted(HEADERS.glob("*.h")):
        for inc in re.findall(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]', h.read_text(), re.M):
            assert "pybind11" not in inc and "Python.h" not in inc, f"{h.name} includes {inc}"
            assert inc.startswith("gptx/") or "/" not in inc, f"{h.name} includes a non-public header {inc}"


def test_installed_headers_match_source():
    try:
        import gptx

        inc = pathlib.Path(gptx.get_include())
    except FileNotFoundError as e:
        pytest.skip(str(e))
    assert sorted(p.name for p in (inc / "gptx").glob("*.h")) == sorted(p.name for p in HEADERS.glob("*.h"))
