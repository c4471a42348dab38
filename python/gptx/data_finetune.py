"""Fine-tuning data: prompt/completion JSONL, examples with the prompt masked from the loss, padded batches."""
from __future__ import annotations

import json
import os

import numpy as np

from gptx._fileio import to_json_types

IGNORE_INDEX = -100  # targets with this value are left out of the loss (GPT.forward's ignore index)
STATE_VERSION = 1
TOO_LONG = ("truncate", "skip", "error")


def load_jsonl_pairs(path) -> list[tuple[str, str]]:
    """(prompt, completion) from a JSON Lines file of {"prompt": str, "completion": str} objects.

    Blank lines are skipped; other keys are ignored. Any bad line is a ValueError naming the file and line number.
    """
    path = os.fspath(path)
    pairs = []
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"{where}: not valid UTF-8 ({e.reason})") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: invalid JSON: {e.msg} (column {e.colno})") from None
            if not isinstance(obj, dict):
                raise ValueError(f"{where}: expected a JSON object with \"prompt\" and \"completion\", "
                                 f"got {type(obj).__name__}")
            for key in ("prompt", "completion"):
                if key not in obj:
                    raise ValueError(f"{where}: missing key \"{key}\" (keys present: {sorted(obj)})")
                if not isinstance(obj[key], str):
                    raise ValueError(f"{where}: \"{key}\" must be a string, got {type(obj[key]).__name__}")
            pairs.append((obj["prompt"], obj["completion"]))
    if not pairs:
        raise ValueError(f"{path} holds no examples")
    return pairs


def _unpack(pair, i: int) -> tuple[str, str]:
    if isinstance(pair, dict):
        try:
            return pair["prompt"], pair["completion"]
        except KeyError as e:
            raise ValueError(f"example {i}: missing key {e}") from None
    prompt, completion = pair
    return prompt, completion


