"""Weights for decoding: the one place that names the weight formats a model can run its matmuls in.

"f32" is the model as trained. "bf16" keeps the matmul weights (attention qkv and projection, MLP fc and projection,
the LM head = the tied token embedding) in bfloat16; "int8" keeps them in int8 with one float16 scale per block of
32 along the reduction, as GGUF's q8_0. The CLI (`--weights` on `gptx sample` and `gptx eval`) and servers validate
the choice with check_weights / add_weights_argument, and GPT.quantize applies it.
"""
from __future__ import annotations

WEIGHT_FORMATS = ("f32", "bf16", "int8")

WEIGHTS_HELP = ("weights of the matmuls for decoding: f32 (as trained, the default), bf16, or int8 (q8_0-style "
                "blocks of 32 with a float16 scale); CPU only")


def check_weights(weights, what: str = "weights") -> str:
    """The weight format name, or a ValueError naming `what` and the choices."""
    if not isinstance(weights, str) or weights not in WEIGHT_FORMATS:
        raise ValueError(f"{what} must be one of {', '.join(WEIGHT_FORMATS)}, got {weights!r}")
    return weights


def add_weights_argument(parser, flag: str = "--weights") -> None:
    """`--weights f32|bf16|int8` on an argparse parser (the choice checked by check_weights)."""
    parser.add_argument(flag, default="f32", choices=WEIGHT_FORMATS, help=WEIGHTS_HELP)
