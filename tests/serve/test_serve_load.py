"""A bounded load test on loopback: 32 concurrent streaming clients x 10 requests each against one server with a
shared decode batch. No request is lost or mixed up with another: each completion equals the same request run
alone (model.generate with its seed). Stops by itself (every request has a deadline)."""
import asyncio
import json
import random

import httpx
from serve_fixtures import engine_of, live_server, model_dir, need_serve_extra  # noqa: F401 (fixture)

need_serve_extra()

CLIENTS, PER_CLIENT = 32, 10
WORDS = "to be or not that is the question whether tis nobler in the mind".split()


def _request(rng, i):
    prompt = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 12)))
    return {"prompt": prompt, "max_tokens": rng.randint(1, 24), "seed": i, "temperature": rng.choice([0, 0.8, 1.2]),
            "top_k": rng.choice([None, 40]), "stop": rng.choice([None, "e"])}


async def _stream(client, base, body):
    text, finish, ids = "", None, set()
    async with client.stream("POST", f"{base}/v1/completions", json=dict(body, stream=True)) as r:
        assert r.status_code == 200, await r.aread()
        lines = [line async for line in r.aiter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    for line in lines[:-1]:
        chunk = json.loads(line[6:])
        ids.add(chunk["id"])
        for c in chunk["choices"]:
            text += c["text"]
            finish = c["finish_reason"] or finish
    assert len(ids) == 1  # every chunk of one response carries its own id
    return text, finish, ids.pop()


def test_concurrent_streaming_clients(model_dir):
    from gptx.serve import create_app

    _, m, tok = model_dir
    rng = random.Random(0)
    bodies = [[_request(rng, c * PER_CLIENT + k) for k in range(PER_CLIENT)] for c in range(CLIENTS)]
    app = create_app(m, tok, model_name="tiny", max_batch=16, max_queue=64)

    async def client_loop(client, base, mine):
        return [await _stream(client, base, b) for b in mine]

    async def run(base):
        limits = httpx.Limits(max_connections=CLIENTS)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            return await asyncio.wait_for(asyncio.gather(*[client_loop(client, base, mine) for mine in bodies]), 120)

    with live_server(app) as base:
        results = asyncio.run(run(base))
        eng = engine_of(app)
        assert eng.peak_batch >= 8 and eng.load() == (0, 0) and sorted(eng.free) == list(range(16))
    flat = [r for rs in results for r in rs]
    assert len(flat) == CLIENTS * PER_CLIENT and len({r[2] for r in flat}) == len(flat)
    for body, (text, finish, _) in zip([b for bs in bodies for b in bs], flat):
        ids = m.generate(tok.encode(body["prompt"]), body["max_tokens"], seed=body["seed"],
                         temperature=body["temperature"], top_k=body["top_k"], tokenizer=tok)
        want = tok.decode([t for t in ids if t != tok.eot_token])
        if body["stop"] and body["stop"] in want:
            want, reason = want[:want.index(body["stop"])], "stop"
        else:
            reason = "stop" if ids[-1] == tok.eot_token else "length"
        assert (text, finish) == (want, reason), body
