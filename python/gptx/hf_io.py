"""Hugging Face GPT-2 directories (config.json + model.safetensors, generation_config.json, the tokenizer files) to
and from a GPT.

Works on configs and named arrays only: load_pretrained takes the model class, save_pretrained the model, so this
module never imports gptx.model (which calls it)."""
from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path

import numpy as np

from gptx import _core
from gptx.config import GPTConfig, parameter_shapes

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
GENERATION_FILE = "generation_config.json"
# What a Hugging Face Hub id looks like ("gpt2", "openai-community/gpt2"): told apart from a mistyped local path only
# to say that gptx never downloads.
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
# Causal-mask buffers some GPT-2 files carry; not parameters.
IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias")


def _fail(file, msg: str):
    raise ValueError(f"{file}: {msg}")


def read_config(path) -> GPTConfig:
    """GPTConfig of a Hugging Face GPT-2 directory's config.json (or a gptx checkpoint's), read by the C++ rules
    (gptx/model.h read_config_file): what this GPT does not compute is refused, with the C++ loader's messages."""
    return GPTConfig(**_core.read_config_file(os.fspath(path))[1])


def _safetensors_files(path: Path) -> list[Path]:
    single, index = path / WEIGHTS_FILE, path / INDEX_FILE
    if single.is_file():
        return [single]
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            return [path / f for f in sorted(set(weight_map.values()))]
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
            _fail(index, f"is not a valid safetensors index ({e})")
    hint = " (PyTorch .bin files are not read: save the model with safe_serialization)" if any(
        path.glob("pytorch_model*.bin")) else ""
    _fail(single, f"not found{hint}")


