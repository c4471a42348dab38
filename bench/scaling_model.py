"""The step-time model of docs/SCALING.md: data-parallel GPT-2 124M / 350M on nodes of 8 H100s (NVLink inside a
node, 400 Gb/s between nodes), from the measured H200 step time and the bandwidth terms of ring collectives.

    python bench/scaling_model.py            # prints the tables docs/SCALING.md quotes

Every input is a named constant below with where it comes from; nothing here is a measurement of the model's output.
"""
import math

# ---- inputs --------------------------------------------------------------------------------------------------------
# Measured (bench/RESULTS.md, "CUDA: gptx vs PyTorch on one NVIDIA H200"): GPT-2 124M, B16 T1024 bf16, 101.043 ms per
# step = 16,384 tokens. The H100 SXM has the same GH100 compute (132 SMs); the H200's faster HBM makes it the faster
# of the two, so using its time for an H100 overstates compute speed and so understates the scaling (conservative).
T_STEP_124M_S = 0.101043
TOKENS_PER_GPU_STEP = 16 * 1024

# Training FLOPs per token: 6 * parameters (forward + backward of every weight, LM head included) + 12 * L * T * C
# (attention scores and values, forward + backward; Kaplan et al. 2020 / the PaLM appendix).
MODELS = {  # name: (parameters (gptx's parameter table, wte padded to 50304 rows), n_layer, n_embd, wte elements)
    "GPT-2 124M": (124_475_904, 12, 768, 50304 * 768),
    "GPT-2 350M": (354_871_296, 24, 1024, 50304 * 1024),
}
T_CONTEXT = 1024

# Bandwidths (assumptions, not measurements; stated so they can be replaced by nccl-tests figures of a real cluster):
# NVLink 4 on H100 SXM is 900 GB/s per GPU in both directions together (NVIDIA datasheet), 450 GB/s each way; NCCL's
# ring all-reduce reaches ~80% of it in published nccl-tests runs on 8-GPU H100 nodes: 360 GB/s bus bandwidth.
NVLINK_BUS_BPS = 360e9
# 400 Gb/s between nodes = 50 GB/s per node (one NIC per node, as the question states); 90% of line rate achieved.
NODE_LINK_BPS = 0.9 * 400e9 / 8
GPUS_PER_NODE = 8
# A collective's fixed cost per ring step (NCCL's latency term): ~5 us on NVLink, ~10 us across InfiniBand/RoCE.
ALPHA_NVLINK_S, ALPHA_NET_S = 5e-6, 10e-6
GRAD_BYTES = 4  # gptx sums the float32 gradient buffer (bf16 compute keeps float32 master gradients)
BACKWARD_SHARE = 2 / 3  # backward is ~2/3 of a step's FLOPs: the window the gradient sums can hide in


def flops_per_token(name):
    p, L, C, _ = MODELS[name]
    return 6 * p + 12 * L * T_CONTEXT * C


def compute_s(name, tokens_per_gpu):
    """Per-GPU step time, scaled from the measured 124M step by FLOPs (same achieved FLOP/s assumed)."""
    rate = TOKENS_PER_GPU_STEP * flops_per_token("GPT-2 124M") / T_STEP_124M_S
    return tokens_per_gpu * flops_per_token(name) / rate


def allreduce_s(nbytes, n_gpus):
    """Hierarchical ring all-reduce (what NCCL does across nodes): reduce-scatter and all-gather inside the node
    over NVLink, and a ring all-reduce of the node's data between nodes over its one link."""
    g = min(n_gpus, GPUS_PER_NODE)
    nodes = math.ceil(n_gpus / GPUS_PER_NODE)
    t = 0.0
    if g > 1:
        t += 2 * (g - 1) / g * nbytes / NVLINK_BUS_BPS + 2 * (g - 1) * ALPHA_NVLINK_S
    if nodes > 1:
        # every byte of the buffer leaves and enters the node 2 (k-1)/k times, through the one 50 GB/s link
        t += 2 * (nodes - 1) / nodes * nbytes / NODE_LINK_BPS + 2 * (nodes - 1) * ALPHA_NET_S
    return t


def step_s(name, n_gpus, tokens_per_gpu):
    """(compute, communication, exposed communication, step) seconds. Buckets of whole blocks overlap the backward
    pass, but wte's gradient is finished only at the very end (the embedding lookup is the last op of backward), so
    its sum is always exposed; the rest hides under the backward time it overlaps."""
    p, _, _, wte = MODELS[name]
    comp = compute_s(name, tokens_per_gpu)
    total = allreduce_s(p * GRAD_BYTES, n_gpus)
    last = allreduce_s(wte * GRAD_BYTES, n_gpus)
    rest = total - last
    exposed = last + max(0.0, rest - BACKWARD_SHARE * comp)
    return comp, total, exposed, comp + exposed


def table(name, global_tokens=None):
    rows = []
    for n in (1, 8, 16, 32, 64, 128, 256, 512):
        tokens = TOKENS_PER_GPU_STEP if global_tokens is None else global_tokens / n
        if tokens < 1024:  # less than one sequence per GPU
            continue
        comp, total, exposed, step = step_s(name, n, tokens)
        tok_s = n * tokens / step
        base = TOKENS_PER_GPU_STEP / compute_s(name, TOKENS_PER_GPU_STEP)
        rows.append((n, tokens, comp, total, exposed, step, tok_s, tok_s / (n * base)))
    return rows


def markdown():
    out = []
    for name in MODELS:
        for title, gt in (("weak scaling: 16 x 1024 tokens per GPU, the global batch grows with N", None),
                          ("strong scaling: a global batch of 512 x 1024 tokens (0.5 M, GPT-3's batch for these "
                           "sizes) split over N", 512 * 1024)):
            out += [f"#### {name}, {title}", "",
                    "| GPUs | tokens/GPU | compute ms | all-reduce ms | exposed ms | step ms | tokens/s | efficiency |",
                    "|---:|---:|---:|---:|---:|---:|---:|---:|"]
            for n, tok, comp, total, exp, step, tps, eff in table(name, gt):
                out.append(f"| {n} | {tok:,.0f} | {comp * 1e3:.1f} | {total * 1e3:.1f} | {exp * 1e3:.1f} | "
                           f"{step * 1e3:.1f} | {tps / 1e6:.2f} M | {eff:.0%} |")
            out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    print(markdown())
