"""`gptx bench` runs the gptx-bench program shipped in the wheel and passes the flags through."""
import json
import subprocess
import sys

import pytest

import gptx
from gptx.cli import bench


def bench_or_skip() -> str:
    try:
        return bench.find_bench()
    except FileNotFoundError as e:
        pytest.skip(str(e))


def test_flags_pass_through():
    from gptx.__main__ import build_parser

    args = build_parser().parse_args(["bench", "--op", "matmul_forward", "--threads", "2", "--json", "o.json",
                                      "--quick", "--shape", "64x64x64", "--device", "cuda:1"])
    assert bench.bench_argv(args) == ["--device", "cuda:1", "--op", "matmul_forward", "--shape", "64x64x64",
                                      "--threads", "2", "--json", "o.json", "--quick"]


def test_bench_runs(tmp_path):
    bench_or_skip()
    out = tmp_path / "out.json"
    r = subprocess.run([sys.executable, "-m", "gptx", "bench", "--op", "matmul_forward", "--threads", "2", "--quick",
                        "--probe-mib", "16", "--repeats", "1", "--json", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "matmul_forward" in json.dumps(json.loads(out.read_text()))


@pytest.mark.skipif(gptx.cuda.is_available(), reason="a CUDA device is present: --device cuda runs")
@pytest.mark.parametrize("via_cli", [False, True], ids=["gptx-bench", "gptx-bench-via-cli"])
def test_device_cuda_without_gpu_fails_at_once(via_cli):
    """Without CUDA in the build or a GPU in the machine: exit code 2 and one line saying why, before any probe."""
    exe = bench_or_skip()
    cmd = [sys.executable, "-m", "gptx", "bench"] if via_cli else [exe]
    r = subprocess.run(cmd + ["--device", "cuda", "--op", "matmul_forward"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gptx-bench: --device cuda: "), r.stderr
    assert "CUDA" in lines[0]


def test_unknown_device_is_a_usage_error():
    r = subprocess.run([bench_or_skip(), "--device", "tpu"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "unknown device 'tpu'" in r.stderr, r.stderr


@pytest.mark.gpu
@pytest.mark.skipif(not gptx.cuda.is_available(), reason="no CUDA device")
def test_bench_on_cuda(tmp_path):
    """On a GPU: the device rows validate against the CPU reference and report the device, with no CPU peak."""
    out = tmp_path / "out.json"
    r = subprocess.run([bench_or_skip(), "--device", "cuda", "--op", "matmul_forward/c_attn,softmax_forward,adamw_step",
                        "--quick", "--repeats", "3", "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    result = json.loads(out.read_text())
    assert result["machine"]["device"] == "cuda:0" and result["machine"]["peak_gflops"] is None
    assert [op["validated"] for op in result["ops"]] == [True, True, True]
