"""Where the installed wheel keeps the C++ package: headers, libgptx.so, the CMake config and gptx-bench."""
import os

_PKG = os.path.dirname(os.path.abspath(__file__))


def _existing(path: str, what: str) -> str:
    # A source checkout on PYTHONPATH has no installed C++ package; say so rather than return a dead path.
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"gptx {what} not found at {path}: it ships only with an installed gptx (pip install . or a wheel)")
    return path


def get_include() -> str:
    """Directory to add to the include path: it holds gptx/gptx.h and the other public headers."""
    return _existing(os.path.join(_PKG, "include"), "C++ headers")


def get_cmake_dir() -> str:
    """Directory holding gptxConfig.cmake: pass it as gptx_DIR (or on CMAKE_PREFIX_PATH) to find_package(gptx)."""
    return _existing(os.path.join(_PKG, "lib", "cmake", "gptx"), "CMake package")


def get_lib_dir() -> str:
    return os.path.join(_PKG, "lib")


def get_bench_path() -> str:
    """Path of the gptx-bench program shipped in the wheel (may not exist: see gptx.cli.bench)."""
    return os.path.join(_PKG, "bin", "gptx-bench")
