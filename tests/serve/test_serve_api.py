"""Every endpoint and every error of the server, in process (starlette's TestClient), against model.generate."""
import json
import math
import threading

import numpy as np
import pytest

from gptx.sampling import log_softmax
from serve_fixtures import BLOCK, client, model_dir, need_serve_extra, wait_until  # noqa: F401 (fixtures)

need_serve_extra()


def gen_text(tok, ids):
    return tok.decode([t for t in ids if t != tok.eot_token])


def test_models_health_and_unknown_routes(client):
    assert client.get("/health").json() == {"status": "ok"}
    data = client.get("/v1/models").json()
    assert data["object"] == "list" and [m["id"] for m in data["data"]] == ["tiny"]
    assert data["data"][0]["max_model_len"] == BLOCK
    assert client.get("/v1/models/tiny").json()["id"] == "tiny"
    r = client.get("/v1/models/other")
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    r = client.get("/v1/nothing")
    assert r.status_code == 404 and set(r.json()["error"]) == {"message", "type", "param", "code"}
    r = client.get("/v1/completions")
    assert r.status_code == 405 and "error" in r.json()


@pytest.mark.parametrize("prompt", ["ROMEO:", [82, 79, 77], ["ab", "xyz!"], [[97, 98], [120]]])
def test_completion_greedy_equals_generate(client, model_dir, prompt):
    _, m, tok = model_dir
    r = client.post("/v1/completions", json={"model": "tiny", "prompt": prompt, "max_tokens": 12,
                                             "temperature": 0})
    assert r.status_code == 200, r.text
    body = r.json()
    prompts = [prompt] if isinstance(prompt, str) or isinstance(prompt[0], int) else prompt
    ids = [tok.encode(p) if isinstance(p, str) else p for p in prompts]
    want = [m.generate(p, 12, temperature=0, tokenizer=tok) for p in ids]
    assert [c["text"] for c in body["choices"]] == [gen_text(tok, w) for w in want]
    assert [c["index"] for c in body["choices"]] == list(range(len(prompts)))
    for c, w in zip(body["choices"], want):
        assert c["finish_reason"] == ("stop" if w[-1] == tok.eot_token else "length")
    assert body["object"] == "text_completion" and body["model"] == "tiny" and body["id"].startswith("cmpl-")
    assert body["usage"] == {"prompt_tokens": sum(map(len, ids)), "completion_tokens": sum(map(len, want)),
                             "total_tokens": sum(map(len, ids)) + sum(map(len, want))}


def test_sampling_with_seed_equals_generate(client, model_dir):
    """Every sampling control, n choices: the same tokens as model.generate with the same seed."""
    _, m, tok = model_dir
    kw = dict(temperature=0.9, top_p=0.95, top_k=50, min_p=0.01, presence_penalty=0.5, frequency_penalty=0.3)
    r = client.post("/v1/completions", json=dict(prompt=["to be", "or not"], max_tokens=15, seed=1234, n=3, **kw))
    assert r.status_code == 200, r.text
    want = m.generate([tok.encode("to be"), tok.encode("or not")], 15, seed=1234, num_return_sequences=3,
                      tokenizer=tok, **kw)
    assert [c["text"] for c in r.json()["choices"]] == [gen_text(tok, w) for w in want]
    again = client.post("/v1/completions", json=dict(prompt=["to be", "or not"], max_tokens=15, seed=1234, n=3,
                                                     **kw)).json()
    assert [c["text"] for c in again["choices"]] == [c["text"] for c in r.json()["choices"]]
    other = client.post("/v1/completions", json=dict(prompt="to be", max_tokens=15, seed=99, **kw)).json()
    assert other["choices"][0]["text"] != r.json()["choices"][0]["text"]


def test_stop_strings_are_cut(client, model_dir):
    _, m, tok = model_dir
    full = gen_text(tok, m.generate(tok.encode("abc"), 30, temperature=0.8, seed=5, tokenizer=tok))
    stop = full[6:8]  # a piece in the middle of the text
    assert len(stop) == 2 and full.find(stop) >= 0
    for stream in (False, True):
        body = {"prompt": "abc", "max_tokens": 30, "temperature": 0.8, "seed": 5, "stop": [stop, "\x00never"]}
        if stream:
            text, reason = _stream_text(client, "/v1/completions", body)
        else:
            c = client.post("/v1/completions", json=body).json()["choices"][0]
            text, reason = c["text"], c["finish_reason"]
        assert text == full[:full.find(stop)] and reason == "stop"


