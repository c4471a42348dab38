"""gptx.load: a model and its tokenizer from a run folder, a checkpoint step folder or a Hugging Face folder."""
from __future__ import annotations

import os
from pathlib import Path

from gptx import hf_io
from gptx.tokenizer import EOT, HF_FILE, META_FILE, Tokenizer, _import_tokenizers

VOCAB_FILE, MERGES_FILE = "vocab.json", "merges.txt"


def load(path, tokenizer=None, device: str = "cpu", dtype: str = "float32"):
    """(model, tokenizer) from a local folder, read the way `gptx sample` reads it.

    path: a training run folder (its latest.json names the checkpoint), one of its step folders, or a Hugging Face
    GPT-2 folder (config.json + model.safetensors, e.g. from save_pretrained). Checkpoint files are checked against
    their manifest first. Hub ids such as "gpt2" are not downloaded: pass a local folder.

    The tokenizer comes from the folder: a checkpoint's tokenizer/ (gptx_tokenizer.json), or in a Hugging Face
    folder gptx_tokenizer.json, else tokenizer.json, else vocab.json + merges.txt. Only a Hugging Face folder with
    none of these falls back to GPT-2's BPE (and only when the model's vocabulary holds GPT-2's 50257 ids). Older
    checkpoints without tokenizer/ get the byte tokenizer (vocabulary 256) or GPT-2's (50257).

    tokenizer: overrides the folder's: a Tokenizer, "bytes", "gpt2" or a path Tokenizer.load reads ("bytes" for a
    model of vocabulary 256 is the byte tokenizer without end-of-text, the form such models were trained with).
    device, dtype: where the model goes (model.to).
    """
    from gptx._checks import path as _path
    from gptx.checkpoint import is_checkpoint, load_checkpoint
    from gptx.model import GPT, GPTConfig

    _path("gptx.load", "path", path)
    hf_io.check_local(path)
    folder = Path(path)
    if not folder.exists():
        raise ValueError(f"{folder}: no such folder")
    if is_checkpoint(folder):
        ck = load_checkpoint(folder, with_optimizer=False)
        model = GPT._uninitialized(GPTConfig.from_dict(ck.config))
        model.load_state_dict(ck.model)
        model.eval()  # as from_pretrained: a loaded model samples and evaluates; train() turns dropout back on
        found = _checkpoint_tokenizer(ck, model.config.vocab_size) if tokenizer is None else None
        where = ck.path
    elif (folder / hf_io.CONFIG_FILE).is_file():
        model = GPT.from_pretrained(folder)
        found = folder_tokenizer(folder, model.config.vocab_size) if tokenizer is None else None
        where = folder
    else:
        raise ValueError(f"{folder} is neither a gptx checkpoint (manifest.json or latest.json) nor a Hugging Face "
                         f"GPT-2 folder ({hf_io.CONFIG_FILE})")
    tok = found if tokenizer is None else resolve_tokenizer(tokenizer, model.config.vocab_size)
    hf_io.check_tokenizer_fits(tok, model.config, where)
    if (device, dtype) != ("cpu", "float32"):
        model = model.to(device, dtype)
    return model, tok


def resolve_tokenizer(spec, vocab_size: int) -> Tokenizer:
    """Tokenizer.from_spec, except that "bytes" for a model of vocabulary 256 is the byte tokenizer without
    end-of-text (such models predate the end-of-text id and have no row for it)."""
    if isinstance(spec, str) and spec in ("bytes", "byte") and vocab_size == 256:
        return Tokenizer.bytes(end_of_text=False)
    return Tokenizer.from_spec(spec)


def _checkpoint_tokenizer(ck, vocab_size: int) -> Tokenizer:
    if ck.tokenizer_dir is not None:
        return Tokenizer.load(ck.tokenizer_dir)
    # Checkpoints written without a tokenizer: the two tokenizers gptx had by then are told apart by the vocabulary.
    if vocab_size == 256 or ck.state.get("tokenizer") == "bytes":
        return Tokenizer.bytes(end_of_text=vocab_size > 256)
    if vocab_size == 50257:
        return Tokenizer.gpt2()
    raise ValueError(f"checkpoint {ck.path} has no tokenizer/ folder and its vocabulary ({vocab_size}) is neither "
                     f"bytes nor GPT-2: pass tokenizer= (or --tokenizer)")


def folder_tokenizer(folder, vocab_size: int) -> Tokenizer:
    """The tokenizer of a Hugging Face folder (see load); GPT-2's BPE when the folder has no tokenizer files."""
    folder = Path(folder)
    if (folder / META_FILE).is_file() or (folder / HF_FILE).is_file():
        return Tokenizer.load(folder)
    if (folder / VOCAB_FILE).is_file() and (folder / MERGES_FILE).is_file():
        return _from_vocab_and_merges(folder)
    if vocab_size < 50257:
        raise ValueError(f"{folder} has no tokenizer files ({META_FILE}, {HF_FILE} or {VOCAB_FILE} + "
                         f"{MERGES_FILE}) and its vocabulary ({vocab_size}) is smaller than GPT-2's (50257): pass "
                         f"tokenizer= (or --tokenizer)")
    return Tokenizer.gpt2()


def _from_vocab_and_merges(folder: Path) -> Tokenizer:
    """A byte-level BPE (GPT-2's pipeline) from vocab.json + merges.txt, <|endoftext|> special when it is listed."""
    hf = _import_tokenizers()
    _check_vocab_ids(folder / VOCAB_FILE)
    try:
        tok = hf.Tokenizer(hf.models.BPE.from_file(os.fspath(folder / VOCAB_FILE), os.fspath(folder / MERGES_FILE)))
    except Exception as e:  # the Rust side raises a plain Exception on malformed files
        raise ValueError(f"{folder / VOCAB_FILE}, {folder / MERGES_FILE}: cannot read them as a BPE: {e}") from None
    tok.pre_tokenizer = hf.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = hf.decoders.ByteLevel()
    if tok.token_to_id(EOT) is not None:
        tok.add_special_tokens([hf.AddedToken(EOT, special=True, normalized=False)])
    return Tokenizer._from_hf_json(tok.to_str(), folder.name, os.fspath(folder / VOCAB_FILE))


def _check_vocab_ids(path: Path) -> None:
    """vocab.json maps each token to one of the ids 0..n-1, each used once: tokenizers sizes what it writes by the
    largest id (an id of 2**31 in a few bytes of JSON would ask for gigabytes) and decodes a shared id ambiguously."""
    from gptx.tokenizer import _is_int, _read_json

    vocab = _read_json(os.fspath(path), None)
    if not isinstance(vocab, dict) or not all(_is_int(i) for i in vocab.values()):
        raise ValueError(f"{path}: expected a JSON object of token -> integer id")
    ids = set(vocab.values())
    if len(ids) != len(vocab) or (ids and (min(ids) < 0 or max(ids) >= len(vocab))):
        bad = next((i for i in sorted(ids) if i < 0 or i >= len(vocab)), None)
        what = f"it uses id {bad}" if bad is not None else "some id is given to two tokens"
        raise ValueError(f"{path}: token ids must be 0..{len(vocab) - 1}, each once, for its {len(vocab)} tokens, "
                         f"but {what}")
