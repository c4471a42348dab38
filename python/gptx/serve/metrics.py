"""Prometheus metrics of one server, in a registry of its own (several apps in one process do not collide)."""
from __future__ import annotations

import collections
import threading
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Time to first token: from 1 ms (a free slot, a short prompt) to a minute (a long queue).
TTFT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
REQUEST_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
RATE_WINDOW_S = 10.0   # tokens/s is averaged over the last 10 s: long enough to smooth steps, short enough to fall


class Metrics:
    def __init__(self):
        r = self.registry = CollectorRegistry()
        self.requests = Counter("gptx_requests", "HTTP requests to the generation endpoints by status",
                                ["endpoint", "status"], registry=r)
        self.prompt_tokens = Counter("gptx_prompt_tokens", "prompt tokens prefilled", registry=r)
        self.generated_tokens = Counter("gptx_generation_tokens", "tokens generated", registry=r)
        self.cancelled = Counter("gptx_cancelled_sequences", "sequences dropped because their client left",
                                 registry=r)
        self.failed = Counter("gptx_failed_sequences", "sequences ended by an engine error", registry=r)
        self.queue_length = Gauge("gptx_queue_length", "sequences waiting for a KV-cache slot", registry=r)
        self.running = Gauge("gptx_running_batch_size", "sequences in the decode batch", registry=r)
        self.ttft = Histogram("gptx_time_to_first_token_seconds", "from a sequence's arrival to its first token",
                              buckets=TTFT_BUCKETS, registry=r)
        self.request_time = Histogram("gptx_request_duration_seconds", "from a request's arrival to its last token",
                                      ["endpoint"], buckets=REQUEST_BUCKETS, registry=r)
        rate = Gauge("gptx_generation_tokens_per_second", f"tokens generated per second over the last "
                     f"{RATE_WINDOW_S:g} s", registry=r)
        rate.set_function(self.tokens_per_second)
        self._recent = collections.deque()   # (time, tokens) per engine step
        self._lock = threading.Lock()

    def tokens_made(self, n: int) -> None:
        if n <= 0:
            return
        self.generated_tokens.inc(n)
        now = time.monotonic()
        with self._lock:
            self._recent.append((now, n))
            self._trim(now)

    def tokens_per_second(self) -> float:
        now = time.monotonic()
        with self._lock:
            self._trim(now)
            return sum(n for _, n in self._recent) / RATE_WINDOW_S

    def _trim(self, now: float) -> None:
        while self._recent and self._recent[0][0] < now - RATE_WINDOW_S:
            self._recent.popleft()