def _stream_text(client, path, body, chat=False):
    """(joined text, last finish_reason, chunks) of a streamed request."""
    chunks = _stream(client, path, body)
    key = (lambda c: c["delta"].get("content", "")) if chat else (lambda c: c["text"])
    text = "".join(key(c) for ch in chunks for c in ch["choices"])
    reasons = [c["finish_reason"] for ch in chunks for c in ch["choices"] if c["finish_reason"]]
    return text, reasons[-1]


def _stream(client, path, body):
    with client.stream("POST", path, json=dict(body, stream=True)) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [x for x in r.iter_lines() if x.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    return [json.loads(x[len("data: "):]) for x in lines[:-1]]


def test_stream_equals_non_stream_and_usage(client, model_dir):
    _, m, tok = model_dir
    body = {"prompt": "hello", "max_tokens": 20, "temperature": 1.0, "seed": 7, "n": 2}
    full = client.post("/v1/completions", json=body).json()
    chunks = _stream(client, "/v1/completions", body)
    for k in range(2):
        assert "".join(c["text"] for ch in chunks for c in ch["choices"] if c["index"] == k) == \
            full["choices"][k]["text"]
    # Without stream_options: usage rides on the last chunk only.
    assert [("usage" in ch) for ch in chunks] == [False] * (len(chunks) - 1) + [True]
    assert chunks[-1]["usage"] == full["usage"]
    # With stream_options.include_usage (OpenAI): usage null on every chunk, then a last chunk with no choices.
    chunks = _stream(client, "/v1/completions", dict(body, stream_options={"include_usage": True}))
    assert all(ch["usage"] is None for ch in chunks[:-1])
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == full["usage"]


def test_echo_logprobs_are_prompt_log_likelihoods(client, model_dir):
    """echo + logprobs + max_tokens 0: each prompt token's log-probability given the ones before (first: null),
    checked against the model's own full-sequence forward pass."""
    _, m, tok = model_dir
    text = "The quick brown fox"
    ids = tok.encode(text)
    r = client.post("/v1/completions", json={"prompt": text, "max_tokens": 0, "echo": True, "logprobs": 3})
    assert r.status_code == 200, r.text
    c = r.json()["choices"][0]
    assert c["text"] == text and c["finish_reason"] == "length"
    lp = c["logprobs"]
    assert lp["tokens"] == [tok.decode([t]) for t in ids]
    assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
    logits, _ = m.forward(np.array([ids]))
    ref = np.array([log_softmax(np.asarray(logits, np.float64)[0, t - 1])[ids[t]] for t in range(1, len(ids))])
    np.testing.assert_allclose(lp["token_logprobs"][1:], ref, rtol=1e-4, atol=1e-4)
    assert all(len(d) == 3 for d in lp["top_logprobs"][1:])
    assert lp["text_offset"] == list(range(len(text)))  # bytes tokenizer, ASCII: one character per token
    assert r.json()["usage"] == {"prompt_tokens": len(ids), "completion_tokens": 0, "total_tokens": len(ids)}


def test_logprobs_of_generated_tokens(client, model_dir):
    _, m, tok = model_dir
    r = client.post("/v1/completions", json={"prompt": "ab", "max_tokens": 6, "temperature": 0, "logprobs": 2,
                                             "echo": True})
    c = r.json()["choices"][0]
    ids = m.generate(tok.encode("ab"), 6, temperature=0, tokenizer=tok, stop_at_eos=False)
    lp = c["logprobs"]
    assert len(lp["tokens"]) == 2 + 6 and lp["token_logprobs"][0] is None
    logits, _ = m.forward(np.array([tok.encode("ab") + ids]))
    z = np.asarray(logits, np.float64)[0]
    seq = tok.encode("ab") + ids
    ref = [log_softmax(z[t - 1])[seq[t]] for t in range(1, len(seq))]
    np.testing.assert_allclose(lp["token_logprobs"][1:], ref, rtol=1e-4, atol=1e-4)
    for d, t in zip(lp["top_logprobs"][2:], ids):  # greedy: the chosen token is the most likely
        assert max(d.values()) == pytest.approx(lp["token_logprobs"][lp["top_logprobs"].index(d)])
    assert c["text"].startswith("ab") and lp["text_offset"][:3] == [0, 1, 2]


def test_chat_completion_and_stream(client, model_dir):
    from gptx.serve.chat import render

    _, m, tok = model_dir
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]
    prompt = render(msgs)
    assert prompt == "System: Be brief.\n\nUser: Hello\n\nAssistant:"
    body = {"model": "tiny", "messages": msgs, "max_tokens": 10, "temperature": 0}
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    want = gen_text(tok, m.generate(tok.encode(prompt), 10, temperature=0, tokenizer=tok))
    for s in ("\n\nUser:", "\n\nSystem:"):
        want = want.split(s)[0]
    assert out["choices"][0]["message"] == {"role": "assistant", "content": want}
    assert out["object"] == "chat.completion" and out["usage"]["prompt_tokens"] == len(tok.encode(prompt))
    chunks = _stream(client, "/v1/chat/completions", body)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(ch["object"] == "chat.completion.chunk" for ch in chunks)
    assert "".join(c["delta"].get("content", "") for ch in chunks for c in ch["choices"]) == want
    assert chunks[-1]["usage"] == out["usage"]
    # max_tokens omitted: the rest of the context; logprobs in chat's form
    r = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": [
        {"type": "text", "text": "Hi"}]}], "logprobs": True, "top_logprobs": 2, "seed": 1, "max_completion_tokens": 4})
    c = r.json()["choices"][0]
    assert len(c["logprobs"]["content"]) <= 4
    for e in c["logprobs"]["content"]:
        assert set(e) == {"token", "logprob", "bytes", "top_logprobs"} and len(e["top_logprobs"]) == 2
        assert math.isfinite(e["logprob"]) and e["logprob"] <= 0


