"""GPT-2 124M inference at batch 1: gptx (f32, bf16 and int8 weights) vs transformers (PyTorch CPU) vs llama.cpp
(f32, f16 and q8_0).

All run the same random weights: gptx.GPT(GPT-2 small config, seed=0).save_pretrained(dir) is loaded by
transformers' GPT2LMHeadModel and written as GGUF (f32, f16, q8_0) by gptx.export_gguf for llama-cpp-python; gptx
bf16 / int8 are GPT.quantize of copies of the same model. First a check: greedy next tokens for a fixed 32-token
prompt must agree among the float32 runs (the quantized ones are reported). Then, in turns (gptx, gptx bf16, gptx
int8, torch, llama f32, ...), for --repeats rounds: prompt processing of 128 and 512 tokens (one pass, logits of the
last token only) and decode of 128 greedy tokens one at a time after a 128-token prompt (the prefill is not timed).
Tables show medians. The decode floor is the time to read every weight once per token (f32: all parameters x 4
bytes, the tied LM head once; f16 / bf16: 2-D weights x 2 bytes; q8_0 / int8: 2-D weights x 34/32 bytes) at the
memory bandwidth gptx-bench measures. On a CPU with AMX, llama.cpp's q8_0 model loads without its extra buffer types
(AMX repacking of q8_0 crashes there: BUILD-NOTES); f32 and f16 never use them.

    python bench/compare_infer.py --write            # from the repository root, after pip install .
    python bench/compare_infer.py --quick            # smoke test
Options: --threads N (2), --repeats N (5), --decode-tokens N (128), --workdir DIR (weights, reused if present),
--skip-llama, --skip-torch, --results PATH.
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
    p.add_argument("--skip-torch", action="store_true")
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
    import gptx.export_gguf as export_gguf
    from gptx.model import GPT, GPTConfig
    from gptx.tokenizer import Tokenizer

    model = GPT(GPTConfig(**CONFIG), seed=0)
    hf = os.path.join(workdir, "hf")
    stamp = os.path.join(workdir, "made.json")
    want = {"config": CONFIG, "seed": 0, "converter": os.path.getmtime(export_gguf.__file__)}
    fresh = os.path.exists(stamp) and json.load(open(stamp)) == want
    paths = {dt: os.path.join(workdir, f"gpt2-{dt}.gguf") for dt in ("f32", "f16", "q8_0")}
    if not fresh or not all(os.path.exists(p) for p in paths.values()):
        os.makedirs(workdir, exist_ok=True)
        t = time.perf_counter()
        model.save_pretrained(hf)
        if not ARGS.skip_llama:
            for dt, p in paths.items():
                export_gguf.write_gguf(model, Tokenizer.gpt2(), p, dt)
        with open(stamp, "w") as f:
            json.dump(want, f)
        print(f"weights written to {workdir} in {time.perf_counter() - t:.1f} s")
    return model, hf, paths


# ------------------------------------------------------------------------------------------------ runners
class GptxRunner:
    def __init__(self, model, weights="f32"):
        from gptx.kv_cache import KVCache

        self.name = "gptx" if weights == "f32" else f"gptx {weights}"
        self.weights = weights
        if weights != "f32":
            model = model.to("cpu").quantize(weights)  # a copy: the f32 runner keeps its model
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
    weights = "f32"

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


def cpu_has_amx() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and "amx_int8" in line.split() for line in f)
    except OSError:
        return False


class LlamaRunner:
    def __init__(self, path, dtype, threads):
        import llama_cpp
        import llama_cpp.llama_cpp as C

        self.name = f"llama.cpp {dtype}"
        self.weights = dtype
        self.lib = llama_cpp
        default = C.llama_model_default_params
        self.no_extra_bufts = dtype == "q8_0" and cpu_has_amx()
        if self.no_extra_bufts:  # llama.cpp's AMX q8_0 repacking segfaults on this kind of CPU (see the docstring)
            def params():
                p = default()
                p.use_extra_bufts = False
                return p

            C.llama_model_default_params = params
        try:
            self.llm = llama_cpp.Llama(model_path=path, n_ctx=CONFIG["block_size"], n_batch=512, n_threads=threads,
                                       n_threads_batch=threads, logits_all=False, verbose=False)
        finally:
            C.llama_model_default_params = default
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
    """Bytes of weights read per decoded token: f32 all parameters; f16 / bf16 2-D weights at 2 bytes, q8_0 / int8
    at 34/32 (one float16 scale per 32), 1-D at 4."""
    params = [a for _, a in model.named_parameters()]
    n = sum(a.size for a in params)
    n2d = sum(a.size for a in params if a.ndim == 2)
    half, q8 = 2 * n2d + 4 * (n - n2d), int(34 / 32 * n2d) + 4 * (n - n2d)
    return {"f32": 4 * n, "f16": half, "bf16": half, "q8_0": q8, "int8": q8}, n


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
        ok &= same_next or r.weights != "f32"  # quantized weights may pick another near-tied token
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
    runners = [GptxRunner(model), GptxRunner(model, "bf16"), GptxRunner(model, "int8")]
    if not a.skip_torch:
        runners.append(TorchRunner(hf, a.threads))
    if not a.skip_llama:
        try:
            import gguf
            import llama_cpp

            versions["llama-cpp-python"] = llama_cpp.__version__
            versions["gguf"] = getattr(gguf, "__version__", None) or _dist_version("gguf")
            for dt in ("f32", "f16", "q8_0"):
                runners.append(LlamaRunner(ggufs[dt], dt, a.threads))
        except Exception as e:  # the binding missing or a load failure: say so and go on without it
            failures.append(f"llama.cpp: {type(e).__name__}: {e}")
            print(f"llama.cpp skipped: {failures[-1]}")
    torch_attn = next((r.attn for r in runners if r.name == "torch"), "-")
    print(f"{cpu_model()} | {a.threads} threads | load before: {load_before} | torch attention: {torch_attn}")
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
        dt = r.weights
        floor = bw * 1e9 / wbytes[dt]
        tg = a.decode_tokens / med(t["tg"])
        same = sum(x == y for x, y in zip(tg_tokens[r.name], ref))
        rows.append([r.name, dt, *(f"{T / med(t['pp'][T]):.1f}" for T in PROMPT_LENS), f"{tg:.1f}",
                     f"{1e3 / tg:.1f}", f"{floor:.1f} ({wbytes[dt] / 1e6:.0f} MB)", f"{100 * tg / floor:.0f}%",
                     f"{same}/{a.decode_tokens}"])
    ratios = []

    def ratio(x, y):
        if x not in times or y not in times:
            return
        tx, ty = times[x], times[y]
        ratios.append([f"{x} / {y}", *(f"{med(ty['pp'][T]) / med(tx['pp'][T]):.2f}x" for T in PROMPT_LENS),
                       f"{med(ty['tg']) / med(tx['tg']):.2f}x"])

    for r in runners[1:]:
        if r.weights == "f32":
            ratio("gptx", r.name)
    ratio("gptx bf16", "gptx")
    ratio("gptx int8", "gptx")
    ratio("gptx bf16", "llama.cpp f16")
    ratio("gptx int8", "llama.cpp q8_0")
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
            "## GPT-2 124M inference, batch 1: gptx (f32, bf16, int8 weights) vs transformers (PyTorch CPU) vs llama.cpp",
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
            f"KVCache (bf16 / int8: GPT.quantize); torch: GPT2LMHeadModel ({torch_attn} attention) with "
            f"past_key_values under inference_mode; llama.cpp: llama-cpp-python Llama.eval (n_batch 512, default "
            f"settings{'; q8_0 without extra buffer types (AMX repacking crashes here)' if cpu_has_amx() else ''}), "
            f"GGUF from gptx.export_gguf. Decode floor: bandwidth {bw:.1f} GB/s ({bw_how}) / weight bytes per token "
            f"({nparams / 1e6:.1f}M parameters; f32 x 4 bytes, tied LM head once; f16 / bf16: 2-D weights x 2 bytes; "
            f"q8_0 / int8: x 34/32). Greedy = gptx: decode tokens equal to gptx f32's (random weights give near-tied "
            f"logits, so 16-bit and 8-bit weights may drift).",
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
