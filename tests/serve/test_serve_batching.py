"""Continuous batching: joining mid-run, the same tokens alone or in any batch, the queue limit, and clients that
leave (their sequence cancelled, its slot freed)."""
import asyncio
import json
import queue
import threading

import httpx
import pytest
from serve_fixtures import decode_gate, engine_of, live_server, model_dir, need_serve_extra, wait_until  # noqa: F401

need_serve_extra()

from gptx.generate_hf import eos_ids  # noqa: E402
from gptx.serve.engine import Engine, Sequence  # noqa: E402
from gptx.serve.schemas import GenParams  # noqa: E402


def _seq(m, tok, prompt, max_new, events, key, seed=0, **kw):
    p = GenParams(max_tokens=max_new, **kw)
    return Sequence(tok.encode(prompt), p, max_new, seed, 0, eos_ids(m, tok, None),
                    lambda ev: events.put((key, ev)))


def test_a_request_joins_the_running_batch_and_leaves_at_once(model_dir):
    """Engine level: B arrives while A decodes; B's tokens start at the next step and B ends long before A, and
    both equal model.generate."""
    _, m, tok = model_dir
    eng = Engine(m, tok, max_batch=4).start()
    try:
        events = queue.Queue()
        a = _seq(m, tok, "long one", 100, events, "A", seed=1, temperature=0.8)
        eng.submit([a])
        while True:  # let A make a few tokens alone
            k, ev = events.get(timeout=10)
            if ev[0] == "token" and a.made >= 5:
                break
        steps_before = eng.steps
        b = _seq(m, tok, "short", 5, events, "B", seed=2, temperature=0.8)
        eng.submit([b])
        order = []
        while len([o for o in order if o[1] == "done"]) < 2:
            k, ev = events.get(timeout=10)
            order.append((k, ev[0]))
        b_done = order.index(("B", "done"))
        a_done = order.index(("A", "done"))
        assert b_done < a_done  # B did not wait for A
        assert ("A", "token") in order[b_done:]  # A kept going after B left
        assert eng.steps > steps_before
        assert a.history[len(a.prompt):] == m.generate(tok.encode("long one"), 100, seed=[(1, 0)],
                                                       temperature=0.8, tokenizer=tok, stop_at_eos=True)
        assert b.history[len(b.prompt):] == m.generate(tok.encode("short"), 5, seed=[(2, 0)], temperature=0.8,
                                                       tokenizer=tok)
        wait_until(lambda: eng.load() == (0, 0), what="the slots to be freed")
        assert sorted(eng.free) == [0, 1, 2, 3]
    finally:
        eng.stop()


async def _complete(client, base, body):
    r = await client.post(f"{base}/v1/completions", json=body)
    assert r.status_code == 200, r.text
    return [c["text"] for c in r.json()["choices"]]


async def _stream_text(client, base, body):
    text = {}
    async with client.stream("POST", f"{base}/v1/completions", json=dict(body, stream=True)) as r:
        assert r.status_code == 200
        async for line in r.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                for c in json.loads(line[6:])["choices"]:
                    text[c["index"]] = text.get(c["index"], "") + c["text"]
    return [text[k] for k in sorted(text)]


def test_same_seed_same_tokens_alone_or_among_others(model_dir):
    """Each request once alone (max_batch 1: nothing else in the batch), then all at once in a shared batch."""
    from gptx.serve import create_app

    _, m, tok = model_dir
    bodies = [{"prompt": f"prompt number {i}" * (1 + i % 3), "max_tokens": 8 + 3 * i, "seed": 100 + i,
               "temperature": [0, 0.7, 1.0, 1.3][i % 4], "top_k": [None, 20, 5, None][i % 4], "n": 1 + i % 2}
              for i in range(10)]

    async def all_at_once(base):
        async with httpx.AsyncClient(timeout=60) as c:
            return await asyncio.gather(*[(_stream_text if i % 2 else _complete)(c, base, b)
                                          for i, b in enumerate(bodies)])

    async def one_by_one(base):
        async with httpx.AsyncClient(timeout=60) as c:
            return [await _complete(c, base, b) for b in bodies]

    with live_server(create_app(m, tok, model_name="tiny", max_batch=1)) as base:
        alone = asyncio.run(one_by_one(base))
    app = create_app(m, tok, model_name="tiny", max_batch=8)
    with live_server(app) as base:
        together = asyncio.run(all_at_once(base))
        assert engine_of(app).peak_batch >= 2  # they did share the batch
    assert together == alone