BAD = [
    ({"prompt": "a", "max_tokens": -1}, "max_tokens"),
    ({"prompt": "a", "max_tokens": "5"}, "max_tokens"),
    ({"prompt": "a", "temperature": 3}, "temperature"),
    ({"prompt": "a", "temperature": True}, "temperature"),
    ({"prompt": "a", "top_p": 0}, "top_p"),
    ({"prompt": "a", "top_k": 1.5}, "top_k"),
    ({"prompt": "a", "min_p": 2}, "min_p"),
    ({"prompt": "a", "presence_penalty": 5}, "presence_penalty"),
    ({"prompt": "a", "frequency_penalty": "x"}, "frequency_penalty"),
    ({"prompt": "a", "stop": 5}, "stop"),
    ({"prompt": "a", "stop": [""]}, "stop"),
    ({"prompt": "a", "seed": "s"}, "seed"),
    ({"prompt": "a", "n": 0}, "n"),
    ({"prompt": "a", "logprobs": 99}, "logprobs"),
    ({"prompt": "a", "echo": "yes"}, "echo"),
    ({"prompt": "a", "stream": 1}, "stream"),
    ({"prompt": "a", "stream_options": {"include_usage": True}}, "stream_options"),
    ({"prompt": "a", "logit_bias": {"999": 1}}, "logit_bias"),
    ({"prompt": "a", "suffix": "end"}, "suffix"),
    ({"prompt": "a", "best_of": 3}, "best_of"),
    ({"prompt": "a", "frobnicate": 1}, "frobnicate"),
    ({}, "prompt"),
    ({"prompt": []}, "prompt"),
    ({"prompt": [1, 300]}, "prompt"),
    ({"prompt": [[1], []]}, "prompt[1]"),
    ({"prompt": ["a", 5]}, "prompt[1]"),
    ({"prompt": {"a": 1}}, "prompt"),
]


