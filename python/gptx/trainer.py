"""The training loop: gradient accumulation, clipping, scheduled AdamW, evaluation, logging, exact resume."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gptx import _core, ops
from gptx import distributed as _dist
from gptx._fileio import atomic_write_bytes
from gptx._host import host_copy
from gptx.checkpoint import clean_stale_temp, load_checkpoint, save_checkpoint
from gptx.model import IGNORE_INDEX
from gptx.distributed.data_parallel import DataParallel, check_same_job, resume_overrides
from gptx.distributed.zero import ZeroAdamW
from gptx.optim import AdamW, clip_coefficient, lr_schedule


@dataclass
class TrainConfig:
    """Everything that shapes a training run. `steps` is the TOTAL number of optimizer steps (also on resume)."""

    steps: int = 1000
    batch_size: int = 16           # sequences per micro-batch
    block_size: int = 128          # tokens per sequence
    grad_accum: int = 1            # micro-batches per optimizer step (tokens/step = batch * block * grad_accum)
    lr: float = 1e-3
    min_lr: float | None = None    # None: lr / 10, the cosine floor of the GPT-3 paper
    warmup: int = 100
    weight_decay: float = 0.1
    betas: tuple = (0.9, 0.95)
    eps: float = 1e-8
    grad_clip: float = 1.0         # max global gradient norm; 0 disables clipping
    eval_every: int = 100          # steps between validation losses; 0: only at the end
    eval_batches: int = 8
    ckpt_every: int = 0            # steps between checkpoints; 0: only at the end
    out_dir: str | None = None     # checkpoints, log.jsonl, loss.png; None: nothing is written
    seed: int = 0                  # seeds the batch sampler's RNG and the dropout masks
    log_every: int = 10            # steps between terminal log lines (log.jsonl gets every step)
    threads: int | None = None     # gptx.set_num_threads for the run; None keeps the current setting
    max_seconds: float | None = None  # wall-time cap: stop (and checkpoint) after this many seconds of training
    keep_checkpoints: int = 2      # checkpoints kept in out_dir; 0 keeps all
    progress: bool = True          # tqdm progress bar on stderr when it is a terminal (plain log lines otherwise)
    # Length of the warmup + cosine schedule; None: `steps`. A run extended on resume either keeps its original
    # schedule (steps beyond it run at the final learning rate) or stretches the cosine to the new total.
    schedule_steps: int | None = None
    zero: int = 0                  # 1: ZeRO-1, the optimizer state split over the ranks (with gptx.distributed)
    bucket_mb: float = 25.0        # gradients averaged over ranks in buckets of at least this many MB of whole blocks

    def __post_init__(self):
        self.betas = tuple(float(b) for b in self.betas)
        for name in ("steps", "batch_size", "block_size", "grad_accum"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):  # "3" or 1.5 would break the run later
                raise ValueError(f"TrainConfig.{name} must be an integer, got {v!r}")
            if int(getattr(self, name)) < 1 and not (name == "steps" and self.steps == 0):
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if isinstance(self.lr, (bool, str)) or not isinstance(self.lr, (int, float, np.number)) or \
                self.lr <= 0 or not math.isfinite(self.lr):
            raise ValueError(f"TrainConfig.lr must be a positive number, got {self.lr}")
        _check_fields(self)

    @property
    def schedule_length(self) -> int:
        return self.steps if self.schedule_steps is None else self.schedule_steps

    @property
    def final_lr(self) -> float:
        return self.lr / 10 if self.min_lr is None else self.min_lr

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


# Bounds of the other numbers ((low, inclusive?), None = no upper bound): a negative warmup or eval interval used to
# run with a silently different schedule, a NaN weight decay poisoned every parameter.
_INT_MIN = {"warmup": 0, "eval_every": 0, "eval_batches": 1, "ckpt_every": 0, "log_every": 0, "keep_checkpoints": 0,
            "seed": 0}
_FLOAT_MIN = {"weight_decay": 0.0, "grad_clip": 0.0}


def _check_fields(cfg: "TrainConfig") -> None:
    for name, low in _INT_MIN.items():
        v = getattr(cfg, name)
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
            raise ValueError(f"TrainConfig.{name} must be an integer >= {low}, got {v!r}")
    for name, low in _FLOAT_MIN.items():
        v = getattr(cfg, name)
        if not math.isfinite(v) or v < low:
            raise ValueError(f"TrainConfig.{name} must be a finite number >= {low}, got {v!r}")
    if cfg.min_lr is not None and (not math.isfinite(cfg.min_lr) or cfg.min_lr < 0):
        raise ValueError(f"TrainConfig.min_lr must be a finite number >= 0, got {cfg.min_lr!r}")
    if len(cfg.betas) != 2 or not all(0.0 <= b < 1.0 for b in cfg.betas):
        raise ValueError(f"TrainConfig.betas must be two numbers in [0, 1), got {cfg.betas!r}")
    if not (math.isfinite(cfg.eps) and cfg.eps > 0):
        raise ValueError(f"TrainConfig.eps must be a positive number, got {cfg.eps!r}")
    if cfg.threads is not None and (isinstance(cfg.threads, bool) or int(cfg.threads) < 1):
        raise ValueError(f"TrainConfig.threads must be None or >= 1, got {cfg.threads!r}")
    if cfg.schedule_steps is not None and (isinstance(cfg.schedule_steps, bool) or
                                           not isinstance(cfg.schedule_steps, (int, np.integer)) or
                                           cfg.schedule_steps < 0):
        raise ValueError(f"TrainConfig.schedule_steps must be None or an integer >= 0, got {cfg.schedule_steps!r}")
    if cfg.max_seconds is not None and not (cfg.max_seconds >= 0):  # NaN fails too
        raise ValueError(f"TrainConfig.max_seconds must be None or a number >= 0, got {cfg.max_seconds!r}")
    if cfg.zero not in (0, 1) or isinstance(cfg.zero, bool):
        raise ValueError(f"TrainConfig.zero must be 0 or 1 (ZeRO-1), got {cfg.zero!r}")
    if not (math.isfinite(cfg.bucket_mb) and cfg.bucket_mb > 0):
        raise ValueError(f"TrainConfig.bucket_mb must be a positive number, got {cfg.bucket_mb!r}")


# The run-time estimate is printed when the rest of the run takes at least this long, and after the first step
# already when that step took this long (a GPT-2-sized model on a CPU).
ESTIMATE_MIN_S = 60.0
ESTIMATE_FIRST_STEP_S = 5.0


class _StepAbandoned(BaseException):
    """Raised by the first Ctrl-C inside the part of a step that can be given up (BaseException: no `except
    Exception` in a user's data loader swallows it)."""


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _data_state(data):
    return data.state_dict() if data is not None and hasattr(data, "state_dict") else None


def _load_data_state(data, state, what):
    if state is None or data is None:
        return
    if not hasattr(data, "load_state_dict"):
        raise ValueError(f"the checkpoint holds a {what} data cursor but the {what} data cannot restore one")
    data.load_state_dict(state)


def _set_training(model, mode: bool) -> bool:
    """Put a model in training (dropout) or eval mode where it has modes; returns the mode it was in."""
    was = bool(getattr(model, "training", False))
    if hasattr(model, "train"):
        model.train(mode)
    return was


class Trainer:
    """Trains `model` (gptx.model.GPT or anything with its interface: forward_loss, backward, zero_grad,
    named_parameters, grads, and flat_buffers where it has them) on batches from train_data.get_batch.

    After gptx.distributed.init() it trains data-parallel: every rank runs the same Trainer, each takes its
    batch_size rows of the global batch of world_size * batch_size rows (the batch one process with that micro-batch
    would draw), gradients are summed over the ranks during backward, and only rank 0 prints, logs and writes."""

    def __init__(self, model, config: TrainConfig, train_data, val_data=None, tokenizer=None, extra_state=None,
                 callbacks=()):
        self.model = model
        # Each is called with every log record (a dict: a training step's, or {"step", "val_loss"}), e.g.
        # gptx.callbacks.TensorBoard(dir); log.jsonl is written whether or not there are any.
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            if not callable(cb):
                raise TypeError(f"Trainer: callbacks must be callables taking a log record, got {cb!r}")
        self.cfg = config
        self.train_data = train_data
        self.val_data = val_data
        self.tokenizer = tokenizer
        self.extra_state = dict(extra_state or {})  # JSON-able, stored in each checkpoint (e.g. the CLI's data spec)
        if config.block_size > model.config.block_size:
            raise ValueError(f"block_size {config.block_size} exceeds the model's block_size "
                             f"{model.config.block_size}")
        flat = getattr(model, "flat_buffers", None)  # GPT: one AdamW call over the whole parameter buffer
        self.dp = DataParallel(model, config) if _dist.is_initialized() else None
        if config.zero and self.dp is None:
            raise ValueError("TrainConfig.zero=1 shards the optimizer over ranks: call gptx.distributed.init() first "
                             "(or launch with `gptx train --nproc N` / mpiexec)")
        hp = dict(lr=config.lr, betas=config.betas, eps=config.eps, weight_decay=config.weight_decay)
        if self.dp is not None and config.zero:
            self.opt = ZeroAdamW(model.named_parameters(), model.grads, flat(), **hp)
        else:
            self.opt = AdamW(model.named_parameters(), model.grads, flat=flat() if flat is not None else None, **hp)
        self.world, self.rank = _dist.world_size(), _dist.rank()
        self.main = self.rank == 0
        self.rng = np.random.default_rng(config.seed)
        self.step = 0
        self.val_loss = None
        self.last_loss = None
        self._saved_step = None
        self._evaluated_step = None
        self._interrupted = False
        self._abandonable = False
        self._bar = None
        self._stat_views = None
        self._plot_notice = False
        if self.dp is not None:
            self.dp.attach(self)

    # ---- one step -------------------------------------------------------------------------------------------
    def _stats(self):
        """Views of one (grad_accum + 1,) float32 tensor on the model's device: the micro-batch losses, then the
        gradient norm. The kernels write them; train_step reads them back once, after the update."""
        G = self.cfg.grad_accum
        if self._stat_views is None or len(self._stat_views[1]) != G + 1:
            buf = _core.Tensor.zeros([G + 1], "float32", getattr(self.model, "device", "cpu"))
            self._stat_views = (buf, [buf[i] for i in range(G + 1)])  # 0-d views
        return self._stat_views

    def train_step(self) -> dict:
        """One optimizer step over grad_accum micro-batches; returns its log record."""
        cfg, model = self.cfg, self.model
        t0 = time.perf_counter()
        lr = lr_schedule(self.step, cfg.schedule_length, cfg.lr, cfg.warmup, cfg.final_lr)
        model.zero_grad()
        G, dp = cfg.grad_accum, self.dp
        stats, slots = self._stats()
        tokens, empty = 0, False
        # Until the update, a step changes only the gradients, the batch RNG and the data cursor: an interrupt in
        # that part abandons the step (those two are put back) instead of waiting for a long step to end. Not with
        # several ranks: the others would wait for this one in the gradient sums; they all stop after the step.
        rng_before, data_before = self.rng.bit_generator.state, _data_state(self.train_data)
        _set_training(model, True)
        self._abandonable = dp is None
        counts = np.zeros((2, G))  # data parallel: targets counted in this rank's rows, and in the global batch
        try:
            for i in range(G):
                x, y = self._batch()
                if hasattr(model, "dropout_step"):
                    # The masks of micro-batch i of step s are keyed by (seed, s * G + i) (and the rank, whose rows
                    # differ): a function of the step alone, so a resumed run draws the masks the uninterrupted one
                    # would have.
                    model.dropout_seed = int(cfg.seed)
                    model.dropout_step = (self.step * G + i) * self.world + self.rank
                model.forward_loss(x, y, out=slots[i])  # written on the device, not read here
                if dp is None:
                    model.backward()  # adds into model.grads: the sum of the micro-batch mean gradients
                    empty = empty or not np.any(np.asarray(y) != IGNORE_INDEX)
                else:
                    # Each rank averages over the global micro-batch's count / N, so the sum over ranks divided
                    # by N is the mean over the whole global micro-batch whatever each rank's rows hold. On the
                    # last micro-batch each finished bucket of gradients starts its sum over the ranks at once.
                    counts[0, i] = np.count_nonzero(np.asarray(y) != IGNORE_INDEX)
                    counts[1, i] = dp.sum(counts[0, i:i + 1])[0]
                    empty = empty or counts[1, i] == 0
                    model.backward(dp.reducer.layer_done if i == G - 1 else None,
                                   denominator=max(counts[1, i], 1) / self.world)
                tokens += x.size * self.world
        except _StepAbandoned:
            self.rng.bit_generator.state = rng_before
            _load_data_state(self.train_data, data_before, "training")
            model.zero_grad()
            raise
        finally:
            self._abandonable = False
        if dp is not None:
            dp.reducer.finish()
        if empty:  # known on the host: that micro-batch's mean loss is NaN (the mean of nothing); no update
            raise FloatingPointError(f"step {self.step + 1}: loss nan: a micro-batch has every target ignored")
        # The accumulated gradient is a sum of G means; 1/G makes it the mean. The norm of the one flat gradient
        # buffer (padding included, which stays zero) is one reduction written next to the losses; AdamW's kernel
        # takes it and applies 1/G and the clipping factor itself (grad_scale, norm_scale), so the gradients are never
        # rescaled in place and the host never waits between the backward pass and the update. A non-finite norm
        # makes the kernel skip the update.
        # Data parallel: the buffer (or under ZeRO-1 this rank's shard) holds the sum over the ranks, so 1/(G N)
        # makes it the mean, and the norm of the summed buffer is the global norm by construction.
        scale = 1.0 / (G * self.world)
        if dp is not None and cfg.zero:
            dp.shard_norm(self.opt.grad_shard, slots[G])
        else:
            ops.global_norm(self._grad_buffers(), out=slots[G])
        self.opt.step(lr=lr, grad_scale=scale, norm=slots[G], max_norm=cfg.grad_clip, norm_scale=scale)
        values = host_copy(stats)  # the step's one read from the device
        if dp is not None:  # the global micro-batches' mean losses: this rank's weighted by its share of targets
            values[:G] = dp.weighted_mean(values[:G], counts[0], counts[1])
        loss = float(np.mean(values[:G], dtype=np.float64))
        norm = float(values[G]) * scale
        if not (math.isfinite(loss) and math.isfinite(norm)):
            # The kernel skipped the update (non-finite norm; a non-finite loss comes with non-finite gradients).
            self.opt.step_count -= 1
            raise FloatingPointError(f"step {self.step + 1}: loss {loss}, gradient norm {norm}: training diverged "
                                     f"(try a lower learning rate)")
        clip = clip_coefficient(norm, cfg.grad_clip) if cfg.grad_clip > 0 else 1.0
        self.step += 1
        self.last_loss = loss
        dt = time.perf_counter() - t0
        rec = {"step": self.step, "loss": loss, "lr": lr, "grad_norm": norm, "clip": clip,
               "tokens_per_s": tokens / max(dt, 1e-9), "step_s": dt}
        if dp is not None:
            rec["comm_s"] = dp.take_comm_s()
        return rec

    def _batch(self):
        """This rank's micro-batch: rows [rank B, (rank + 1) B) of the global batch of world_size * B rows, drawn
        the same way on every rank (one RNG, one data cursor), so the global batches never depend on N."""
        return self._rows(*self.train_data.get_batch(self.cfg.batch_size * self.world, self.cfg.block_size, self.rng))

    def _rows(self, x, y):
        if self.world == 1:
            return x, y
        rows = slice(self.rank * self.cfg.batch_size, (self.rank + 1) * self.cfg.batch_size)
        return np.ascontiguousarray(x[rows]), np.ascontiguousarray(y[rows])

    def _grad_buffers(self):
        flat = getattr(self.model, "flat_buffers", None)
        return [flat()[1]] if flat is not None else list(self.model.grads.values())

    def evaluate(self, batches=None) -> float | None:
        """Mean validation loss over the same `batches` batches every time (training state is left untouched)."""
        if self.val_data is None:
            return None
        cfg = self.cfg
        batches = max(1, cfg.eval_batches if batches is None else batches)
        saved = _data_state(self.val_data)
        rng = np.random.default_rng([cfg.seed, 1])  # its own stream: evaluation never moves the training RNG
        losses = _core.Tensor.empty([batches], "float32", getattr(self.model, "device", "cpu"))
        local = np.zeros(batches)
        was_training = _set_training(self.model, False)  # the validation loss is measured without dropout
        try:
            for i in range(batches):
                # data parallel: each rank its rows of the global batch (the same batches whatever N), as in training
                x, y = self._rows(*self.val_data.get_batch(cfg.batch_size * self.world, cfg.block_size, rng))
                self.model.forward_loss(x, y, out=losses[i])
                local[i] = np.count_nonzero(np.asarray(y) != IGNORE_INDEX)
        finally:
            _set_training(self.model, was_training)
        if saved is not None:
            self.val_data.load_state_dict(saved)
        values = host_copy(losses)  # one read for all batches
        if self.dp is not None:
            values = self.dp.weighted_mean(values, local, self.dp.sum(local))
        self.val_loss = float(np.mean(values, dtype=np.float64))
        return self.val_loss

    # ---- the loop -------------------------------------------------------------------------------------------
    def fit(self, until: int | None = None) -> dict:
        """Train to cfg.steps (or stop early at step `until`); checkpoints, logs; returns a summary."""
        import gptx

        cfg = self.cfg
        stop = cfg.steps if until is None else min(cfg.steps, until)
        threads_before = gptx.get_num_threads()
        if cfg.threads:
            gptx.set_num_threads(cfg.threads)
        start = time.perf_counter()
        start_step = self.step
        timed_out = False
        self._interrupted = False
        self._open_progress(stop)
        previous_handler = self._catch_interrupt()
        step_times = []
        try:
            while self.step < stop and not self._interrupted:
                try:
                    rec = self.train_step()
                except _StepAbandoned:
                    self._say(f"interrupted during step {self.step + 1}: that step is abandoned")
                    break
                rec["elapsed_s"] = time.perf_counter() - start
                step_times.append(rec["step_s"])
                self._estimate(step_times, stop)
                self._log(rec)
                if self._bar is not None:
                    self._bar.update(1)
                    self._bar.set_postfix(loss=f"{rec['loss']:.4f}", lr=f"{rec['lr']:.2e}", refresh=False)
                if cfg.log_every and (self.step % cfg.log_every == 0 or self.step == stop):
                    self._say(f"step {self.step:>6}/{cfg.steps} | loss {rec['loss']:.4f} | lr {rec['lr']:.2e} | "
                              f"grad norm {rec['grad_norm']:.3f} | {rec['tokens_per_s']:,.0f} tok/s")
                if cfg.eval_every and self.step % cfg.eval_every == 0:
                    self._eval_and_log()
                if cfg.ckpt_every and self.step % cfg.ckpt_every == 0:
                    self.save()
                out_of_time = cfg.max_seconds is not None and time.perf_counter() - start >= cfg.max_seconds
                if self.dp is not None:  # every rank stops after the same step (Ctrl-C and clocks differ per rank)
                    out_of_time = self.dp.any(out_of_time)
                    self._interrupted = self.dp.any(self._interrupted)
                if out_of_time:
                    timed_out = self.step < stop
                    break
            self._close_progress()
            # the end of the run is always evaluated and saved (once, if the periodic ones just did it)
            if timed_out:
                self._say(f"stopped at step {self.step}: the time limit of {cfg.max_seconds:.0f} s was reached")
            if self._interrupted:
                self._say(f"interrupted at step {self.step}: saving (Ctrl-C again aborts)")
            if self.step > start_step and self._evaluated_step != self.step:
                self._eval_and_log()
            if cfg.out_dir is not None and self._saved_step != self.step:
                self.save()
        finally:
            self._close_progress()
            for cb in self.callbacks:  # e.g. TensorBoard: its events on disk when fit returns
                if hasattr(cb, "flush"):
                    cb.flush()
            gptx.set_num_threads(threads_before)
            if previous_handler is not None:
                signal.signal(signal.SIGINT, previous_handler)
        seconds = time.perf_counter() - start
        if cfg.out_dir is not None and self.main:
            self.plot()
        return {"step": self.step, "loss": self.last_loss, "val_loss": self.val_loss, "seconds": seconds,
                "steps_run": self.step - start_step, "timed_out": timed_out, "interrupted": self._interrupted}

    def _catch_interrupt(self):
        """First Ctrl-C: abandon the step in flight if its update has not started (else let the update finish: a
        step cut half way would leave the parameters half updated), then evaluate and checkpoint. The second one
        interrupts at once. Returns the handler to restore, or None."""
        if threading.current_thread() is not threading.main_thread():
            return None
        previous = signal.getsignal(signal.SIGINT)
        if previous is None:  # installed outside Python: fall back to the usual KeyboardInterrupt
            previous = signal.default_int_handler

        def handler(signum, frame):
            self._interrupted = True
            signal.signal(signal.SIGINT, previous)
            if self._abandonable:  # before the update: give the step up now rather than after minutes
                raise _StepAbandoned()

        signal.signal(signal.SIGINT, handler)
        return previous

    def _eval_and_log(self):
        self._evaluated_step = self.step
        v = self.evaluate()
        if v is not None:
            self._log({"step": self.step, "val_loss": v})
            self._say(f"step {self.step:>6}/{self.cfg.steps} | val loss {v:.4f}")

    # ---- output ---------------------------------------------------------------------------------------------
    def _open_progress(self, stop):
        self._bar = None
        # A bar's carriage-return frames would fill a redirected log: only on a terminal, and only on rank 0.
        if self.cfg.progress and self.step < stop and _isatty(sys.stderr) and self.main:
            from tqdm import tqdm

            self._bar = tqdm(total=stop, initial=self.step, desc="train", unit="step", file=sys.stderr,
                             dynamic_ncols=True, leave=False)

    def _close_progress(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _estimate(self, step_times, stop):
        """Once per fit, the measured time per step and what the rest of the run will take: after the third step
        (the first one includes warm-up), or at once when the first step alone took long."""
        n = len(step_times)
        if n not in (1, 3) or (n == 1 and step_times[0] < ESTIMATE_FIRST_STEP_S):
            return
        if n == 3 and step_times[0] >= ESTIMATE_FIRST_STEP_S:
            return  # already said after the first step
        per_step = float(np.median(step_times[1:] if n > 1 else step_times))
        left = stop - self.step
        if left > 0 and per_step * left >= ESTIMATE_MIN_S:
            self._say(f"{per_step:.3g} s per step: the remaining {left} steps take about {_duration(per_step * left)}"
                      f" (Ctrl-C stops and checkpoints)")

    def _say(self, line):
        if not self.main:
            return
        if self._bar is not None:
            self._bar.write(line, file=sys.stdout)
        else:
            print(line, flush=True)

    @property
    def log_path(self) -> Path | None:
        return None if self.cfg.out_dir is None else Path(self.cfg.out_dir) / "log.jsonl"

    def _write_log(self, rec):
        path = self.log_path
        if path is None or not self.main:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps(rec) + "\n")
        except OSError as e:
            if e.filename is not None:
                raise
            raise OSError(e.errno, e.strerror, os.fspath(path)) from None  # disk full: name the file

    def _log(self, rec):
        self._write_log(rec)
        if not self.main:  # the ranks' records are the same (losses are averaged over them): rank 0 reports
            return
        for cb in self.callbacks:
            cb(dict(rec))

    def plot(self) -> Path | None:
        """out_dir/loss.png from log.jsonl when matplotlib is installed (otherwise a one-line notice, once)."""
        path = self.log_path
        if path is None or not path.exists():
            return None
        try:
            from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend and figures alone
        except ImportError:
            if not self._plot_notice:
                self._plot_notice = True
                self._say("loss.png not drawn: matplotlib is not installed (pip install matplotlib); the losses are "
                          f"in {path}")
            return None
        train, val = [], []
        for line in path.read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            (train if "loss" in rec else val).append((rec["step"], rec.get("loss", rec.get("val_loss"))))
        fig = Figure(figsize=(7, 4))
        ax = fig.subplots()
        if train:
            ax.plot(*zip(*train), label="train", lw=1)
        if val:
            ax.plot(*zip(*val), "o-", label="val", lw=1.5)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        out = path.parent / "loss.png"
        fig.savefig(out, dpi=100)
        return out

    # ---- checkpoints ----------------------------------------------------------------------------------------
    def state(self) -> dict:
        """The JSON-able training state stored next to the tensors."""
        return {
            "step": self.step,
            "train_config": self.cfg.to_dict(),
            "rng": self.rng.bit_generator.state,
            "train_data": _data_state(self.train_data),
            "val_data": _data_state(self.val_data),
            "tokenizer": getattr(self.tokenizer, "name", None),
            "loss": self.last_loss,
            "val_loss": self.val_loss,
            "extra": self.extra_state,
            "world_size": self.world,  # global batch = world_size * batch_size
        }

    def save(self, out_dir=None) -> Path:
        out_dir = out_dir if out_dir is not None else self.cfg.out_dir
        if out_dir is None:
            raise ValueError("Trainer.save: no out_dir (set TrainConfig.out_dir or pass one)")
        if self.dp is not None:
            path = self.dp.save(out_dir)
        else:
            path = save_checkpoint(out_dir, self.model, self.opt, state=self.state(), tokenizer=self.tokenizer,
                                   keep=self.cfg.keep_checkpoints)
        self._saved_step = self.step
        self._say(f"step {self.step:>6}/{self.cfg.steps} | checkpoint {path}")
        return path

    def restore(self, path) -> "Trainer":
        """Load model, optimizer, step, RNG and data cursors from a checkpoint so training continues bit for bit."""
        ck = path if hasattr(path, "optimizer") else load_checkpoint(path)
        mine = self.model.config.to_dict()
        if {k: ck.config.get(k) for k in mine} != mine:
            raise ValueError(f"checkpoint {ck.path} is for a different model config: {ck.config} vs {mine}")
        if ck.optimizer is None:
            raise ValueError(f"checkpoint {ck.path} has no optimizer state; it can initialise a model, not resume")
        self.model.load_state_dict(ck.model)
        self.opt.load_state_dict(ck.optimizer)
        st = ck.state
        self.step = int(st["step"])
        self.rng.bit_generator.state = st["rng"]
        _load_data_state(self.train_data, st.get("train_data"), "training")
        _load_data_state(self.val_data, st.get("val_data"), "validation")
        self.last_loss, self.val_loss = st.get("loss"), st.get("val_loss")
        self._saved_step = self.step
        if self.dp is not None:
            check_same_job(self)  # every rank resumed the same checkpoint
        if self.cfg.out_dir is not None and self.main:
            clean_stale_temp(self.cfg.out_dir)  # what killed saves of this run left behind
        if self.main:
            self._truncate_log()
        if self.dp is not None:
            self.dp.barrier()  # no rank logs into the run folder before rank 0 has trimmed it
        return self

    def _truncate_log(self):
        # a run that crashed after its last checkpoint logged steps that the resumed run is about to redo
        path = self.log_path
        if path is None or not path.exists():
            return
        keep = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line).get("step", 0) <= self.step:
                    keep.append(line)
            except json.JSONDecodeError:
                continue
        # temp file + rename: rewriting in place opened a window in which a kill left an empty log
        atomic_write_bytes(os.fspath(path), "".join(k + "\n" for k in keep).encode("utf-8"))

    @classmethod
    def resume(cls, path, train_data, val_data=None, tokenizer=None, device="cpu", dtype="float32",
               **overrides) -> "Trainer":
        """A Trainer rebuilt from a checkpoint (path or loaded Checkpoint): the model from its config (on `device`,
        computing in `dtype`; checkpoints are device-independent), TrainConfig from its state, then `overrides`
        (e.g. steps=2000 to extend the run). out_dir defaults to the run folder the checkpoint lives in."""
        from gptx.model import GPT, GPTConfig

        ck = path if hasattr(path, "optimizer") else load_checkpoint(path)
        model = GPT._uninitialized(GPTConfig.from_dict(ck.config), device, dtype)  # restore() loads the weights
        cfg = TrainConfig.from_dict(ck.state["train_config"])
        overrides.setdefault("out_dir", str(Path(ck.path).parent))
        # A new total keeps the schedule the run was started with unless the caller says otherwise
        # (schedule_steps=the new total stretches the cosine to it: a warm restart).
        if "steps" in overrides and "schedule_steps" not in overrides:
            overrides["schedule_steps"] = cfg.schedule_length
        resume_overrides(ck, cfg, overrides)  # another number of ranks: the same global batch
        cfg = dataclasses.replace(cfg, **overrides)
        trainer = cls(model, cfg, train_data, val_data, tokenizer, extra_state=ck.state.get("extra"))
        return trainer.restore(ck)
