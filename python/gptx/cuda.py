"""CUDA devices: availability, synchronisation, streams and the caching allocator's statistics.

Importing gptx never needs a GPU or a driver: without one, is_available() is False and nothing else changes.
Tensors move with `t.to("cuda")` / `t.to("cpu")`; every op runs on the device of its arguments.
"""
from __future__ import annotations

import contextlib

from gptx import _core


def is_built() -> bool:
    """Whether this build of gptx contains the CUDA backend."""
    return bool(_core.cuda_built())


def device_count() -> int:
    """CUDA devices visible to this process (0 without a driver, a GPU or a CUDA build)."""
    return int(_core.cuda_device_count()) if is_built() else 0


def is_available() -> bool:
    return device_count() > 0


def _index(device) -> int:
    if device is None:
        index = 0
    elif isinstance(device, int):
        index = device
    else:
        text = str(device)
        if text == "cuda":
            index = 0
        elif text.startswith("cuda:") and text[5:].isdigit():
            index = int(text[5:])
        else:
            raise ValueError(f"gptx.cuda: not a CUDA device: {device!r} (expected 'cuda', 'cuda:N' or N)")
    if not 0 <= index < device_count():
        raise RuntimeError(f"gptx.cuda: device cuda:{index} is not available ({device_count()} visible)")
    return index


def synchronize(device=None) -> None:
    """Wait for all work queued on the device; raises if a kernel failed asynchronously."""
    _core.cuda_synchronize(_index(device))


def get_device_properties(device=None) -> dict:
    """name, capability (major, minor), multiprocessors, total_memory (bytes)."""
    return dict(_core.cuda_device_properties(_index(device)))


def get_device_name(device=None) -> str:
    return get_device_properties(device)["name"]


# ------------------------------------------------------------------------------------------------ memory
def memory_allocated(device=None) -> int:
    """Bytes held by live tensors on the device (rounded up to the allocator's block sizes)."""
    return int(_core.cuda_memory_stats(_index(device))["allocated"])


def memory_reserved(device=None) -> int:
    """Bytes the caching allocator holds from the driver: live tensors plus cached free blocks."""
    return int(_core.cuda_memory_stats(_index(device))["reserved"])


def max_memory_allocated(device=None) -> int:
    return int(_core.cuda_memory_stats(_index(device))["peak_allocated"])


def reset_peak_memory_stats(device=None) -> None:
    _core.cuda_reset_peak(_index(device))


def empty_cache(device=None) -> None:
    """Give cached free blocks back to the driver (after waiting for queued work)."""
    _core.cuda_empty_cache(_index(device))


# ------------------------------------------------------------------------------------------------ streams
class Stream:
    """A CUDA stream of one device. Use it with `with gptx.cuda.stream(s):` to queue gptx work on it.

    Memory allocated while a stream is current is cached for that stream; a tensor made on one stream and used on
    another must stay alive until the other stream's work is done (synchronize first).
    """

    def __init__(self, device=None):
        self.device = _index(device)
        self.handle = int(_core.cuda_stream_create(self.device))

    def synchronize(self) -> None:
        _core.cuda_stream_synchronize(self.device, self.handle)

    def wait_stream(self, other: int) -> None:
        """Work queued on this stream from now on starts after the work queued so far on stream handle `other`
        (an event; the host does not wait)."""
        _core.cuda_stream_wait_stream(self.device, self.handle, int(other))

    def close(self) -> None:
        if self.handle:
            _core.cuda_stream_destroy(self.device, self.handle)
            self.handle = 0

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: the runtime may be gone already
            pass

    def __repr__(self) -> str:
        return f"gptx.cuda.Stream(device=cuda:{self.device}, handle={self.handle:#x})"


def current_stream(device=None) -> int:
    """The handle of the stream gptx queues work on for the device in this thread (0: the legacy default stream)."""
    return int(_core.cuda_current_stream(_index(device)))


@contextlib.contextmanager
def stream(s: Stream):
    """Queue gptx work of this thread on stream `s` inside the block; the previous stream is restored after."""
    before = _core.cuda_current_stream(s.device)
    _core.cuda_set_stream(s.device, s.handle)
    try:
        yield s
    finally:
        _core.cuda_set_stream(s.device, before)