def encode_pairs(pairs, tokenizer, block_size: int, too_long: str = "truncate",
                 counts: dict | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Encode (prompt, completion) pairs into (x, y) int32 examples of length <= block_size.

    The sequence is prompt + completion (+ the end-of-text token when the tokenizer has one, so the model learns to
    stop); x = seq[:-1], y = seq[1:] with y = -100 wherever the next token is still part of the prompt, so only the
    completion (and its end token) is learned. An empty prompt starts with the end-of-text token instead.
    Longer sequences: too_long="truncate" drops prompt tokens from the left (keeping at least one) and then cuts
    the completion's end; "skip" leaves the example out; "error" raises. `counts`, when given, receives how many
    examples were "truncated" and "skipped", so callers can report them (nothing is cut silently).
    """
    if too_long not in TOO_LONG:
        raise ValueError(f"too_long must be one of {TOO_LONG}, got {too_long!r}")
    if block_size < 1:
        raise ValueError(f"block_size must be positive, got {block_size}")
    eot = tokenizer.eot_token
    examples = []
    tally = {"truncated": 0, "skipped": 0}
    if counts is not None:
        counts.update(tally)
        tally = counts
    for i, pair in enumerate(pairs):
        prompt, completion = _unpack(pair, i)
        p = list(tokenizer.encode(prompt))
        c = list(tokenizer.encode(completion)) + ([eot] if eot is not None else [])
        if not p:
            if eot is None:
                raise ValueError(f"example {i}: empty prompt, and tokenizer {tokenizer.name} has no end-of-text "
                                 "token to start the sequence with")
            p = [eot]
        if not c:
            raise ValueError(f"example {i}: empty completion leaves nothing to learn")
        if len(p) + len(c) - 1 > block_size:
            if too_long == "error":
                raise ValueError(f"example {i}: {len(p)} prompt + {len(c)} completion tokens exceed "
                                 f"block_size + 1 = {block_size + 1}")
            if too_long == "skip":
                tally["skipped"] += 1
                continue
            tally["truncated"] += 1
            p = p[-max(1, block_size + 1 - len(c)):]
        seq = np.asarray((p + c)[:block_size + 1], dtype=np.int32)
        x = seq[:-1].copy()
        y = seq[1:].copy()
        y[:len(p) - 1] = IGNORE_INDEX
        examples.append((x, y))
    return examples


class FinetuneDataset:
    """Padded batches of encode_pairs() examples: x padded with pad_id, y with -100 (ignored by the loss).

    get_batch draws examples at random (the own generator unless rng is given); next_batch walks a fresh shuffle of
    all examples each epoch (order = default_rng([seed, epoch])). Both resume exactly through state_dict(), which
    holds only JSON types. Batches are (B, T) int32 with T the longest example in the batch, capped at block_size
    when given (longer examples are cut there); pad_full=True pads to block_size exactly.
    """

    def __init__(self, examples, seed: int = 0, pad_id: int = 0):
        self.examples = list(examples)
        if not self.examples:
            raise ValueError("no fine-tuning examples")
        self.seed = int(seed)
        self.pad_id = int(pad_id)
        self.rng = np.random.default_rng(self.seed)
        self.cursor = 0
        self.epoch = 0
        self._perm_epoch = None
        self._perm = None

    def __len__(self) -> int:
        return len(self.examples)

    def _pad(self, idx, block_size: int | None, pad_full: bool):
        rows = [self.examples[int(i)] for i in idx]
        longest = max(len(x) for x, _ in rows)
        if pad_full and block_size is None:
            raise ValueError("pad_full=True needs block_size")
        t = block_size if pad_full else (longest if block_size is None else min(longest, block_size))
        x = np.full((len(rows), t), self.pad_id, dtype=np.int32)
        y = np.full((len(rows), t), IGNORE_INDEX, dtype=np.int32)
        for b, (xe, ye) in enumerate(rows):
            n = min(len(xe), t)
            x[b, :n] = xe[:n]
            y[b, :n] = ye[:n]
        return x, y

    def get_batch(self, batch_size: int, block_size: int | None = None, rng: np.random.Generator | None = None,
                  pad_full: bool = False):
        """batch_size examples drawn uniformly with replacement."""
        gen = self.rng if rng is None else rng
        return self._pad(gen.integers(0, len(self.examples), size=batch_size), block_size, pad_full)

    def _epoch_order(self, epoch: int) -> np.ndarray:
        if self._perm_epoch != epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.examples))
            self._perm_epoch = epoch
        return self._perm

    def next_batch(self, batch_size: int, block_size: int | None = None, pad_full: bool = False):
        """The next batch_size examples of the epoch's shuffle, continuing into the next epoch's at the end."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        idx = []
        while len(idx) < batch_size:
            if self.cursor >= len(self.examples):
                self.epoch += 1
                self.cursor = 0
            take = min(batch_size - len(idx), len(self.examples) - self.cursor)
            idx.extend(self._epoch_order(self.epoch)[self.cursor:self.cursor + take].tolist())
            self.cursor += take
        return self._pad(idx, block_size, pad_full)

    def iter_batches(self, batch_size: int, block_size: int | None = None, pad_full: bool = False):
        """All examples in file order (last batch may be smaller); leaves the dataset's state alone."""
        for start in range(0, len(self.examples), batch_size):
            yield self._pad(range(start, min(start + batch_size, len(self.examples))), block_size, pad_full)

    def state_dict(self) -> dict:
        return {"version": STATE_VERSION, "n_examples": len(self.examples), "seed": self.seed,
                "cursor": int(self.cursor), "epoch": int(self.epoch),
                "rng": to_json_types(self.rng.bit_generator.state)}

    def load_state_dict(self, state: dict) -> None:
        if state.get("version", STATE_VERSION) > STATE_VERSION:
            raise ValueError(f"fine-tuning data state version {state.get('version')} is newer than this gptx reads")
        if state.get("n_examples", len(self.examples)) != len(self.examples):
            raise ValueError(f"state was saved for {state['n_examples']} examples but this dataset has "
                             f"{len(self.examples)}")
        self.seed = int(state.get("seed", self.seed))
        self.rng.bit_generator.state = state["rng"]
        self.cursor = int(state["cursor"])
        self.epoch = int(state["epoch"])
        self._perm_epoch = None
