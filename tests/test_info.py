"""gptx.info() and `python -m gptx info [--json]`: keys, types, version agreement; thread-count settings."""
import json
import os
import re
import subprocess
import sys

import pytest

import gptx
from gptx import _core

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEYS = {"version", "cpu_isa", "cpu_isas_available", "threads", "cuda_built", "cuda_devices", "cuda_device_names"}


def _pyproject_version():
    path = os.path.join(ROOT, "pyproject.toml")
    if not os.path.exists(path):
        pytest.skip("no pyproject.toml next to the tests (installed package)")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        m = re.search(r'^\[project\][^\[]*?^version\s*=\s*"([^"]+)"', text, re.M | re.S)
        assert m, "no [project] version in pyproject.toml"
        return m.group(1)
    return tomllib.loads(text)["project"]["version"]


def _env():
    env = dict(os.environ)
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(gptx.__file__)))
    env["PYTHONPATH"] = pkg_parent + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("GPTX_FORCE_ISA", None)
    return env


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "gptx", *args], capture_output=True, text=True, timeout=120,
                          env=env or _env())


def test_info_keys_and_types():
    d = gptx.info()
    assert set(d) == KEYS
    assert isinstance(d["version"], str) and re.fullmatch(r"\d+\.\d+\.\d+\S*", d["version"])
    assert isinstance(d["cpu_isa"], str)
    assert isinstance(d["cpu_isas_available"], list) and all(isinstance(s, str) for s in d["cpu_isas_available"])
    assert d["cpu_isa"] in d["cpu_isas_available"]
    assert {"generic", "reference"} <= set(d["cpu_isas_available"])
    assert set(d["cpu_isas_available"]) <= {"generic", "avx2", "avx512", "avx512_bf16", "reference"}
    assert isinstance(d["threads"], int) and not isinstance(d["threads"], bool) and d["threads"] >= 1
    assert isinstance(d["cuda_built"], bool)
    assert isinstance(d["cuda_devices"], int) and not isinstance(d["cuda_devices"], bool) and d["cuda_devices"] >= 0
    if not d["cuda_built"]:
        assert d["cuda_devices"] == 0, "a build without CUDA cannot see CUDA devices"
    json.dumps(d)  # plain JSON-serialisable values


def test_version_agrees():
    v = gptx.info()["version"]
    assert v == gptx.__version__ == _core.version()
    assert v == _pyproject_version()


def test_info_is_live():
    before = gptx.get_num_threads()
    try:
        gptx.set_num_threads(3)
        assert gptx.info()["threads"] == 3
    finally:
        gptx.set_num_threads(before)
    assert gptx.info()["cpu_isa"] == _core.cpu_isa()


def test_cli_info_text():
    r = _cli("info")
    assert r.returncode == 0, r.stderr
    d = gptx.info()
    assert d["version"] in r.stdout
    assert re.search(rf"\b{d['cpu_isa']}\b", r.stdout), r.stdout
    assert "thread" in r.stdout.lower() and "cuda" in r.stdout.lower()


def test_cli_info_json():
    env = _env()
    env["OMP_NUM_THREADS"] = "2"
    r = _cli("info", "--json", env=env)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    here = gptx.info()
    assert set(d) == KEYS
    for k in ("version", "cpu_isas_available", "cuda_built", "cuda_devices"):
        assert d[k] == here[k], (k, d[k], here[k])
    assert d["cpu_isa"] == _best(here), "without GPTX_FORCE_ISA the best available path is used"
    assert d["threads"] == 2, "the CLI must report the OpenMP default (OMP_NUM_THREADS)"
    env["GPTX_FORCE_ISA"] = "generic"
    d = json.loads(_cli("info", "--json", env=env).stdout)
    assert d["cpu_isa"] == "generic"


def _best(info):
    avail = info["cpu_isas_available"]
    for isa in ("avx512_bf16", "avx512", "avx2"):
        if isa in avail:
            return isa
    return "generic"


def test_cli_without_command():
    r = _cli()
    assert r.returncode != 0
    assert "info" in r.stdout + r.stderr


def test_cli_unknown_command():
    r = _cli("frobnicate")
    assert r.returncode != 0 and "frobnicate" in r.stderr


def test_num_threads_round_trip():
    before = gptx.get_num_threads()
    try:
        for n in (1, 2, 5, 1):
            gptx.set_num_threads(n)
            assert gptx.get_num_threads() == n == _core.get_num_threads()
    finally:
        gptx.set_num_threads(before)
    assert gptx.get_num_threads() == before


@pytest.mark.parametrize("n", [0, -1, -(2**31)])
def test_set_num_threads_rejects_non_positive(n):
    before = gptx.get_num_threads()
    with pytest.raises(ValueError) as info:
        gptx.set_num_threads(n)
    assert "set_num_threads" in str(info.value) and "'n'" in str(info.value)
    assert gptx.get_num_threads() == before, "a rejected set_num_threads changed the setting"


def test_threads_setting_used_by_ops():
    """Ops still give the same (deterministic elementwise) result at every thread count set."""
    import numpy as np

    x = np.linspace(-5, 5, 4001, dtype=np.float32)
    before = gptx.get_num_threads()
    try:
        results = []
        for n in (1, 2, 3):
            gptx.set_num_threads(n)
            results.append(np.asarray(gptx.ops.gelu_forward(x)).copy())
    finally:
        gptx.set_num_threads(before)
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])
