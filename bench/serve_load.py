"""Load an OpenAI-compatible server with concurrent streaming clients: throughput and time to first token.

Starts each server itself on a free loopback port, sends the same requests to each (GPT-2 124M shapes, random
weights saved once; the same text prompts, greedy, end-of-text banned through logit_bias so every request makes
exactly --max-tokens tokens), and reports generated tokens/s over the whole run, p50/p99 time to first token and
p50/p99 request time. Runs the servers one after another, --rounds times in turn (A B A B), and keeps each one's
median round:

    gptx (continuous batching)   gptx serve --max-batch 16, --concurrency clients
    gptx, batch 1                gptx serve --max-batch 1, requests one at a time (no batching)
    llama.cpp                    llama-cpp-python's server (its own Python server around llama.cpp), f32 GGUF,
                                 --concurrency clients (it serves one request at a time; --interrupt_requests
                                 False, else each new request cuts the running one short)

    python bench/serve_load.py [--requests 32 --concurrency 16 --max-tokens 32 --prompt-words 48 --threads 2]
                               [--rounds 2] [--skip-llama] [--write]   # --write: replace its section in RESULTS.md

Time to first token counts from sending the request to the first chunk with text. A busy machine hurts servers whose
threads spin while they wait (llama.cpp's thread pool at --threads 2 on 2 shared cores): run --threads 1 too.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
CONFIG = dict(n_layer=12, n_head=12, n_embd=768, block_size=1024, vocab_size=50257)
EOT = 50256


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=32)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--prompt-words", type=int, default=48)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-batch", type=int, default=16)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--skip-llama", action="store_true")
    p.add_argument("--llama-python", default=sys.executable,
                   help="the Python that has llama-cpp-python[server] (default: this one)")
    p.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "gptx-serve-load"))
    p.add_argument("--write", action="store_true")
    p.add_argument("--results", default=os.path.join(HERE, "RESULTS.md"))
    return p.parse_args(argv)


def make_weights(workdir, with_gguf):
    """An HF GPT-2 folder with random weights and GPT-2's tokenizer, and its f32 GGUF (made once, reused)."""
    hf, gguf = os.path.join(workdir, "gpt2-random"), os.path.join(workdir, "gpt2-random-f32.gguf")
    if not os.path.exists(os.path.join(hf, "model.safetensors")):
        from gptx.model import GPT, GPTConfig
        from gptx.tokenizer import Tokenizer

        os.makedirs(workdir, exist_ok=True)
        GPT(GPTConfig(**CONFIG), seed=0).save_pretrained(hf, tokenizer=Tokenizer.gpt2())
    if with_gguf and not os.path.exists(gguf):
        import gptx
        from gptx.export_gguf import write_gguf

        model, tok = gptx.load(hf)
        write_gguf(model, tok, gguf, "f32")
    return hf, gguf


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd, probe, env=None, timeout=300):
    import httpx

    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd[:4]} exited {proc.returncode}: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(probe, timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"{cmd[:4]} not ready after {timeout} s")
        time.sleep(0.2)


def stop(proc):
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    proc.stderr.close()


def prompts(n, words, seed=0):
    import gptx

    text = gptx.shakespeare_text().split()
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        i = rng.randrange(len(text) - words)
        out.append(" ".join(text[i:i + words]))
    return out


async def one(client, url, body):
    """(time to first token, request time, tokens made) of one streamed completion."""
    t0 = time.perf_counter()
    first, chunks, usage, finish = None, 0, None, None
    async with client.stream("POST", url, json=body) as r:
        if r.status_code != 200:
            raise RuntimeError(f"{url}: HTTP {r.status_code}: {(await r.aread())[:500]!r}")
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            c = json.loads(line[6:])
            if c.get("usage"):
                usage = c["usage"]
            for ch in c.get("choices", []):
                finish = ch.get("finish_reason") or finish
            if any(ch.get("text") for ch in c.get("choices", [])):
                chunks += 1
                if first is None:
                    first = time.perf_counter() - t0
    # A server that sends no usage: "length" means max_tokens were made (end-of-text is banned), else count chunks.
    made = usage["completion_tokens"] if usage else (body["max_tokens"] if finish == "length" else chunks)
    return first, time.perf_counter() - t0, made


async def load(base, model, texts, a, concurrency):
    import httpx

    url = f"{base}/v1/completions"
    queue = list(enumerate(texts))
    results = [None] * len(texts)

    async def worker(client):
        while queue:
            i, text = queue.pop(0)
            body = {"model": model, "prompt": text, "max_tokens": a.max_tokens, "temperature": 0, "stream": True,
                    "logit_bias": {str(EOT): -100}}
            results[i] = await one(client, url, body)

    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=concurrency)) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*[worker(client) for _ in range(concurrency)])
        wall = time.perf_counter() - t0
    return wall, results


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(round(q / 100 * (len(xs) - 1)))))]


