"""Training data: bundled Shakespeare, text files, and TokenDataset (random or sequential batches, resumable)."""
from __future__ import annotations

import os

import numpy as np

from gptx import _assets
from gptx._checks import integer
from gptx._fileio import read_text, to_json_types
from gptx.data_finetune import FinetuneDataset, encode_pair_file, encode_pairs, load_jsonl_pairs
from gptx.data_pairs import Template, read_pairs
from gptx.data_shards import ShardedTokens, load_shard_index, load_shards, prepare, read_shard, val_count, write_shard

__all__ = [
    "shakespeare_text", "load_text", "train_val_split", "TokenDataset",
    "ShardedTokens", "load_shards", "load_shard_index", "read_shard", "write_shard", "prepare",
    "load_jsonl_pairs", "encode_pairs", "FinetuneDataset", "read_pairs", "encode_pair_file", "Template",
]

STATE_VERSION = 1


def shakespeare_text() -> str:
    """Tiny Shakespeare (1,115,394 characters), from the package, checked against its sha256."""
    return _assets.asset_bytes("tinyshakespeare.txt").decode("utf-8")


def load_text(path) -> str:
    """A UTF-8 text file (ValueError naming the file and byte offset if it is not valid UTF-8)."""
    from gptx._checks import path as _path

    return read_text(_path("load_text", "path", path))


def train_val_split(tokens, val_fraction: float = 0.1):
    """(train, val): the first 1 - val_fraction of the tokens and the rest (views, no copy, for arrays)."""
    if tokens is None or not hasattr(tokens, "__len__"):
        raise TypeError(f"train_val_split: tokens must be a 1-D array or sequence of token ids, got "
                        f"{type(tokens).__name__}")
    if getattr(tokens, "ndim", 1) != 1:  # a (1, N) array would split its one row, not its tokens
        raise ValueError(f"train_val_split: tokens must be 1-D, got shape {tokens.shape}")
    n = len(tokens)
    n_val = val_count(n, val_fraction)
    return tokens[:n - n_val], tokens[n - n_val:]


def _as_tokens(tokens):
    if isinstance(tokens, ShardedTokens):
        return tokens
    if not isinstance(tokens, np.ndarray):
        tokens = np.asarray(tokens)
        if tokens.size == 0:
            tokens = tokens.astype(np.int32)
    if tokens.ndim != 1:
        raise ValueError(f"tokens must be a 1-D array, got shape {tokens.shape}")
    if not np.issubdtype(tokens.dtype, np.integer):
        raise TypeError(f"tokens must be integers, got dtype {tokens.dtype}")
    if np.issubdtype(tokens.dtype, np.signedinteger) and tokens.size and int(tokens.min()) < 0:
        raise ValueError(f"tokens must be ids >= 0, got {int(tokens.min())}")
    return tokens


