"""Fine-tuning data: prompt/completion JSONL, examples with the prompt masked from the loss, padded batches."""
from __future__ import annotations

import numpy as np

from gptx._checks import integer
from gptx._fileio import to_json_types
from gptx.data_pairs import PairFile, Template, read_pairs

IGNORE_INDEX = -100  # targets with this value are left out of the loss (GPT.forward's ignore index)
STATE_VERSION = 1
TOO_LONG = ("truncate", "skip", "error")


def load_jsonl_pairs(path) -> list[tuple[str, str]]:
    """(prompt, completion) from a JSON Lines file of {"prompt": str, "completion": str} objects.

    Blank lines are skipped; other keys are ignored. Any bad line is a ValueError naming the file and line number.
    Files with other keys (document/summary, article/highlights, ...): read_pairs and encode_pair_file.
    """
    pf = read_pairs(path, "prompt", "completion", skip_empty=False)
    return [(p.source, p.target) for p in pf.pairs]


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
    if isinstance(pairs, (str, bytes)) or not hasattr(pairs, "__iter__"):
        raise TypeError(f"encode_pairs: pairs must be an iterable of (prompt, completion) pairs or dicts, got "
                        f"{type(pairs).__name__}")
    if not (hasattr(tokenizer, "encode") and hasattr(tokenizer, "eot_token")):
        raise TypeError(f"encode_pairs: tokenizer must be a gptx.Tokenizer, got {type(tokenizer).__name__}")
    if integer("encode_pairs", "block_size", block_size) < 1:
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
        examples.append(_example(p, c, block_size))
    return examples


def _example(p: list[int], c: list[int], block_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of prompt p + completion c: y masked (-100) wherever the next token is still part of the prompt."""
    seq = np.asarray((p + c)[:block_size + 1], dtype=np.int32)
    x = seq[:-1].copy()
    y = seq[1:].copy()
    y[:len(p) - 1] = IGNORE_INDEX
    return x, y


def encode_pair_file(pf: PairFile, tokenizer, block_size: int, template: str | None = None,
                     too_long: str = "truncate"):
    """(examples, counts) of a read_pairs() file with targets, for fine-tuning.

    Document/summary pairs: prompt = the template filled with the document, then the summary and the end-of-text
    token; only the summary and end-of-text are learned. A document too long for block_size is cut at its end
    (too_long="truncate"; never the summary: a summary that leaves no room for a document token is a ValueError
    naming its line), or its pair is left out ("skip"), or it is an error ("error"). prompt/completion files keep
    encode_pairs' behaviour (the prompt loses its start). counts: "truncated", "skipped" (too long),
    "skipped_empty" (lines with an empty document or summary), "examples".
    """
    if too_long not in TOO_LONG:
        raise ValueError(f"too_long must be one of {TOO_LONG}, got {too_long!r}")
    if block_size < 1:
        raise ValueError(f"block_size must be positive, got {block_size}")
    missing = [p.line for p in pf.pairs if p.target is None]
    if missing:
        raise ValueError(f"{pf.path}:{missing[0]}: no \"{pf.target_key}\" to learn ({len(missing)} line(s) lack it)")
    counts = {"truncated": 0, "skipped": 0, "skipped_empty": pf.skipped_empty}
    if pf.raw and template is None:
        examples = encode_pairs([(p.source, p.target) for p in pf.pairs], tokenizer, block_size, too_long, counts)
        counts["examples"] = len(examples)
        return examples, counts
    tpl = Template(template, raw=pf.raw)
    eot = tokenizer.eot_token
    examples = []
    for p in pf.pairs:
        c = list(tokenizer.encode(tpl.target_text(p.target))) + ([eot] if eot is not None else [])
        where = f"{pf.path}:{p.line}: "
        room = block_size + 1 - len(c)
        if room < 2:
            raise ValueError(f"{where}the summary ({len(c)} tokens with end-of-text) leaves no room for the document "
                             f"in block_size + 1 = {block_size + 1} tokens")
        ids, cut = tpl.prompt_ids(p.source, tokenizer, room, where)
        if cut and too_long == "error":
            raise ValueError(f"{where}the document does not fit in block_size + 1 = {block_size + 1} tokens with its "
                             f"{len(c)}-token summary (too_long='truncate' cuts it at its end)")
        if cut and too_long == "skip":
            counts["skipped"] += 1
            continue
        counts["truncated"] += cut
        examples.append(_example(ids, c, block_size))
    counts["examples"] = len(examples)
    return examples, counts


class FinetuneDataset:
    """Padded batches of encode_pairs() examples: x padded with pad_id, y with -100 (ignored by the loss).

    get_batch draws examples at random (the own generator unless rng is given); next_batch walks a fresh shuffle of
    all examples each epoch (order = default_rng([seed, epoch])). Both resume exactly through state_dict(), which
    holds only JSON types. Batches are (B, T) int32 with T the longest example in the batch, capped at block_size
    when given (longer examples are cut there); pad_full=True pads to block_size exactly.
    """

    def __init__(self, examples, seed: int = 0, pad_id: int = 0):
        if isinstance(examples, (str, bytes)) or not hasattr(examples, "__iter__"):
            raise TypeError(f"FinetuneDataset: examples must be a list of (x, y) arrays from encode_pairs, got "
                            f"{type(examples).__name__}")
        self.examples = list(examples)
        if not self.examples:
            raise ValueError("no fine-tuning examples")
        self.seed = integer("FinetuneDataset", "seed", seed, 0)
        self.pad_id = integer("FinetuneDataset", "pad_id", pad_id, 0, 2**31 - 1)  # an id the int32 batch can hold
        self.rng = np.random.default_rng(self.seed)
        self.cursor = 0
        self.epoch = 0
        self._perm_epoch = None
        self._perm = None

    def __len__(self) -> int:
        return len(self.examples)

    def _pad(self, idx, block_size: int | None, pad_full: bool):
        if block_size is not None:
            integer("FinetuneDataset", "block_size", block_size, 1)
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
        integer("FinetuneDataset", "batch_size", batch_size, 1)
        gen = self.rng if rng is None else rng
        return self._pad(gen.integers(0, len(self.examples), size=batch_size), block_size, pad_full)

    def _epoch_order(self, epoch: int) -> np.ndarray:
        if self._perm_epoch != epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.examples))
            self._perm_epoch = epoch
        return self._perm

    def next_batch(self, batch_size: int, block_size: int | None = None, pad_full: bool = False):
        """The next batch_size examples of the epoch's shuffle, continuing into the next epoch's at the end."""
        integer("FinetuneDataset", "batch_size", batch_size, 1)
        if block_size is not None:
            integer("FinetuneDataset", "block_size", block_size, 1)
        # the rows are gathered one by one: a batch of 2**62 examples would run for ever before memory ran out
        longest = block_size or max(len(x) for x, _ in self.examples)
        if batch_size * longest > 2**31:
            raise ValueError(f"FinetuneDataset: batch_size {batch_size} x block_size {longest} tokens does not fit in "
                             f"memory")
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