def _read_bfloat16(file: Path, key: str) -> np.ndarray:
    """A BF16 tensor (numpy has no bfloat16) widened to float32: its 16 bits are the top half of a float32."""
    with open(file, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        entry = json.loads(f.read(n))[key]
        begin, end = entry["data_offsets"]
        f.seek(8 + n + begin)
        raw = np.frombuffer(f.read(end - begin), dtype="<u2")
    return (raw.astype(np.uint32) << 16).view(np.float32).reshape(entry["shape"])


def read_safetensors(file) -> dict[str, np.ndarray]:
    """Every tensor of one .safetensors file as a numpy array; a bad or truncated file raises ValueError."""
    from safetensors import SafetensorError, safe_open

    file = Path(file)
    if not file.is_file():
        _fail(file, "not found")
    out = {}
    try:
        with safe_open(str(file), framework="numpy") as f:
            for key in f.keys():
                if f.get_slice(key).get_dtype() == "BF16":
                    out[key] = _read_bfloat16(file, key)
                else:
                    out[key] = f.get_tensor(key)
    except (SafetensorError, OSError, TypeError, ValueError, KeyError) as e:
        _fail(file, f"is not a readable safetensors file ({e})")
    return out


def _canonical(key: str) -> str:
    """Old GPT-2 files name tensors without the 'transformer.' prefix ('h.0.attn.c_attn.weight')."""
    return key if key.startswith(("transformer.", "lm_head.")) else "transformer." + key


def check_local(path) -> None:
    """ValueError for a Hub id such as "gpt2" that is not a local path: it is not downloaded."""
    text = os.fspath(path)
    if os.path.exists(text):
        return
    if HUB_ID.match(text) and not text.startswith(".") and not text.endswith((".json", ".safetensors")):
        raise ValueError(f"{text!r} is not downloaded: pass a local folder (there is no folder of that name here, "
                         f"and gptx never fetches Hugging Face Hub ids)")


def _warn_mixed_dropout(file: Path, config: GPTConfig) -> None:
    """gptx has one dropout probability; a Hugging Face config whose three differ was read with the largest: say so."""
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # the C++ reader has already accepted this file; nothing more to say about it
    given = {k: raw[k] for k in ("resid_pdrop", "embd_pdrop", "attn_pdrop") if isinstance(raw.get(k), (int, float))}
    if len(set(given.values())) > 1:
        warnings.warn(f"{file}: {', '.join(f'{k}={v}' for k, v in given.items())} differ; gptx uses one dropout "
                      f"probability at every site and reads {config.dropout} (the largest)", UserWarning, stacklevel=3)


def load_pretrained(cls, path):
    """cls(config) with every parameter read from a Hugging Face GPT-2 directory, or from a gptx checkpoint (a step
    folder, or a run folder's latest checkpoint; every file checked against its manifest first); strict about keys
    and shapes."""
    from gptx.checkpoint import is_checkpoint, load_checkpoint

    check_local(path)
    if is_checkpoint(path):
        ck = load_checkpoint(path, with_optimizer=False)
        model = cls._uninitialized(GPTConfig.from_dict(ck.config))
        model.load_state_dict(ck.model, strict=True)
        return model
    found, values = _core.read_config_file(os.fspath(path))
    path, config = Path(found), GPTConfig(**values)  # a run directory's latest.json followed, as the C++ loader does
    _warn_mixed_dropout(path / CONFIG_FILE, config)
    expected = dict(parameter_shapes(config))
    tensors, origin = {}, {}
    for file in _safetensors_files(path):
        for key, value in read_safetensors(file).items():
            name = _canonical(key)
            if name.endswith(IGNORED_SUFFIXES):
                continue
            if name in tensors:
                _fail(file, f"key {key!r} appears twice (also in {origin[name]})")
            tensors[name], origin[name] = value, file
    lm_head = tensors.pop("lm_head.weight", None)
    where = origin.get("lm_head.weight")
    for name in sorted(set(tensors) - set(expected)):
        _fail(origin[name], f"unexpected key {name!r} (not a GPT-2 parameter)")
    files = ", ".join(sorted({str(f) for f in origin.values()})) or str(path / WEIGHTS_FILE)
    for name, shape in expected.items():
        if name not in tensors:
            _fail(files, f"missing key {name!r}")
        value = tensors[name]
        if tuple(value.shape) != shape:
            _fail(origin[name], f"key {name!r} has shape {tuple(value.shape)}, expected {shape}")
        if not np.issubdtype(value.dtype, np.floating):
            _fail(origin[name], f"key {name!r} has dtype {value.dtype}, expected a float type")
    if lm_head is not None:
        wte = tensors["transformer.wte.weight"]
        if lm_head.shape != wte.shape or not np.array_equal(lm_head, wte):
            _fail(where, "lm_head.weight differs from transformer.wte.weight (an untied LM head is not supported)")
    model = cls._uninitialized(config)
    model.load_state_dict(tensors, strict=True)
    return model


def default_eot(config: GPTConfig, tokenizer=None):
    """The end-of-text id a saved model declares: its tokenizer's; without one, GPT-2's <|endoftext|> (50256) when
    the vocabulary is that large, else none."""
    if tokenizer is not None:
        return tokenizer.eot_token
    return 50256 if config.vocab_size > 50256 else None


def generation_config_dict(config: GPTConfig, tokenizer=None) -> dict:
    """generation_config.json: gptx's default decoding (sampling at temperature 1 with no top-k / top-p filter;
    top_k 0 turns off transformers' own default of 50), at most block_size tokens in all (the position table's
    length), and the end-of-text id as eos, bos and pad (GPT-2 has no pad token; padding with eos is the usual
    choice, and saying so keeps transformers from warning at every generate)."""
    d = {"do_sample": True, "temperature": 1.0, "top_k": 0, "top_p": 1.0, "max_length": config.block_size}
    eot = default_eot(config, tokenizer)
    if eot is not None:
        d.update(bos_token_id=eot, eos_token_id=eot, pad_token_id=eot)
    return d


def hf_config_dict(config: GPTConfig, tokenizer=None) -> dict:
    """A config.json that transformers reads as GPT2LMHeadModel; gptx's one dropout probability is written as GPT-2's
    three (resid_pdrop, embd_pdrop, attn_pdrop), so transformers trains the model with the dropout gptx used."""
    d = {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "activation_function": "gelu_new",
        "vocab_size": config.vocab_size,
        "n_positions": config.block_size,
        "n_ctx": config.block_size,
        "n_embd": config.n_embd,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_inner": None,
        "layer_norm_epsilon": config.layer_norm_epsilon,
        "initializer_range": 0.02,
        "resid_pdrop": config.dropout,
        "embd_pdrop": config.dropout,
        "attn_pdrop": config.dropout,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "tie_word_embeddings": True,
        "use_cache": True,
        "dtype": "float32",
    }
    d["bos_token_id"] = d["eos_token_id"] = default_eot(config, tokenizer)
    return d


def check_tokenizer_fits(tokenizer, config: GPTConfig, where) -> None:
    """A tokenizer whose ids the model cannot take (more ids than its vocabulary) is refused, naming both."""
    if tokenizer is not None and tokenizer.vocab_size > config.vocab_size:
        raise ValueError(f"{where}: tokenizer {tokenizer.name} has {tokenizer.vocab_size} ids but the model's "
                         f"vocabulary has {config.vocab_size}")


def save_pretrained(model, path, tokenizer=None) -> None:
    """Write config.json, model.safetensors (tied LM head omitted, as transformers itself saves GPT-2) and
    generation_config.json; with a tokenizer, also its files (gptx_tokenizer.json and the files transformers
    reads: tokenizer.json, tokenizer_config.json, special_tokens_map.json, vocab.json + merges.txt for BPEs)."""
    from safetensors.numpy import save_file

    path = Path(path)
    check_tokenizer_fits(tokenizer, model.config, "save_pretrained")
    path.mkdir(parents=True, exist_ok=True)
    if tokenizer is not None:
        tokenizer.save(path, model_max_length=model.config.block_size)
    tmp_gen = path / (GENERATION_FILE + ".tmp")
    tmp_gen.write_text(json.dumps(generation_config_dict(model.config, tokenizer), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp_gen, path / GENERATION_FILE)
    tensors = {name: np.ascontiguousarray(a) for name, a in model.named_parameters()}
    # Write to temporary names and rename, so an interrupted save never leaves a half-written model behind.
    tmp_weights, tmp_config = path / (WEIGHTS_FILE + ".tmp"), path / (CONFIG_FILE + ".tmp")
    save_file(tensors, str(tmp_weights), metadata={"format": "pt"})
    config_text = json.dumps(hf_config_dict(model.config, tokenizer), indent=2, sort_keys=True) + "\n"
    tmp_config.write_text(config_text, encoding="utf-8")
    os.replace(tmp_weights, path / WEIGHTS_FILE)
    os.replace(tmp_config, path / CONFIG_FILE)
