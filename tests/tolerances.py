"""The tolerances of the test suite, keyed by (backend, dtype) (kernels vs float64; whole models vs float32), and the
comparison that uses them. `backend` is a device kind: "cpu" covers every CPU kernel path and the scalar reference
alike (tests/backends.py), so a CPU path is never let off with a looser bound than the spec it is tested against.

A kernel is compared with a float64 reference. `scale` is the magnitude of the terms that were summed into one output
(e.g. sqrt(K) * |a| * |b| for a matmul of length K): reductions that reorder sums then get an absolute allowance in
proportion, in the spirit of flash-attention's rule (error at most ~2x that of a naive same-precision sum).
"""
import numpy as np

# (backend, dtype) -> (rtol, atol)
TOLERANCES = {
    ("cpu", "float32"): (2e-5, 2e-6),
    ("cpu", "bfloat16"): (1.6e-2, 1e-3),
    ("cuda", "float32"): (1e-4, 1e-5),  # TF32 paths get their own row when they exist
    ("cuda", "bfloat16"): (4e-2, 4e-3),
    ("cuda", "float16"): (5e-3, 5e-4),
    # qmatmul_forward (packed decoding weights) vs the float64 product of the unquantized float32 operands: the error
    # is the formats' rounding, not the kernel's, and is bounded elementwise (tests/ops/test_qmatmul.py computes the
    # scale): bf16 keeps 8 significant bits, rounding each operand by <= 2^-8 relative, so |error| <= ~2^-7 *
    # sum_k |a_k w_k| (atol x that sum); int8 blocks (q8_0) round a and w by at most half their block's step da / 2, dw / 2, so |error| <=
    # sum_k (|a_k| dw / 2 + |w_k| da / 2 + da dw / 4) (atol 1 x that sum). rtol covers the float32 accumulation.
    # The kernels themselves are held to ("cpu", "float32") against the float64 sum of the rounded operands.
    ("cpu", "bf16-weights"): (1e-5, 7.9e-3),
    ("cpu", "int8-weights"): (1e-5, 1.0),
}

# Finite differences of a float64 reference vs a float32 gradient: central differences with h ~ 1e-4 and float32
# kernels leave ~1e-3 relative error; this bound is separate from the kernel table above.
FINITE_DIFFERENCE_RTOL = 2e-3


# Whole-model parity (tests/gpu/test_gpu_model.py), keyed like the kernel table: a model on `backend` in `dtype` vs the
# same model in float32 (on the CPU, or for bfloat16 on the same device). Dozens of ops compound, so "loss" is relative
# and "logits" / "grads" are norm-wise relative errors of whole tensors; "logits_max" (tests/gpu/test_gpu_inference.py)
# bounds the largest logit difference relative to the largest logit. "params_after_adamw_steps" is absolute: Adam's
# step is lr * m / sqrt(v), so elements with tiny gradients move by ~lr (1e-3) whatever the rounding and the bound is a
# fraction of 5 steps' total movement rather than a kernel tolerance.
MODEL_TOLERANCES = {
    # A GPT whose matmul weights were quantized (GPT.quantize) vs the same GPT in float32 on the CPU: norm-wise relative
    # error of the logits (random 2-layer models, tests/model/test_quantize.py), and the relative change of the
    # evaluation loss of a briefly trained model (issue bound: perplexity within 0.5% / 1%, i.e. loss within
    # log(1.005) / log(1.01) nats; the test uses the loss, relative, with the same margins).
    ("cpu", "bf16-weights"): {"logits": 1.5e-2, "ppl": 5e-3},
    ("cpu", "int8-weights"): {"logits": 3e-2, "ppl": 1e-2},
    ("cuda", "float32"): {"loss": 1e-4, "params_after_adamw_steps": 5e-4},
    ("cuda", "bfloat16"): {"loss": 2e-2, "logits": 3e-2, "grads": 6e-2, "logits_max": 5e-2},
}


# Beam search vs transformers (tests/sample/test_sample_beam.py). A beam's score is a sum of up to ~20 log-probabilities
# from float32 logits (transformers sums them in float32, gptx in float64): they differ by ~1e-6 (measured). A
# reference whose returned beams score closer together than BEAM_TIE_GAP is tied to rounding and its order proves
# nothing (the test then asks for another case rather than passing).
BEAM_SCORE_ATOL = 1e-5
BEAM_TIE_GAP = 1e-5


def tolerance(backend="cpu", dtype="float32"):
    return TOLERANCES[(backend, dtype)]


def model_tolerance(backend, dtype, what):
    return MODEL_TOLERANCES[(backend, dtype)][what]


def assert_close(actual, expected, backend="cpu", dtype="float32", scale=1.0, what=""):
    """Elementwise |actual - expected| <= atol * scale + rtol * |expected|, and no NaN anywhere."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert not np.isnan(actual).any(), f"{what}: NaN in the result (an output element was not written?)"
    rtol, atol = tolerance(backend, dtype)
    err = np.abs(actual - expected)
    bound = atol * scale + rtol * np.abs(expected)
    bad = err > bound
    if bad.any():
        i = np.unravel_index(np.argmax(err - bound), err.shape)
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {err.size} elements off (backend={backend}, dtype={dtype}, "
            f"rtol={rtol}, atol={atol}*{scale:.3g}); worst at {i}: got {actual[i]!r}, expected {expected[i]!r}, "
            f"max abs err {err.max():.3g}"
        )


# Data parallelism (tests/distributed): N ranks of micro-batch B vs one process of micro-batch N*B, float32 on the
# CPU. The two compute the same sums in a different order (each rank's matmuls reduce over its B*T rows, then the
# ranks' sums are added), so gradients differ by float32 rounding (~1e-7 relative). "loss" is relative per step.
# "params" is absolute after 5 AdamW steps of lr 1e-3: Adam's step lr * m / sqrt(v) turns a rounding difference in a
# gradient element near zero into up to ~lr of movement, so the bound is 10% of the 5 steps' largest total movement
# (5e-3); measured 3e-6 to 4e-5 at lr 1e-2 (2 ranks, with and without ZeRO-1).
DATA_PARALLEL_TOLERANCES = {"loss": 1e-5, "params": 5e-4}
