"""GPT-2 124M inference at batch 1: gptx (KV cache) vs transformers (PyTorch CPU) vs llama.cpp (f32 and f16).

All three run the same random weights: gptx.GPT(GPT-2 small config, seed=0).save_pretrained(dir) is loaded by
transformers' GPT2LMHeadModel and converted to GGUF (f32 and f16) by bench/hf_to_gguf.py for llama-cpp-python.
First a check: greedy next tokens for a fixed 32-token prompt must agree. Then, in turns (gptx, torch, llama f32,
llama f16, gptx, ...), for --repeats rounds: prompt processing of 128 and 512 tokens (one pass, logits of the last
token only) and decode of 128 greedy tokens one at a time after a 128-token prompt (the prefill is not timed).
Tables show medians. The decode floor is the time to read every weight once per token (f32: all parameters x 4
bytes, the tied LM head once; f16: 2-D weights x 2 bytes) at the memory bandwidth gptx-bench measures.

    python bench/compare_infer.py --write            # from the repository root, after pip install .
    python bench/compare_infer.py --quick            # smoke test
Options: --threads N (2), --repeats N (5), --decode-tokens N (128), --workdir DIR (weights, reused if present),
--skip-llama, --results PATH.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=None, help="rounds (default 5, --quick 2)")
    p.add_argument("--decode-tokens", type=int, default=128)
    p.add_argument("--quick", action="store_true", help="2 rounds, 32 decode tokens: a smoke test")
    p.add_argument("--write", action="store_true", help="replace the compare_infer section of bench/RESULTS.md")
    p.add_argument("--results", default=os.path.join(HERE, "RESULTS.md"))
    p.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "gptx-compare-infer"))
    p.add_argument("--skip-llama", action="store_true")
    a = p.parse_args(argv)
    if a.repeats is None:
        a.repeats = 2 if a.quick else 5
    if a.quick:
        a.decode_tokens = min(a.decode_tokens, 32)
    return a


ARGS = parse_args()
# Same OpenMP settings for every runtime in this process, before any of them starts (gptx would set the spin count).
os.environ["OMP_NUM_THREADS"] = str(ARGS.threads)
os.environ.setdefault("GOMP_SPINCOUNT", "10000")
import numpy as np  # noqa: E402

from results_md import write_section  # bench/ is on sys.path when run as python bench/X.py

CONFIG = dict(n_layer=12, n_head=12, n_embd=768, block_size=1024, vocab_size=50257)
PROMPT_LENS = (128, 512)
DECODE_PROMPT = 128


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def load_avg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def make_weights(workdir):
    """The gptx model, and the HF directory and GGUF files of the same weights (made once, reused)."""
    from gptx.model import GPT, GPTConfig

    import hf_to_gguf

    model = GPT(GPTConfig(**CONFIG), seed=0)
    hf = os.path.join(workdir, "hf")
    stamp = os.path.join(workdir, "made.json")
    want = {"config": CONFIG, "seed": 0, "converter": os.path.getmtime(os.path.join(HERE, "hf_to_gguf.py"))}
    fresh = os.path.exists(stamp) and json.load(open(stamp)) == want
    paths = {"f32": os.path.join(workdir, "gpt2-f32.gguf"), "f16": os.path.join(workdir, "gpt2-f16.gguf")}
    if not fresh or not all(os.path.exists(p) for p in paths.values()):
        os.makedirs(workdir, exist_ok=True)
        t = time.perf_counter()
        model.save_pretrained(hf)
        if not ARGS.skip_llama:
            for dt, p in paths.items():
                hf_to_gguf.convert(hf, p, dt)
        with open(stamp, "w") as f:
            json.dump(want, f)
        print(f"weights written to {workdir} in {time.perf_counter() - t:.1f} s")
    return model, hf, paths


# ------------------------------------------------------------------------------------------------ runners
class GptxRunner:
    name = "gptx"

    def __init__(self, model):
        from gptx.kv_cache import KVCache

        self.model = model
        self.cache = KVCache.for_model(model, 1, max_len=CONFIG["block_size"])

    def prefill(self, ids):
        from gptx.inference import prefill

        self.cache.reset()
        return prefill(self.model, self.cache, 0, ids)

    def step(self, tok):
        from gptx.inference import decode

        return decode(self.model, self.cache, [0], [tok])[0]


class TorchRunner:
    name = "torch"

    def __init__(self, hf_dir, threads):
        import torch
        from transformers import GPT2LMHeadModel
        from transformers.utils import logging as transformers_logging

        torch.set_num_threads(threads)
        transformers_logging.set_verbosity_error()
        transformers_logging.disable_progress_bar()
        warnings.filterwarnings("ignore", category=FutureWarning)
        self.torch = torch
        self.model = GPT2LMHeadModel.from_pretrained(hf_dir, dtype=torch.float32).eval()
        self.attn = getattr(self.model.config, "_attn_implementation", "?")
        self.past = None

    def prefill(self, ids):
        t = self.torch
        with t.inference_mode():
            out = self.model(t.tensor([ids], dtype=t.long), use_cache=True)
        self.past = out.past_key_values
        return out.logits[0, -1].numpy()

    def step(self, tok):
        t = self.torch
        with t.inference_mode():
            out = self.model(t.tensor([[tok]], dtype=t.long), past_key_values=self.past, use_cache=True)
        self.past = out.past_key_values
        return out.logits[0, -1].numpy()


class LlamaRunner:
    def __init__(self, path, dtype, threads):
        import llama_cpp

        self.name = f"llama.cpp {dtype}"
        self.lib = llama_cpp
        self.llm = llama_cpp.Llama(model_path=path, n_ctx=CONFIG["block_size"], n_batch=512, n_threads=threads,
                                   n_threads_batch=threads, logits_all=False, verbose=False)
        self.n_vocab = self.llm.n_vocab()

    def _last(self):
        # With logits_all=False, Llama.eval no longer copies logits into llm.scores: read the context's last row.
        ptr = self.lib.llama_get_logits_ith(self.llm._ctx.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))

    def prefill(self, ids):
        self.llm.reset()
        self.llm.eval(list(ids))
        return self._last()

    def step(self, tok):
        self.llm.eval([int(tok)])
        return self._last()


# ------------------------------------------------------------------------------------------------ measuring
def time_prefill(r, ids):
    t = time.perf_counter()
    r.prefill(ids)
    return time.perf_counter() - t


def time_decode(r, prompt, n):
    """Seconds for n greedy steps after a (not timed) prefill, and the tokens made."""
    logits = r.prefill(prompt)
    toks = []
    t = time.perf_counter()
    for _ in range(n):
        tok = int(np.argmax(logits))
        toks.append(tok)
        logits = r.step(tok)
    return time.perf_counter() - t, toks


def bandwidth_gbs():
    """(GB/s, how): the installed gptx-bench's STREAM-like probe if there is one, else a numpy copy of 512 MiB."""
    exe = gptx_bench()
    if exe:
        out = os.path.join(ARGS.workdir, "bw.json")
        try:
            subprocess.run([exe, "--op", "add_forward", "--quick", "--no-validate", "--repeats", "1", "--threads",
                            str(ARGS.threads), "--json", out], check=True, capture_output=True, timeout=300)
            m = json.load(open(out))["machine"]
            return float(m["bandwidth_gbs"]), (f"gptx-bench probe (copy {m['copy_gbs']:.1f}, triad "
                                               f"{m['triad_gbs']:.1f} GB/s, {ARGS.threads} threads)")
        except (subprocess.SubprocessError, OSError, KeyError, ValueError) as e:
            print(f"gptx-bench failed ({e}); using a numpy copy")
    a = np.ones(512 * 2**20 // 4, dtype=np.float32)
    b = np.empty_like(a)
    ts = []
    for _ in range(5):
        t = time.perf_counter()
        np.copyto(b, a)
        ts.append(time.perf_counter() - t)
    return 2 * a.nbytes / min(ts) / 1e9, "numpy copy of 512 MiB (1 thread, read + write)"


def gptx_bench():
    """The installed package's gptx-bench (gptx.cli.bench.find_bench: the wheel's, $GPTX_BENCH or PATH), or None."""
    from gptx.cli.bench import find_bench

    try:
        return find_bench()
    except FileNotFoundError:
        return None


def weight_bytes(model):
    """Bytes of weights read per decoded token: f32 all parameters; f16 2-D weights at 2 bytes, 1-D at 4."""
    params = [a for _, a in model.named_parameters()]
    n = sum(a.size for a in params)
    n2d = sum(a.size for a in params if a.ndim == 2)
    return {"f32": 4 * n, "f16": 2 * n2d + 4 * (n - n2d)}, n


def check(runners, prompt):
    """Greedy next token, and 8 greedy tokens, of each runner vs gptx; max |logit diff| of the next token."""
    ref = None
    lines = []
    ok = True
    for r in runners:
        logits = np.asarray(r.prefill(prompt), dtype=np.float64)
        _, toks = time_decode(r, prompt, 8)
        if ref is None:
            ref = (logits, toks)
            lines.append(f"{r.name}: next {int(np.argmax(logits))}, greedy {toks}")
            continue
        diff = float(np.max(np.abs(logits - ref[0])))
        same_next = int(np.argmax(logits)) == int(np.argmax(ref[0]))
        same = sum(a == b for a, b in zip(toks, ref[1]))
        ok &= same_next
        lines.append(f"{r.name}: next {int(np.argmax(logits))} ({'=' if same_next else 'DIFFERS from'} gptx), "
                     f"greedy {toks} ({same}/8 = gptx), max |logit - gptx| {diff:.2e}")
    return ok, lines


def med(xs):
    return float(np.median(xs)) if xs else float("nan")


def markdown(rows, header):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)