def test_queue_full_is_429(model_dir, decode_gate):
    from gptx.serve import create_app

    _, m, tok = model_dir
    app = create_app(m, tok, model_name="tiny", max_batch=1, max_queue=2)
    with live_server(app) as base, httpx.Client(timeout=30) as c:
        results = {}

        def send(name, body):
            results[name] = c.post(f"{base}/v1/completions", json=body)

        a = threading.Thread(target=send, args=("a", {"prompt": "a", "max_tokens": 3}))
        a.start()
        assert decode_gate.entered.wait(10)  # A holds the only slot, inside its decode step
        b = threading.Thread(target=send, args=("b", {"prompt": "b", "max_tokens": 3, "n": 2}))
        b.start()
        wait_until(lambda: engine_of(app).load()[0] == 2, what="B to wait in the queue")
        r = c.post(f"{base}/v1/completions", json={"prompt": "c", "max_tokens": 3})
        assert r.status_code == 429 and r.json()["error"]["code"] == "queue_full"
        decode_gate.open.set()
        a.join(30)
        b.join(30)
        assert results["a"].status_code == 200 and results["b"].status_code == 200
        assert c.post(f"{base}/v1/completions", json={"prompt": "c", "max_tokens": 3}).status_code == 200
        r = c.post(f"{base}/v1/completions", json={"prompt": ["a", "b"], "max_tokens": 3, "n": 2})
        assert r.status_code == 400 and r.json()["error"]["code"] == "too_many_sequences"  # 4 never fit in 2
        r = c.post(f"{base}/v1/chat/completions", json={"messages": [{"role": "user", "content": "a"}], "n": 3,
                                                        "max_tokens": 2})
        assert r.status_code == 400 and r.json()["error"]["param"] == "n"


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "non-stream"])
def test_client_that_leaves_frees_its_slot(model_dir, decode_gate, stream):
    from gptx.serve import create_app

    _, m, tok = model_dir
    app = create_app(m, tok, model_name="tiny", max_batch=2)
    # Greedy from "ab": the first token is a whole character, so its chunk is sent before the gated decode step
    # (a token that is half a UTF-8 character sends nothing until the next one).
    assert m.generate([97, 98], 1, temperature=0)[0] < 128
    body = {"prompt": "ab", "max_tokens": 100, "stream": stream, "temperature": 0}
    with live_server(app) as base:
        eng = engine_of(app)
        if stream:
            with httpx.Client(timeout=30) as c:
                with c.stream("POST", f"{base}/v1/completions", json=body) as r:
                    first = next(line for line in r.iter_lines() if line.startswith("data: "))
                    assert json.loads(first[6:])["choices"][0]["finish_reason"] is None
                    assert eng.load() == (0, 1)
                    seq = eng.running[0]
                # the response is closed here: the connection goes
        else:
            with httpx.Client(timeout=0.5) as c:
                with pytest.raises(httpx.ReadTimeout):
                    c.post(f"{base}/v1/completions", json=body)
            seq = eng.running[0]
        wait_until(lambda: seq.cancelled, what="the server to notice the client left")
        decode_gate.open.set()
        wait_until(lambda: eng.load() == (0, 0), what="the slot to be freed")
        assert seq.made < 100 and sorted(eng.free) == [0, 1]
        with httpx.Client(timeout=30) as c:
            metrics = c.get(f"{base}/metrics").text
            assert "gptx_cancelled_sequences_total 1.0" in metrics
            assert c.post(f"{base}/v1/completions", json={"prompt": "a", "max_tokens": 2}).status_code == 200