def summarize(wall, results):
    ttft = [r[0] for r in results]
    req = [r[1] for r in results]
    tokens = sum(r[2] for r in results)
    return {"tokens_per_s": tokens / wall, "tokens": tokens, "wall_s": wall, "ttft_p50": pct(ttft, 50),
            "ttft_p99": pct(ttft, 99), "req_p50": pct(req, 50), "req_p99": pct(req, 99)}


def main():
    a = parse_args()
    hf, gguf = make_weights(a.workdir, not a.skip_llama)
    texts = prompts(a.requests, a.prompt_words)
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    servers = {
        "gptx serve, continuous batching": (
            [sys.executable, "-m", "gptx", "serve", hf, "--max-batch", str(a.max_batch), "--threads",
             str(a.threads), "--log-level", "warning"], "/health", "gpt2-random", a.concurrency),
        "gptx serve, batch 1 (sequential requests)": (
            [sys.executable, "-m", "gptx", "serve", hf, "--max-batch", "1", "--threads", str(a.threads),
             "--log-level", "warning"], "/health", "gpt2-random", 1),
    }
    if not a.skip_llama:
        servers["llama.cpp (llama-cpp-python server, f32)"] = (
            [a.llama_python, "-m", "llama_cpp.server", "--model", gguf, "--n_threads", str(a.threads),
             "--n_threads_batch", str(a.threads), "--n_ctx", "1024", "--verbose", "False",
             "--interrupt_requests", "False"], "/v1/models", gguf,
            a.concurrency)
    rounds = {name: [] for name in servers}
    for r in range(a.rounds):
        for name, (cmd, probe, model, conc) in servers.items():
            port = free_port()
            proc = start(cmd + ["--host", "127.0.0.1", "--port", str(port)], f"http://127.0.0.1:{port}{probe}",
                         env)
            try:
                asyncio.run(load(f"http://127.0.0.1:{port}", model, texts[:2], a, 1))  # warm-up
                wall, results = asyncio.run(load(f"http://127.0.0.1:{port}", model, texts, a, conc))
            finally:
                stop(proc)
            s = summarize(wall, results)
            rounds[name].append(s)
            print(f"round {r + 1} {name}: {s['tokens_per_s']:.1f} tok/s, TTFT p50 {s['ttft_p50']:.2f} s "
                  f"p99 {s['ttft_p99']:.2f} s, request p50 {s['req_p50']:.2f} s p99 {s['req_p99']:.2f} s",
                  flush=True)
    best = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in rounds.items()}
    base = best["gptx serve, batch 1 (sequential requests)"]["tokens_per_s"]
    rows = ["| server | clients | tokens/s | vs gptx batch 1 | TTFT p50 / p99 (s) | request p50 / p99 (s) |",
            "|---|---|---|---|---|---|"]
    for name, s in best.items():
        rows.append(f"| {name} | {servers[name][3]} | {s['tokens_per_s']:.1f} | {s['tokens_per_s'] / base:.2f}x | "
                    f"{s['ttft_p50']:.2f} / {s['ttft_p99']:.2f} | {s['req_p50']:.2f} / {s['req_p99']:.2f} |")
    from results_md import cpu_model

    loadavg = " ".join(f"{x:.2f}" for x in os.getloadavg())
    head = (f"### Serving: {a.requests} streamed completions, {a.prompt_words}-word prompts, {a.max_tokens} tokens "
            f"each, greedy (GPT-2 124M shapes, random weights, f32, {a.threads} thread{'s' * (a.threads > 1)})\n\n"
            f"{time.strftime('%Y-%m-%d')}, {cpu_model()}, load average after the run {loadavg}; each figure the median of "
            f"{a.rounds} rounds, servers run in turn. The machine is shared with other work: compare the rows of "
            f"one run, not absolute figures.\n\n"
            f"`python bench/serve_load.py --requests {a.requests} --concurrency {a.concurrency} --max-tokens "
            f"{a.max_tokens} --prompt-words {a.prompt_words} --threads {a.threads} --rounds {a.rounds}"
            f"{' --skip-llama' if a.skip_llama else ''} --write`\n\n")
    table = head + "\n".join(rows)
    print(table)
    if a.write:
        from results_md import write_section

        write_section(a.results, f"serve_load_t{a.threads}", table)


if __name__ == "__main__":
    main()
