"""GPTConfig and the parameter table: Python's view of the one GPT definition in C++ (gptx/gpt_spec.h).

The rules (which configs are valid and the error messages), the padded vocabulary, the parameter names, shapes and
flat-buffer offsets and the KV-cache layout are all decided by gptx._core, so the Python model, the C++ inference
pass and the C++ loader cannot disagree. This module only adapts them to a dataclass and to tuples.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from gptx import _core

# The embedding table is padded to a multiple of 64 rows (50257 -> 50304) so the LM-head matmul tiles evenly.
VOCAB_MULTIPLE = _core.VOCAB_MULTIPLE
PARAM_ALIGN = _core.PARAM_ALIGN  # floats: every parameter starts on a 64-byte boundary inside the flat buffer
_REALS = ("layer_norm_epsilon", "dropout")
_SIZES = tuple(f for f in _core.config_fields() if f not in _REALS)  # the integer fields


@dataclass
class GPTConfig:
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    block_size: int = 1024
    vocab_size: int = 50257
    layer_norm_epsilon: float = 1e-5
    # Training dropout at GPT-2's three places (embeddings, attention probabilities, residual branches), in [0, 1).
    # Used only while the model is in training mode (GPT.train(); Trainer does it); a Hugging Face config's
    # resid_pdrop / embd_pdrop / attn_pdrop are read into it (the largest of them) and written back as all three.
    dropout: float = 0.0

    def __post_init__(self):
        # The C++ rules decide (ValueError naming the field); then the values are stored as plain int / float.
        _core.GPTConfig.from_values(self.to_dict(), require_sizes=False)
        for name in _SIZES:
            setattr(self, name, int(getattr(self, name)))
        self.layer_norm_epsilon = float(self.layer_norm_epsilon)
        self.dropout = float(self.dropout)

    @property
    def padded_vocab_size(self) -> int:
        return _core.padded_vocab_size(self.vocab_size)

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GPTConfig":
        """A config as a checkpoint's config.json holds it: unknown keys and missing sizes are errors (exactly what
        the C++ loader refuses in such a file); layer_norm_epsilon may be absent (1e-5), dropout too (0: checkpoints
        written before dropout existed)."""
        _core.GPTConfig.from_values(d, require_sizes=True)
        return cls(**d)


def native_config(config) -> "_core.GPTConfig":
    """The C++ config of a GPTConfig (a _core.GPTConfig is returned as is)."""
    if isinstance(config, _core.GPTConfig):
        return config
    return _core.GPTConfig(**config.to_dict())


def parameter_table(config) -> "_core.ParamTable":
    """Every parameter in Hugging Face GPT2LMHeadModel order: .params (name, shape, storage, offset, decay) and
    .size, the length of the flat buffer that holds them all (each starting on a PARAM_ALIGN boundary)."""
    return _core.parameter_table(native_config(config))


def parameter_shapes(config) -> list[tuple[str, tuple[int, ...]]]:
    """Hugging Face GPT2LMHeadModel names and shapes, in its order (Conv1D weights are (in, out))."""
    return [(p.name, p.shape) for p in parameter_table(config).params]


__all__ = ["GPTConfig", "PARAM_ALIGN", "VOCAB_MULTIPLE", "native_config", "parameter_shapes", "parameter_table"]
