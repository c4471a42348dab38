"""Logits processing (penalties, temperature, top-k, top-p, min-p) and counter-based sampling, in pure NumPy."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_M64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def uniform(seed: int, seq: int, pos: int) -> float:
    """A uniform in [0, 1) that depends only on (seed, seq, pos): no generator state, so a token's draw is the same
    whatever else is in the batch, in which order sequences are stepped, and how many threads run the model."""
    h = _splitmix64(_splitmix64(_splitmix64(int(seed) & _M64) ^ (int(seq) & _M64)) ^ (int(pos) & _M64))
    return (h >> 11) * (1.0 / (1 << 53))


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0

    def __post_init__(self):
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t < 0:
            raise ValueError(f"temperature must be a finite number >= 0 (0 = greedy), got {t!r}")
        k = self.top_k
        if k is not None and (isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1):
            raise ValueError(f"top_k must be an integer >= 1 (or None for no limit), got {k!r}")
        p = self.top_p
        if p is not None and not (isinstance(p, (int, float)) and 0 < p <= 1):
            raise ValueError(f"top_p must be in (0, 1] (or None), got {p!r}")
        m = self.min_p
        if m is not None and not (isinstance(m, (int, float)) and 0 <= m <= 1):
            raise ValueError(f"min_p must be in [0, 1] (or None), got {m!r}")
        r = self.repetition_penalty
        if not (isinstance(r, (int, float)) and math.isfinite(r) and r > 0):
            raise ValueError(f"repetition_penalty must be a finite number > 0 (1 = off), got {r!r}")
        for name in ("presence_penalty", "frequency_penalty"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v)):
                raise ValueError(f"{name} must be a finite number, got {v!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def apply_penalties(logits: np.ndarray, history, params: SamplingParams) -> np.ndarray:
    """Penalties for tokens already in `history` (prompt and generated ids), on a float64 copy of logits (V,).

    repetition_penalty (CTRL): a present token's logit is divided by the penalty when positive, multiplied when
    negative. presence/frequency (OpenAI): logit -= presence * [count > 0] + frequency * count.
    """
    z = np.array(logits, dtype=np.float64)
    if params.repetition_penalty == 1.0 and params.presence_penalty == 0.0 and params.frequency_penalty == 0.0:
        return z
    hist = np.asarray(history, dtype=np.int64).reshape(-1)
    if hist.size == 0:
        return z
    ids, counts = np.unique(hist, return_counts=True)
    if params.repetition_penalty != 1.0:
        r = params.repetition_penalty
        sel = z[ids]
        z[ids] = np.where(sel > 0, sel / r, sel * r)
    z[ids] -= params.presence_penalty + params.frequency_penalty * counts
    return z


def filter_logits(z: np.ndarray, params: SamplingParams) -> np.ndarray:
    """Temperature then top-k, top-p, min-p (the Hugging Face order) -> float64 logits with removed tokens at -inf.

    Each filter keeps at least one token (the most likely). Ties at the top-k boundary are all kept.
    """
    z = np.asarray(z, dtype=np.float64) / (params.temperature if params.temperature > 0 else 1.0)
    V = z.size
    if params.top_k is not None and params.top_k < V:
        kth = np.partition(z, V - params.top_k)[V - params.top_k]
        z = np.where(z < kth, -np.inf, z)
    if params.top_p is not None and params.top_p < 1.0:
        p = _softmax(z)
        order = np.argsort(-p, kind="stable")
        cum = np.cumsum(p[order])
        # Keep the smallest prefix whose mass reaches top_p: a token is dropped when the mass before it already does.
        drop = (cum - p[order]) >= params.top_p
        drop[0] = False
        z = z.copy()
        z[order[drop]] = -np.inf
    if params.min_p is not None and params.min_p > 0:
        p = _softmax(z)
        z = np.where(p < params.min_p * p.max(), -np.inf, z)
    return z


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - np.max(z))
    return e / e.sum()


def log_softmax(z: np.ndarray) -> np.ndarray:
    m = np.max(z)
    return z - (m + np.log(np.sum(np.exp(z - m))))


def probabilities(logits: np.ndarray, history, params: SamplingParams) -> np.ndarray:
    """The distribution sample() draws from (float64, sums to 1); greedy puts all the mass on the argmax."""
    z = apply_penalties(logits, history, params)
    if params.greedy:
        p = np.zeros_like(z)
        p[int(np.argmax(z))] = 1.0
        return p
    return _softmax(filter_logits(z, params))


def sample(logits: np.ndarray, history, params: SamplingParams, seed: int, seq: int, pos: int) -> tuple[int, float]:
    """(token, its log-probability) for one sequence: penalties, then choose()."""
    return choose(apply_penalties(logits, history, params), params, seed, seq, pos)


def choose(z: np.ndarray, params: SamplingParams, seed: int, seq: int, pos: int) -> tuple[int, float]:
    """(token, its log-probability) from penalized float64 logits z (V,), where -inf marks a banned token.

    Greedy: the argmax and its log-softmax. Otherwise the token whose cumulative-probability interval holds
    uniform(seed, seq, pos), and its log-probability under the filtered distribution it came from.
    """
    # NaN or +inf would make the cdf NaN and the search below walk off the array: refuse them by name.
    if np.isnan(z).any() or np.isposinf(z).any() or not np.isfinite(z).any():
        raise ValueError(f"logits at position {pos} of sequence {seq} have no usable value: "
                         f"{int(np.isnan(z).sum())} NaN, {int(np.isposinf(z).sum())} +inf, "
                         f"{int(np.isneginf(z).sum())} -inf of {z.size}")
    if params.greedy:
        tok = int(np.argmax(z))
        return tok, float(log_softmax(z)[tok])
    lp = log_softmax(filter_logits(z, params))
    cdf = np.cumsum(np.exp(lp))
    u = uniform(seed, seq, pos) * cdf[-1]
    # side="right" never lands on a zero-probability token: its cdf equals its predecessor's.
    tok = int(min(np.searchsorted(cdf, u, side="right"), cdf.size - 1))
    while not np.isfinite(lp[tok]):  # only reachable through float rounding at the very top of the cdf
        tok -= 1
    return tok, float(lp[tok])
