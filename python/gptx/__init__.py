"""gptx: train, fine-tune and sample GPT-style language models on native CPU kernels."""
from gptx import _core
from gptx._core import Tensor, from_dlpack, from_numpy
from gptx import ops
from gptx._info import info, get_num_threads, set_num_threads

__version__ = _core.version()

__all__ = [
    "Tensor",
    "from_dlpack",
    "from_numpy",
    "ops",
    "info",
    "get_num_threads",
    "set_num_threads",
    "__version__",
]
