"""Runtime facts and settings: version, CPU kernel path, threads, CUDA build and devices."""
from gptx import _core
from gptx._checks import integer


def get_num_threads() -> int:
    """Threads the CPU kernels use."""
    return _core.get_num_threads()


def set_num_threads(n: int) -> None:
    """Set the threads the CPU kernels use (n >= 1)."""
    n = integer("set_num_threads", "n", n)  # 1.5 or "3" are refused, not truncated
    if not -2**31 <= n < 2**31:  # past what the native int holds: the native check's message
        raise ValueError(f"set_num_threads: argument 'n' must be in [1, 1024], got {n}")
    _core.set_num_threads(n)


def info() -> dict:
    """What this gptx build is and what it runs on."""
    return {
        "version": _core.version(),
        "cpu_isa": _core.cpu_isa(),
        "cpu_isas_available": list(_core.available_cpu_isas()),
        "threads": _core.get_num_threads(),
        "cuda_built": bool(_core.cuda_built()),
        "cuda_devices": int(_core.cuda_device_count()),
        "cuda_device_names": [
            _core.cuda_device_properties(i)["name"] for i in range(int(_core.cuda_device_count()))
        ],
    }


def format_info(d: dict) -> str:
    lines = [f"gptx {d['version']}"]
    lines.append(f"  cpu kernels : {d['cpu_isa']} (available: {', '.join(d['cpu_isas_available'])})")
    lines.append(f"  threads     : {d['threads']}")
    cuda = "built" if d["cuda_built"] else "not built"
    names = f" ({', '.join(d['cuda_device_names'])})" if d.get("cuda_device_names") else ""
    lines.append(f"  cuda        : {cuda}, {d['cuda_devices']} device(s){names}")
    return "\n".join(lines)
