"""Trainer callbacks: objects called with each log record (Trainer(..., callbacks=[...])).

A record is a dict: a training step's {"step", "loss", "lr", "grad_norm", "clip", "tokens_per_s", "step_s",
"elapsed_s"} or an evaluation's {"step", "val_loss"}. Any callable taking one works; a `flush()` method, when
present, is called when Trainer.fit returns.
"""
from __future__ import annotations

import math
import os

# record key -> TensorBoard tag (the same names as log.jsonl, grouped as TensorBoard shows them)
TAGS = {"loss": "train/loss", "val_loss": "val/loss", "lr": "train/lr", "grad_norm": "train/grad_norm",
        "tokens_per_s": "perf/tokens_per_s", "step_s": "perf/step_s"}


def _summary_writer():
    """tensorboardX's SummaryWriter, else torch's (both write the same event files); an ImportError says which to
    install."""
    try:
        from tensorboardX import SummaryWriter
        return SummaryWriter
    except ImportError:
        pass
    try:
        from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package as well
        return SummaryWriter
    except ImportError:
        raise ImportError("gptx.callbacks.TensorBoard needs a TensorBoard writer: pip install tensorboardX") from None


class TensorBoard:
    """Writes each record's numbers as TensorBoard scalars at its step, into log_dir (view with `tensorboard
    --logdir`)."""

    def __init__(self, log_dir, flush_secs: int = 30):
        self._make = _summary_writer()
        self.log_dir = os.fspath(log_dir)
        self.flush_secs = flush_secs
        self._writer = None

    def __call__(self, record: dict) -> None:
        if self._writer is None:
            self._writer = self._make(self.log_dir, flush_secs=self.flush_secs)
        step = int(record["step"])
        for key, tag in TAGS.items():
            value = record.get(key)
            if isinstance(value, (int, float)) and math.isfinite(value):
                self._writer.add_scalar(tag, float(value), step)

    def flush(self) -> None:
        # The writers queue events for a thread of their own and their flush() does not wait for that queue, so the
        # last records could still be missing when fit() returns; close() drains it. A later record opens a new
        # event file in the same folder, which TensorBoard reads as one run.
        self.close()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
