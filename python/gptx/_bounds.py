"""A model config bounded by the safetensors files that are to fill it, checked before anything is allocated.

A config.json of a few hundred bytes can describe a model of any size ("n_layer": 2**31 - 1 passes every rule of
GPTConfig), and sizing the parameter table or the flat buffers from it would allocate before the weights are read.
The headers of the weight files say what they hold (tensor count, data bytes) at the cost of reading a few KB, so
the config is refused when it needs more than that; the rule is the C++ loader's (csrc/model/loader.cc).
"""
from __future__ import annotations

import json
import os
import struct

MIN_ITEM_BYTES = 2  # the narrowest dtype a loader accepts (bfloat16 / float16)


def header_summary(file) -> tuple[int, int]:
    """(tensor count, data bytes) of one .safetensors file from its header alone; ValueError naming the file."""
    file = os.fspath(file)
    try:
        size = os.path.getsize(file)
        with open(file, "rb") as f:
            raw = f.read(8)
            if len(raw) < 8:
                raise ValueError(f"{file} is not a readable safetensors file: {size} bytes, too short for a header")
            (n,) = struct.unpack("<Q", raw)
            if n > size - 8:
                raise ValueError(f"{file} is not a readable safetensors file: its header length {n} exceeds the file "
                                 f"({size} bytes)")
            header = json.loads(f.read(n))
    except OSError as e:
        raise ValueError(f"{file} is not a readable safetensors file ({e.strerror or e})") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:  # RecursionError: nested too deeply
        raise ValueError(f"{file} is not a readable safetensors file: its header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{file} is not a readable safetensors file: its header is not a JSON object")
    return sum(1 for k in header if k != "__metadata__"), size - 8 - n


def parameter_count(values: dict) -> int:
    """Parameters (unpadded) of a GPT-2 config given as a dict of its sizes, in exact integer arithmetic."""
    L, C, T, V = (int(values[k]) for k in ("n_layer", "n_embd", "block_size", "vocab_size"))
    return (V + T + 2) * C + L * (12 * C * C + 13 * C)


def check_config_fits(values: dict, files, where) -> None:
    """ValueError unless the safetensors `files` hold enough tensors and bytes for the config `values`."""
    count = data = 0
    for f in files:
        c, d = header_summary(f)
        count, data = count + c, data + d
    # At least one tensor per layer (a GPT-2 block has 12; the exact keys are the loader's to check, with better
    # messages) keeps the parameter table within a multiple of the header's size.
    need_tensors = int(values["n_layer"])
    need_bytes = parameter_count(values) * MIN_ITEM_BYTES
    if count < need_tensors or data < need_bytes:
        raise ValueError(f"{where}: holds {count} tensors ({data} bytes), too few for the {values['n_layer']}-layer "
                         f"model its config.json describes (at least {need_tensors} tensors, {need_bytes} bytes)")
