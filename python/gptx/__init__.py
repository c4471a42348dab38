"""gptx: train, fine-tune and sample GPT-style language models on native CPU kernels."""
import os as _os

# Idle OpenMP workers spin for a long time by default (GOMP_SPINCOUNT 300000): on a busy or oversubscribed machine
# that made 2-thread training steps ~10x slower than 1 thread (6.0 s vs 0.44-0.56 s per step, measured here). A
# short spin keeps back-to-back kernels fast and yields the core soon after. Only set when the user chose nothing.
if "OMP_WAIT_POLICY" not in _os.environ and "GOMP_SPINCOUNT" not in _os.environ:
    _os.environ["GOMP_SPINCOUNT"] = "10000"

from gptx import _core  # noqa: E402
from gptx._core import Tensor, from_dlpack, from_numpy  # noqa: E402
from gptx import ops, data, cuda  # noqa: E402
from gptx._info import info, get_num_threads, set_num_threads  # noqa: E402
from gptx.model import GPT, GPTConfig  # noqa: E402
from gptx.tokenizer import Tokenizer  # noqa: E402
from gptx.data import TokenDataset, FinetuneDataset, load_shards, train_val_split, shakespeare_text  # noqa: E402
from gptx.optim import AdamW, lr_schedule, clip_grad_norm  # noqa: E402
from gptx.trainer import TrainConfig, Trainer  # noqa: E402
from gptx.checkpoint import Checkpoint, save_checkpoint, load_checkpoint  # noqa: E402
from gptx.loading import load  # noqa: E402
from gptx._paths import get_include, get_cmake_dir  # noqa: E402

__version__ = _core.version()

__all__ = [
    "Tensor",
    "from_dlpack",
    "from_numpy",
    "ops",
    "data",
    "cuda",
    "info",
    "get_num_threads",
    "set_num_threads",
    "GPT",
    "GPTConfig",
    "Tokenizer",
    "TokenDataset",
    "FinetuneDataset",
    "load_shards",
    "train_val_split",
    "shakespeare_text",
    "AdamW",
    "lr_schedule",
    "clip_grad_norm",
    "TrainConfig",
    "Trainer",
    "Checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "load",
    "get_include",
    "get_cmake_dir",
    "__version__",
]