class TokenDataset:
    """Batches of next-token pairs (x, y), both (B, T) int32 with y[b, t] = tokens[i_b + t + 1] for x's tokens[i_b + t].

    get_batch: B windows at random offsets in [0, n - T - 1] from a numpy Generator (the dataset's own, seeded by
    `seed`, unless one is passed). next_batch: consecutive rows, B*T tokens per call, wrapping to the start (and
    counting an epoch) when fewer than B*T + 1 tokens remain. state_dict() holds the cursor, epoch and the own
    generator's state as plain JSON types, so load_state_dict() on a fresh dataset continues with identical batches.
    The tokens may be any integer array (a np.memmap reads only the windows it serves) or load_shards() output.
    """

    def __init__(self, tokens, seed: int = 0):
        self.tokens = _as_tokens(tokens)
        self.seed = integer("TokenDataset", "seed", seed, 0)
        self.rng = np.random.default_rng(self.seed)
        self.cursor = 0
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.tokens)

    def _check(self, batch_size: int, block_size: int, need: int) -> None:
        integer("TokenDataset", "batch_size", batch_size)
        integer("TokenDataset", "block_size", block_size)
        if batch_size < 1 or block_size < 1:
            raise ValueError(f"batch_size and block_size must be positive, got {batch_size}, {block_size}")
        if len(self.tokens) < need:
            raise ValueError(
                f"dataset has {len(self.tokens)} tokens; batch_size={batch_size}, block_size={block_size} "
                f"needs at least {need}"
            )

    def _windows(self, offsets: np.ndarray, length: int) -> np.ndarray:
        if isinstance(self.tokens, ShardedTokens):
            return self.tokens.windows(offsets, length)
        # Fancy indexing on a memmap touches only the pages of these windows.
        return self.tokens[offsets[:, None] + np.arange(length, dtype=np.int64)]

    def get_batch(self, batch_size: int, block_size: int, rng: np.random.Generator | None = None):
        """B random windows. With rng=None the dataset's own generator is used (and saved by state_dict)."""
        self._check(batch_size, block_size, 0)
        self._check(batch_size, block_size, block_size + 1)
        gen = self.rng if rng is None else rng
        offsets = gen.integers(0, len(self.tokens) - block_size, size=batch_size, dtype=np.int64)
        w = self._windows(offsets, block_size + 1).astype(np.int32)
        return np.ascontiguousarray(w[:, :-1]), np.ascontiguousarray(w[:, 1:])

    def _sequential(self, cursor: int, batch_size: int, block_size: int):
        buf = np.asarray(self.tokens[cursor:cursor + batch_size * block_size + 1]).astype(np.int32)
        x = buf[:-1].reshape(batch_size, block_size)
        y = buf[1:].reshape(batch_size, block_size)
        return x, y

    def next_batch(self, batch_size: int, block_size: int):
        """The next B*T tokens as B consecutive rows (deterministic; advances the cursor)."""
        self._check(batch_size, block_size, 0)
        span = batch_size * block_size
        self._check(batch_size, block_size, span + 1)
        if self.cursor + span + 1 > len(self.tokens):
            self.cursor = 0
            self.epoch += 1
        x, y = self._sequential(self.cursor, batch_size, block_size)
        self.cursor += span
        return x, y

    def num_batches(self, batch_size: int, block_size: int) -> int:
        """next_batch calls per epoch (also the length of iter_batches)."""
        return max(0, (len(self.tokens) - 1) // (batch_size * block_size))

    def iter_batches(self, batch_size: int, block_size: int, max_batches: int | None = None):
        """One sequential pass from the start (e.g. for evaluation); leaves the cursor and generator alone."""
        self._check(batch_size, block_size, batch_size * block_size + 1)
        n = self.num_batches(batch_size, block_size)
        if max_batches is not None:
            n = min(n, max_batches)
        for k in range(n):
            yield self._sequential(k * batch_size * block_size, batch_size, block_size)

    def state_dict(self) -> dict:
        """JSON-serialisable position: cursor, epoch and the own generator's bit-generator state."""
        return {
            "version": STATE_VERSION,
            "n_tokens": len(self.tokens),
            "seed": self.seed,
            "cursor": int(self.cursor),
            "epoch": int(self.epoch),
            "rng": to_json_types(self.rng.bit_generator.state),
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("version", STATE_VERSION) > STATE_VERSION:
            raise ValueError(f"dataset state version {state.get('version')} is newer than this gptx reads")
        if "n_tokens" in state and state["n_tokens"] != len(self.tokens):
            raise ValueError(
                f"dataset state was saved for {state['n_tokens']} tokens but this dataset has {len(self.tokens)}"
            )
        self.rng.bit_generator.state = state["rng"]  # numpy checks it is a state of the same bit generator
        self.seed = int(state.get("seed", self.seed))
        self.cursor = int(state["cursor"])
        self.epoch = int(state["epoch"])

    def __repr__(self) -> str:
        return f"TokenDataset({len(self.tokens)} tokens, cursor={self.cursor}, epoch={self.epoch})"