@pytest.mark.parametrize("body,param", BAD, ids=[p for _, p in BAD])
def test_bad_completion_fields_are_400_naming_the_field(client, body, param):
    r = client.post("/v1/completions", json=body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and param in err["message"] and err["type"] == "invalid_request_error"


BAD_CHAT = [
    ({}, "messages"),
    ({"messages": []}, "messages"),
    ({"messages": ["hi"]}, "messages[0]"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "user"}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages[0].content[0]"),
    ({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2}, "top_logprobs"),
    ({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]}, "tools"),
    ({"messages": [{"role": "user", "content": "x"}], "max_completion_tokens": -2}, "max_completion_tokens"),
]


@pytest.mark.parametrize("body,param", BAD_CHAT, ids=[p for _, p in BAD_CHAT])
def test_bad_chat_fields_are_400_naming_the_field(client, body, param):
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


def test_malformed_bodies(client):
    for raw in (b"{not json", b"", b"\xff\xfe", b"[1, 2]", b"null", b'"text"', b"[" * 100000 + b"]" * 100000,
                b'{"prompt": NaN}'):
        r = client.post("/v1/completions", content=raw, headers={"content-type": "application/json"})
        assert r.status_code == 400, (raw, r.text)
        assert r.json()["error"]["param"] == "body"
    r = client.post("/v1/completions", json={"model": "gpt-4", "prompt": "a"})
    assert r.status_code == 404 and r.json()["error"]["param"] == "model"


def test_prompt_too_long_is_400(client):
    r = client.post("/v1/completions", json={"prompt": "x" * (BLOCK + 1), "max_tokens": 0})
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
    assert r.json()["error"]["param"] == "prompt"
    r = client.post("/v1/completions", json={"prompt": "x" * (BLOCK - 5), "max_tokens": 6})
    assert r.status_code == 400 and r.json()["error"]["param"] == "max_tokens"
    r = client.post("/v1/completions", json={"prompt": "x" * (BLOCK - 5), "max_tokens": 5, "temperature": 0})
    assert r.status_code == 200 and r.json()["usage"]["total_tokens"] == BLOCK
    r = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "y" * BLOCK}]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"


def test_empty_prompt_starts_at_end_of_text(client, model_dir):
    _, m, tok = model_dir
    r = client.post("/v1/completions", json={"prompt": "", "max_tokens": 5, "temperature": 0})
    assert r.json()["choices"][0]["text"] == gen_text(tok, m.generate([tok.eot_token], 5, temperature=0,
                                                                       tokenizer=tok))


def test_logit_bias_bans_and_forces(client):
    r = client.post("/v1/completions", json={"prompt": "ab", "max_tokens": 5, "temperature": 0,
                                             "logit_bias": {str(ord("z")): 100}})
    assert r.json()["choices"][0]["text"] == "zzzzz"


def test_metrics(client):
    client.post("/v1/completions", json={"prompt": "ab", "max_tokens": 3, "temperature": 0})
    client.post("/v1/completions", json={"prompt": "ab", "top_p": 9})
    text = client.get("/metrics").text
    for name in ("gptx_requests_total", "gptx_prompt_tokens_total", "gptx_generation_tokens_total",
                 "gptx_queue_length", "gptx_running_batch_size", "gptx_time_to_first_token_seconds_bucket",
                 "gptx_generation_tokens_per_second", "gptx_request_duration_seconds_bucket"):
        assert name in text, name
    assert 'gptx_requests_total{endpoint="/v1/completions",status="200"} 1.0' in text
    assert 'gptx_requests_total{endpoint="/v1/completions",status="400"} 1.0' in text
    assert "gptx_generation_tokens_total 3.0" in text and "gptx_prompt_tokens_total 2.0" in text