def main():
    a = ARGS
    load_before = load_avg()
    import gptx
    import torch
    import transformers

    versions = {"gptx": gptx.__version__, "torch": torch.__version__, "transformers": transformers.__version__,
                "numpy": np.__version__, "python": platform.python_version()}
    failures = []
    model, hf, ggufs = make_weights(a.workdir)
    runners = [GptxRunner(model), TorchRunner(hf, a.threads)]
    if not a.skip_llama:
        try:
            import gguf
            import llama_cpp

            versions["llama-cpp-python"] = llama_cpp.__version__
            versions["gguf"] = getattr(gguf, "__version__", None) or _dist_version("gguf")
            for dt in ("f32", "f16"):
                runners.append(LlamaRunner(ggufs[dt], dt, a.threads))
        except Exception as e:  # the binding missing or a load failure: say so and go on without it
            failures.append(f"llama.cpp: {type(e).__name__}: {e}")
            print(f"llama.cpp skipped: {failures[-1]}")
    print(f"{cpu_model()} | {a.threads} threads | load before: {load_before} | torch attention: {runners[1].attn}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))

    rng = np.random.default_rng(1234)
    check_prompt = rng.integers(0, CONFIG["vocab_size"] - 1, size=32).tolist()
    ok, lines = check(runners, check_prompt)
    print("check (32-token prompt):\n  " + "\n  ".join(lines))
    if not ok:
        failures.append("greedy next token differs from gptx for: " + ", ".join(
            l.split(":")[0] for l in lines if "DIFFERS" in l))

    bw, bw_how = bandwidth_gbs()
    wbytes, nparams = weight_bytes(model)
    print(f"bandwidth {bw:.1f} GB/s ({bw_how}); {nparams / 1e6:.1f}M parameters")

    prompts = {T: rng.integers(0, CONFIG["vocab_size"] - 1, size=T).tolist() for T in PROMPT_LENS}
    times = {r.name: {"pp": {T: [] for T in PROMPT_LENS}, "tg": []} for r in runners}
    tg_tokens = {}
    for r in runners:  # warm-up: one short pass each
        time_prefill(r, prompts[128])
        time_decode(r, prompts[128], 4)
    for k in range(a.repeats):
        for r in runners:
            for T in PROMPT_LENS:
                times[r.name]["pp"][T].append(time_prefill(r, prompts[T]))
            s, toks = time_decode(r, prompts[DECODE_PROMPT][:DECODE_PROMPT], a.decode_tokens)
            times[r.name]["tg"].append(s)
            tg_tokens[r.name] = toks
            time.sleep(0.2)  # let the previous runtime's OpenMP threads stop spinning
        print(f"round {k + 1}/{a.repeats}: " + ", ".join(
            f"{n} tg {a.decode_tokens / t['tg'][-1]:.1f} tok/s" for n, t in times.items()))
    load_after = load_avg()

    ref = tg_tokens[runners[0].name]
    rows = []
    for r in runners:
        t = times[r.name]
        dt = "f16" if r.name.endswith("f16") else "f32"
        floor = bw * 1e9 / wbytes[dt]
        tg = a.decode_tokens / med(t["tg"])
        same = sum(x == y for x, y in zip(tg_tokens[r.name], ref))
        rows.append([r.name, dt, *(f"{T / med(t['pp'][T]):.1f}" for T in PROMPT_LENS), f"{tg:.1f}",
                     f"{1e3 / tg:.1f}", f"{floor:.1f} ({wbytes[dt] / 1e6:.0f} MB)", f"{100 * tg / floor:.0f}%",
                     f"{same}/{a.decode_tokens}"])
    gpp = {T: T / med(times["gptx"]["pp"][T]) for T in PROMPT_LENS}
    gtg = a.decode_tokens / med(times["gptx"]["tg"])
    ratios = []
    for r in runners[1:]:
        t = times[r.name]
        ratios.append([f"gptx / {r.name}", *(f"{gpp[T] / (T / med(t['pp'][T])):.2f}x" for T in PROMPT_LENS),
                       f"{gtg / (a.decode_tokens / med(t['tg'])):.2f}x"])
    header = ["framework", "weights", *(f"pp{T} tok/s" for T in PROMPT_LENS), f"tg{a.decode_tokens} tok/s",
              "ms/token", "decode floor tok/s (bytes/token)", "decode / floor", "greedy = gptx"]
    table = markdown(rows, header)
    rtable = markdown(ratios, ["speed ratio", *(f"pp{T}" for T in PROMPT_LENS), f"tg{a.decode_tokens}"])
    print()
    print(table)
    print()
    print(rtable)
    print(f"load average before {load_before}, after {load_after}")
    if failures:
        print("FAILED: " + "; ".join(failures))

    if a.write:
        cmd = "python bench/compare_infer.py " + " ".join(sys.argv[1:])
        text = "\n".join([
            "## GPT-2 124M inference, batch 1: gptx vs transformers (PyTorch CPU) vs llama.cpp",
            "",
            f"{time.strftime('%Y-%m-%d %H:%M %Z')} | {cpu_model()} | {a.threads} threads | "
            f"load average before {load_before}, after {load_after}",
            f"`{cmd.strip()}` | " + ", ".join(f"{k} {v}" for k, v in versions.items()),
            "",
            table,
            "",
            rtable,
            "",
            f"Same random weights (gptx GPT, seed 0) everywhere. pp: prompt of T tokens in one pass, last-token logits; "
            f"tg: {a.decode_tokens} greedy tokens one at a time after a {DECODE_PROMPT}-token prompt (prefill not "
            f"timed); medians of {a.repeats} rounds, frameworks taking turns. gptx: inference.prefill/decode with a "
            f"KVCache; torch: GPT2LMHeadModel ({runners[1].attn} attention) with past_key_values under "
            f"inference_mode; llama.cpp: llama-cpp-python Llama.eval (n_batch 512, default settings), GGUF from "
            f"bench/hf_to_gguf.py. Decode floor: bandwidth {bw:.1f} GB/s ({bw_how}) / weight bytes per token "
            f"({nparams / 1e6:.1f}M parameters; f32 x 4 bytes, tied LM head once; f16: 2-D weights x 2 bytes). "
            f"Greedy = gptx: decode tokens equal to gptx's (random weights give near-tied logits, so f16 may drift).",
            "",
            "Check (32-token prompt): " + "; ".join(lines),
        ] + ([f"", "Failed: " + "; ".join(failures)] if failures else []))
        write_section(a.results, "compare_infer", text)
        print(f"wrote {a.results}")
    return 0


def _dist_version(name):
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
