"""`gptx bench` runs the gptx-bench program shipped in the wheel and passes the flags through."""
import json
import subprocess
import sys

import pytest

from gptx.cli import bench


def test_flags_pass_through():
    from gptx.__main__ import build_parser

    args = build_parser().parse_args(["bench", "--op", "matmul_forward", "--threads", "2", "--json", "o.json",
                                      "--quick", "--shape", "64x64x64"])
    assert bench.bench_argv(args) == ["--op", "matmul_forward", "--shape", "64x64x64", "--threads", "2",
                                      "--json", "o.json", "--quick"]


def test_bench_runs(tmp_path):
    try:
        bench.find_bench()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    out = tmp_path / "out.json"
    r = subprocess.run([sys.executable, "-m", "gptx", "bench", "--op", "matmul_forward", "--threads", "2", "--quick",
                        "--probe-mib", "16", "--repeats", "1", "--json", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "matmul_forward" in json.dumps(json.loads(out.read_text()))