def test_api_key(model_dir):
    from fastapi.testclient import TestClient

    from gptx.serve import create_app

    _, m, tok = model_dir
    with TestClient(create_app(m, tok, model_name="tiny", api_key="s3cret")) as c:
        body = {"prompt": "a", "max_tokens": 1}
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            r = c.post("/v1/completions", json=body, headers=headers)
            assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        assert c.get("/v1/models").status_code == 401
        assert c.post("/v1/completions", json=body, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/health").status_code == 200  # probes need no key


def test_health_is_503_while_loading(model_dir):
    from fastapi.testclient import TestClient

    from gptx.serve import create_app

    _, m, tok = model_dir
    release = threading.Event()

    def load():
        release.wait(20)
        return m, tok

    with TestClient(create_app(load=load, model_name="tiny")) as c:
        r = c.get("/health")
        assert r.status_code == 503 and r.json()["status"] == "loading"
        r = c.post("/v1/completions", json={"prompt": "a"})
        assert r.status_code == 503 and r.json()["error"]["code"] == "model_loading"
        release.set()
        wait_until(lambda: c.get("/health").status_code == 200, what="the model to load")
        assert c.post("/v1/completions", json={"prompt": "a", "max_tokens": 2}).status_code == 200

    def broken():
        raise ValueError("no such checkpoint")

    with TestClient(create_app(load=broken)) as c:
        wait_until(lambda: c.get("/health").json()["status"] == "failed", what="the load to fail")
        assert "no such checkpoint" in c.post("/v1/completions", json={"prompt": "a"}).json()["error"]["message"]


def test_engine_error_fails_that_request_only(client, monkeypatch):
    import gptx.serve.engine as engine

    real = engine.choose

    def flaky(z, params, seed, stream, pos):
        if seed == 666:
            raise RuntimeError("injected sampler failure")
        return real(z, params, seed, stream, pos)

    monkeypatch.setattr(engine, "choose", flaky)
    r = client.post("/v1/completions", json={"prompt": "ab", "max_tokens": 4, "seed": 666})
    assert r.status_code == 500 and "injected sampler failure" in r.json()["error"]["message"]
    chunks = _stream(client, "/v1/completions", {"prompt": "ab", "max_tokens": 4, "seed": 666})
    assert "injected sampler failure" in chunks[-1]["error"]["message"]
    assert client.post("/v1/completions", json={"prompt": "ab", "max_tokens": 4, "seed": 1}).status_code == 200
    # A failing decode step fails the sequences in it; the next request is served.
    calls = []
    real_decode = engine.decode

    def failing_decode(*a, **k):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("injected decode failure")
        return real_decode(*a, **k)

    monkeypatch.setattr(engine, "decode", failing_decode)
    r = client.post("/v1/completions", json={"prompt": "ab", "max_tokens": 4})
    assert r.status_code == 500 and "injected decode failure" in r.json()["error"]["message"]
    assert client.post("/v1/completions", json={"prompt": "ab", "max_tokens": 4}).status_code == 200
    eng = client.app.fastapi.state.gptx.engine
    assert eng.thread.is_alive() and sorted(eng.free) == list(range(eng.max_batch))


TEMPLATE = ("{% for m in messages %}<{{ m.role }}>{{ m.content }}{{ eos_token }}{% endfor %}"
            "{% if add_generation_prompt %}<assistant>{% endif %}")


def test_jinja_chat_template(model_dir, tmp_path):
    pytest.importorskip("jinja2")
    from fastapi.testclient import TestClient

    from gptx.serve import create_app

    _, m, tok = model_dir
    with TestClient(create_app(m, tok, model_name="tiny", chat_template=TEMPLATE)) as c:
        msgs = [{"role": "user", "content": "Hi"}]
        r = c.post("/v1/chat/completions", json={"messages": msgs, "max_tokens": 8, "temperature": 0})
        assert r.status_code == 200, r.text
        ids = tok.encode("<user>Hi") + [tok.eot_token] + tok.encode("<assistant>")  # eos_token is the token
        assert r.json()["usage"]["prompt_tokens"] == len(ids)
        want = gen_text(tok, m.generate(ids, 8, temperature=0, tokenizer=tok))
        assert r.json()["choices"][0]["message"]["content"] == want
    refusing = "{{ raise_exception('only user messages') if messages[0].role != 'user' else 'x' }}"
    with TestClient(create_app(m, tok, chat_template=refusing)) as c:
        r = c.post("/v1/chat/completions", json={"messages": [{"role": "system", "content": "s"}], "max_tokens": 1})
        assert r.status_code == 400 and "only user messages" in r.json()["error"]["message"]
    with pytest.raises(ValueError, match="does not compile"):
        create_app(m, tok, chat_template="{% for %}")
    from gptx.__main__ import main

    bad = tmp_path / "bad.jinja"
    bad.write_text("{% if %}")
    assert main(["serve", str(model_dir[0]), "--chat-template", str(bad)]) == 1
