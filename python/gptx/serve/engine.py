"""The continuous-batching scheduler: one background thread owns the model and a KV cache of max_batch slots.

Each loop: sequences waiting in the queue take free slots (their prompt prefilled in one pass), every running
sequence draws its next token, finished and cancelled ones leave at once (their slot is free for the next loop), and
the rest advance together in one decode step. So a request joins the running batch at the next step and never waits
for another to end. A prompt is prefilled whole, in one pass, before the step that follows: the running sequences
wait for it (no chunked prefill), which keeps the most tokens per weight read but delays their next token by one
prefill.

A sequence's tokens do not depend on what else runs: decode gives each row the logits it would get alone (attention
per slot, each with its own length), and draws are keyed by (seed, stream, position) (sampling.uniform), as in
GPT.generate. The same request with the same seed therefore gives the same tokens alone or in any batch, and the
same tokens as model.generate(prompt, seed=seed, ...).

Errors: a sequence whose step raises is ended with that error and its slot freed; an exception of the batched decode
step ends the sequences of that step. The thread itself keeps serving.
"""
from __future__ import annotations

import collections
import logging
import threading
import time

import numpy as np

from gptx.inference import decode, prefill
from gptx.kv_cache import KVCache
from gptx.sampling import SamplingParams, apply_penalties, choose, log_softmax
from gptx.serve.errors import APIError
from gptx.serve.text import TextState

log = logging.getLogger("gptx.serve")


class Sequence:
    """One choice of one request: its prompt, how to sample, and where its events go.

    sink(event) is called from the engine thread with ("prompt", entries), ("token", entry),
    ("done", finish_reason, last text) or ("error", APIError). An entry is a dict: token, text (newly final text),
    offset (characters of text before the token), logprob and top (only when logprobs were asked for).
    """

    def __init__(self, prompt, params, max_new, seed, stream, eos, sink, want_prompt_logprobs=False, stops=()):
        self.prompt = list(prompt)
        self.history = list(prompt)
        self.params = params                 # schemas.GenParams
        self.sampling = SamplingParams(params.temperature, params.top_k, params.top_p, params.min_p,
                                       params.repetition_penalty, params.presence_penalty, params.frequency_penalty)
        self.bias_ids = np.array(list(params.logit_bias), dtype=np.int64)
        self.bias = np.array(list(params.logit_bias.values()), dtype=np.float64)
        self.max_new = int(max_new)
        self.seed, self.stream = int(seed), int(stream)
        self.eos = frozenset(eos)
        self.sink = sink
        self.want_prompt_logprobs = want_prompt_logprobs
        self.text = TextState(stops)
        self.made = 0
        self.slot = None
        self.logits = None                   # next-token logits (V,), set by prefill or decode
        self.cancelled = False               # set by the request's handler when its client leaves
        self.finished = False
        self.arrived = time.monotonic()
        self.first_token_at = None

    def cancel(self) -> None:
        self.cancelled = True


