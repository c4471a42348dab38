"""The native ops (forward and backward of everything a GPT needs), re-exported from gptx._core.

Every function accepts gptx.Tensor or C-contiguous numpy arrays (float32; int32 for token ids and targets) and returns
gptx.Tensor (np.asarray(t) views it without a copy). Outputs may be passed with out=/d*= to reuse buffers; backward
ops overwrite them unless accumulate=True. Errors name the op and the argument.

Weights for decoding: pack_weight(w, "bf16" | "int8") packs a (K, N) float32 weight (int8: one float16 scale per
block of 32 along K, as GGUF's q8_0) and qmatmul_forward(a, packed, bias) multiplies float32 activations by it.
"""
from gptx._core import (
    matmul_forward,
    matmul_backward,
    PackedWeight,
    pack_weight,
    unpack_weight,
    qmatmul_forward,
    bias_backward,
    softmax_forward,
    softmax_backward,
    attention_forward,
    attention_backward,
    layernorm_forward,
    layernorm_backward,
    gelu_forward,
    gelu_backward,
    embedding_forward,
    embedding_backward,
    add_forward,
    Dropout,
    dropout_forward,
    dropout_backward,
    cross_entropy_forward,
    cross_entropy_backward,
    adamw_step,
    global_norm,
)

__all__ = [
    "matmul_forward",
    "matmul_backward",
    "PackedWeight",
    "pack_weight",
    "unpack_weight",
    "qmatmul_forward",
    "bias_backward",
    "softmax_forward",
    "softmax_backward",
    "attention_forward",
    "attention_backward",
    "layernorm_forward",
    "layernorm_backward",
    "gelu_forward",
    "gelu_backward",
    "embedding_forward",
    "embedding_backward",
    "add_forward",
    "Dropout",
    "dropout_forward",
    "dropout_backward",
    "cross_entropy_forward",
    "cross_entropy_backward",
    "adamw_step",
    "global_norm",
]
