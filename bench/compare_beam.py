"""Beam search (4 beams) vs greedy decoding, time per generated token: gptx vs transformers (PyTorch CPU), same weights.

A small GPT-2-shaped model (6 layers, 6 heads, 384 wide, GPT-2's 50257-token vocabulary: the LM head is a large part
of each step, as in a real model) with random weights (gptx GPT(seed=0), saved with save_pretrained and loaded by
transformers' GPT2LMHeadModel). One 64-token prompt, 64 new tokens, no end-of-text (every run makes all 64 tokens).
Per round, in turns: gptx greedy, gptx beam 4, gptx greedy over a batch of 4 copies of the prompt (the model work of
4 beams without the search: what beam search adds on top of it is the selection and the KV-cache reorder),
transformers greedy, transformers beam 4. Times include the prompt's prefill; the table shows medians over rounds,
per generated token (of the best beam). First a check: the two beam searches' tokens are compared (informational:
with these near-uniform random weights, float32 ties may split them).

    python bench/compare_beam.py --write            # from the repository root, after pip install .
    python bench/compare_beam.py --quick            # smoke test
Options: --threads N (2), --repeats N (5), --new-tokens N (64), --results PATH.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=None, help="rounds (default 5, --quick 2)")
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--quick", action="store_true", help="2 rounds, 16 new tokens: a smoke test")
    p.add_argument("--write", action="store_true", help="replace the compare_beam section of bench/RESULTS.md")
    p.add_argument("--results", default=os.path.join(HERE, "RESULTS.md"))
    a = p.parse_args(argv)
    if a.repeats is None:
        a.repeats = 2 if a.quick else 5
    if a.quick:
        a.new_tokens = min(a.new_tokens, 16)
    return a


ARGS = parse_args()
os.environ["OMP_NUM_THREADS"] = str(ARGS.threads)  # the same for both runtimes, before either starts
import numpy as np  # noqa: E402

from results_md import cpu_model, write_section  # bench/ is on sys.path when run as python bench/X.py

CONFIG = dict(n_layer=6, n_head=6, n_embd=384, block_size=256, vocab_size=50257)
PROMPT = 64
BEAMS = 4


def main():
    import torch
    import transformers
    from transformers.utils import logging as transformers_logging

    import gptx
    from gptx.model import GPT, GPTConfig

    gptx.set_num_threads(ARGS.threads)
    torch.set_num_threads(ARGS.threads)
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    warnings.filterwarnings("ignore")
    model = GPT(GPTConfig(**CONFIG), seed=0)
    with tempfile.TemporaryDirectory() as d:
        model.save_pretrained(d)
        hf = transformers.GPT2LMHeadModel.from_pretrained(d, dtype=torch.float32).eval()
    hf.generation_config.eos_token_id = None
    hf.generation_config.pad_token_id = 0
    prompt = np.random.default_rng(0).integers(0, CONFIG["vocab_size"], size=PROMPT).tolist()
    N = ARGS.new_tokens
    x = torch.tensor([prompt])

    def hf_run(**kw):
        with torch.inference_mode():
            return hf.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=N, do_sample=False,
                               **kw)[0, PROMPT:].tolist()

    runs = {
        "gptx greedy": lambda: model.generate(prompt, N, do_sample=False, stop_at_eos=False),
        f"gptx beam {BEAMS}": lambda: model.generate(prompt, N, num_beams=BEAMS, stop_at_eos=False),
        f"gptx greedy, batch of {BEAMS}": lambda: model.generate([prompt] * BEAMS, N, do_sample=False,
                                                               stop_at_eos=False)[0],
        "transformers greedy": lambda: hf_run(),
        f"transformers beam {BEAMS}": lambda: hf_run(num_beams=BEAMS),
    }
    out = {name: f() for name, f in runs.items()}  # warm-up, and the check
    assert all(len(t) == N for t in out.values()), {k: len(v) for k, v in out.items()}
    same_beam = sum(a == b for a, b in zip(out[f"gptx beam {BEAMS}"], out[f"transformers beam {BEAMS}"]))
    same_greedy = sum(a == b for a, b in zip(out["gptx greedy"], out["transformers greedy"]))
    times = {name: [] for name in runs}
    load_before = os.getloadavg()
    for r in range(ARGS.repeats):
        for name, f in runs.items():
            t = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - t)
        print(f"round {r + 1}: " + ", ".join(f"{k} {1e3 * v[-1] / N:.2f}" for k, v in times.items()) + " ms/token")
    load_after = os.getloadavg()
    ms = {k: 1e3 * float(np.median(v)) / N for k, v in times.items()}
    best = {k: 1e3 * float(np.min(v)) / N for k, v in times.items()}  # other jobs only ever add time
    g, b = ms["gptx greedy"], ms[f"gptx beam {BEAMS}"]
    hg, hb = ms["transformers greedy"], ms[f"transformers beam {BEAMS}"]
    lines = [
        f"## Beam search ({BEAMS} beams) vs greedy, time per generated token: gptx vs transformers (PyTorch CPU)",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} | {cpu_model()} | {ARGS.threads} threads | "
        f"load average before {' '.join(f'{v:.2f}' for v in load_before)}, after "
        f"{' '.join(f'{v:.2f}' for v in load_after)}",
        f"`python bench/compare_beam.py {' '.join(sys.argv[1:])}` | gptx {gptx.__version__}, torch {torch.__version__}, transformers "
        f"{transformers.__version__}, numpy {np.__version__}, python {platform.python_version()}",
        "",
        "| run | ms / new token (median) | vs its framework's greedy | ms / new token (best round) | vs greedy |",
        "|---|---|---|---|---|",
    ]
    for name, v in ms.items():
        base, bbase = (g, best["gptx greedy"]) if name.startswith("gptx") else (hg, best["transformers greedy"])
        lines.append(f"| {name} | {v:.2f} | {v / base:.2f}x | {best[name]:.2f} | {best[name] / bbase:.2f}x |")
    lines += [
        "",
        f"| speed ratio | greedy | beam {BEAMS} |",
        "|---|---|---|",
        f"| gptx / transformers (medians) | {hg / g:.2f}x | {hb / b:.2f}x |",
        f"| gptx / transformers (best rounds) | {best['transformers greedy'] / best['gptx greedy']:.2f}x | "
        f"{best[f'transformers beam {BEAMS}'] / best[f'gptx beam {BEAMS}']:.2f}x |",
        "",
        f"Model: GPT-2 shape n_layer {CONFIG['n_layer']}, n_head {CONFIG['n_head']}, n_embd {CONFIG['n_embd']}, "
        f"vocab {CONFIG['vocab_size']} ({model.num_parameters() / 1e6:.1f}M parameters), random weights (gptx GPT "
        f"seed 0, loaded by GPT2LMHeadModel). A {PROMPT}-token prompt, {N} new tokens, no end-of-text; each time "
        f"includes the prefill; medians and best of {ARGS.repeats} rounds, the runs taking turns (on a shared "
        f"machine other jobs only add time, so the best round is the steadier figure). "
        f"'greedy, batch of {BEAMS}' is {BEAMS} copies of the prompt decoded together: the model work of "
        f"{BEAMS} beams, so beam {BEAMS} / that row is the cost of the search itself (candidate selection in "
        f"numpy over {BEAMS} x 50257 log-probabilities, the logits hooks per beam, the KV-cache reorder). "
        f"Check: gptx's tokens equal transformers' at {same_greedy}/{N} positions greedy and {same_beam}/{N} with "
        f"beam {BEAMS} (random weights of the 0.02 init leave near-ties; the exact comparison on untied weights is "
        f"tests/sample/test_sample_beam.py).",
    ]
    text = "\n".join(lines)
    print(text)
    if ARGS.write:
        write_section(ARGS.results, "compare_beam", text)
        print(f"written to {ARGS.results}")


if __name__ == "__main__":
    sys.exit(main())