class Engine:
    def __init__(self, model, tokenizer, max_batch: int = 16, max_queue: int = 256, metrics=None):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {max_queue}")
        self.model, self.tokenizer = model, tokenizer
        self.max_batch, self.max_queue = int(max_batch), int(max_queue)
        self.metrics = metrics
        self.cache = KVCache.for_model(model, self.max_batch)  # every slot holds a full context (block_size)
        self.free = list(range(self.max_batch - 1, -1, -1))
        self.pending = collections.deque()
        self.running = []
        self.cv = threading.Condition()
        self.stopping = False
        self.steps = 0
        self.peak_batch = 0              # the most sequences one decode step has run
        self.thread = threading.Thread(target=self._loop, name="gptx-serve-engine", daemon=True)

    def start(self) -> "Engine":
        self.thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        with self.cv:
            self.stopping = True
            self.cv.notify_all()
        if self.thread.is_alive():
            self.thread.join(timeout)

    def submit(self, seqs) -> None:
        """Queue a request's sequences together, or none of them: 429 when the queue cannot take them all."""
        if len(seqs) > self.max_queue:  # could never be queued: the request itself is too large
            raise APIError(400, f"n: the request asks for {len(seqs)} sequences (prompts x n), more than the server "
                           f"queues at once ({self.max_queue}, --max-queue)", "n", "too_many_sequences")
        with self.cv:
            if self.stopping:
                raise APIError(503, "the server is shutting down", code="shutting_down")
            if len(self.pending) + len(seqs) > self.max_queue:
                raise APIError(429, f"the queue is full ({len(self.pending)} sequences waiting, at most "
                               f"{self.max_queue}); retry later", code="queue_full")
            self.pending.extend(seqs)
            self._gauges()
            self.cv.notify_all()

    def wake(self) -> None:
        """Have the loop look at cancellations now (it also sees them at its next step)."""
        with self.cv:
            self.cv.notify_all()

    def load(self) -> tuple[int, int]:
        """(sequences waiting, sequences running)."""
        with self.cv:
            return len(self.pending), len(self.running)

    # ----- the loop (engine thread only below) -----
    def _loop(self) -> None:
        while True:
            with self.cv:
                self._drop_cancelled()
                while not self.stopping and not self.pending and not self.running:
                    self.cv.wait()
                    self._drop_cancelled()
                if self.stopping:
                    self._fail_all(APIError(503, "the server is shutting down", code="shutting_down"))
                    return
                admitted = []
                while self.pending and self.free:
                    s = self.pending.popleft()
                    s.slot = self.free.pop()
                    self.running.append(s)
                    admitted.append(s)
                self._gauges()
            try:
                self._step(admitted)
            except Exception as e:  # a bug in the loop itself: fail what runs, keep the thread alive
                log.exception("engine step failed")
                self._fail(list(self.running), APIError(500, f"engine error: {type(e).__name__}: {e}"))

    def _step(self, admitted) -> None:
        for s in admitted:
            self._guard(s, self._start)
        for s in list(self.running):
            if s.logits is not None and not s.finished and not s.cancelled:
                self._guard(s, self._advance)
        self._release()
        live = [s for s in self.running if not s.cancelled]
        if not live:
            return
        try:
            out = decode(self.model, self.cache, [s.slot for s in live], [s.history[-1] for s in live])
        except Exception as e:
            log.exception("decode step failed")
            self._fail(live, APIError(500, f"engine error in the decode step: {type(e).__name__}: {e}"))
            return
        for j, s in enumerate(live):
            s.logits = out[j]
        self.steps += 1
        self.peak_batch = max(self.peak_batch, len(live))

    def _start(self, s: Sequence) -> None:
        if s.cancelled:
            return
        if s.max_new == 0 and not s.want_prompt_logprobs:
            self._finish(s, "length")
            return
        self.cache.reset(s.slot)
        if s.want_prompt_logprobs:
            rows = prefill(self.model, self.cache, s.slot, s.prompt, all_logits=True)  # (T, V)
            self._emit(s, ("prompt", self._prompt_logprobs(s, rows)))
            s.logits = rows[-1]
        else:
            s.logits = prefill(self.model, self.cache, s.slot, s.prompt)
        if self.metrics:
            self.metrics.prompt_tokens.inc(len(s.prompt))
        if s.max_new == 0:
            self._finish(s, "length")

    def _advance(self, s: Sequence) -> None:
        """Draw s's next token from s.logits, hand it out, and end s when it is done."""
        raw = s.logits
        if not np.isfinite(raw).all():
            raise APIError(500, f"the model's logits are not finite at position {len(s.history)}: the weights or "
                           f"an activation have overflowed", code="non_finite_logits")
        z = apply_penalties(raw, s.history, s.sampling)
        if s.bias_ids.size:
            z[s.bias_ids] += s.bias
        pos = len(s.history)
        tok, _ = choose(z, s.sampling, s.seed, s.stream, pos)
        s.history.append(tok)
        s.made += 1
        s.logits = None
        now = time.monotonic()
        if s.first_token_at is None:
            s.first_token_at = now
            if self.metrics:
                self.metrics.ttft.observe(now - s.arrived)
        if self.metrics:
            self.metrics.tokens_made(1)
        if tok in s.eos:  # ends the text; the token itself has no text
            self._finish(s, "stop")
            return
        offset = len(s.text.text)
        piece, stopped = s.text.add(self.tokenizer.token_bytes(tok))
        entry = {"token": tok, "text": piece, "offset": offset}
        if s.params.logprobs is not None:  # the model's own distribution, before penalties and temperature
            lp = log_softmax(np.asarray(raw, dtype=np.float64))
            entry["logprob"] = float(lp[tok])
            entry["top"] = _top(lp, s.params.logprobs)
        self._emit(s, ("token", entry))
        if stopped:
            self._finish(s, "stop", final="")
        elif s.made >= s.max_new:
            self._finish(s, "length")

    def _prompt_logprobs(self, s: Sequence, rows) -> list:
        """Each prompt token's log-probability given the tokens before it (None for the first, which has none)."""
        k = s.params.logprobs or 0
        out = [{"token": s.prompt[0], "logprob": None, "top": None}]
        for t in range(1, len(s.prompt)):
            lp = log_softmax(np.asarray(rows[t - 1], dtype=np.float64))
            out.append({"token": s.prompt[t], "logprob": float(lp[s.prompt[t]]), "top": _top(lp, k)})
        return out

    # ----- bookkeeping -----
    def _guard(self, s: Sequence, step) -> None:
        try:
            step(s)
        except APIError as e:
            self._fail([s], e)
        except Exception as e:
            log.exception("sequence failed")
            self._fail([s], APIError(500, f"engine error: {type(e).__name__}: {e}"))

    def _emit(self, s: Sequence, event) -> None:
        try:
            s.sink(event)
        except Exception:  # the request's event loop is gone: nobody is listening any more
            s.cancelled = True

    def _finish(self, s: Sequence, reason: str, final: str | None = None) -> None:
        if s.finished:
            return
        s.finished = True
        self._emit(s, ("done", reason, s.text.finish() if final is None else final))

    def _fail(self, seqs, err: APIError) -> None:
        for s in seqs:
            if not s.finished:
                s.finished = True
                if self.metrics:
                    self.metrics.failed.inc()
                self._emit(s, ("error", err))
        self._release()

    def _release(self) -> None:
        """Free the slots of finished and cancelled sequences."""
        with self.cv:
            self._leave(lambda s: s.finished or s.cancelled)
            self._gauges()

    def _leave(self, done) -> None:
        """(cv held) Running sequences for which done(s) holds leave the batch: their slots are free again (a
        cancelled one that had not finished counts as cancelled)."""
        keep = []
        for s in self.running:
            if done(s):
                if s.cancelled and not s.finished and self.metrics:
                    self.metrics.cancelled.inc()
                s.finished = True
                self.free.append(s.slot)
            else:
                keep.append(s)
        self.running = keep

    def _drop_cancelled(self) -> None:
        """(cv held) Sequences cancelled while waiting or running leave now."""
        if any(s.cancelled for s in self.pending):
            kept = collections.deque()
            for s in self.pending:
                if s.cancelled:
                    s.finished = True
                    if self.metrics:
                        self.metrics.cancelled.inc()
                else:
                    kept.append(s)
            self.pending = kept
        self._leave(lambda s: s.cancelled)
        self._gauges()

    def _fail_all(self, err: APIError) -> None:
        seqs = list(self.pending) + list(self.running)
        self.pending.clear()
        for s in seqs:
            if not s.finished:
                s.finished = True
                self._emit(s, ("error", err))
        self.running = []

    def _gauges(self) -> None:
        if self.metrics:
            self.metrics.queue_length.set(len(self.pending))
            self.metrics.running.set(len(self.running))


def _top(lp: np.ndarray, k: int) -> list:
    """The k most likely (token, log-probability) pairs, most likely first."""
    if k <= 0:
        return []
    idx = np.argpartition(-lp, k - 1)[:k] if k < lp.size else np.arange(lp.size)
    idx = idx[np.argsort(-lp[idx], kind="stable")]
    return [(int(i), float(lp[i])) for i in idx]
