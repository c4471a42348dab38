"""`gptx serve` as a subprocess on a free loopback port, driven by the official openai client: greedy text equals
model.generate, streamed and not; the command's own errors."""
import os
import socket
import subprocess
import sys
import time

import httpx
import pytest
from serve_fixtures import model_dir, need_serve_extra  # noqa: F401 (fixture)

import gptx as gptx_package

need_serve_extra()
openai = pytest.importorskip("openai")

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(gptx_package.__file__)))
ENV = dict(os.environ, PYTHONPATH=PYTHON_DIR + os.pathsep + os.environ.get("PYTHONPATH", ""))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(model_dir):
    d, m, tok = model_dir
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "gptx", "serve", str(d), "--port", str(port), "--api-key",
                             "test-key", "--max-batch", "4", "--threads", "1", "--log-level", "warning"],
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"gptx serve exited {proc.returncode}: {proc.stderr.read()}")
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("gptx serve did not become healthy in 60 s")
            time.sleep(0.1)
        yield base, d.name, m, tok
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def _text(tok, ids):
    return tok.decode([t for t in ids if t != tok.eot_token])


def test_openai_client_completions(served):
    base, name, m, tok = served
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="test-key", max_retries=0)
    assert [x.id for x in client.models.list().data] == [name]
    want = _text(tok, m.generate(tok.encode("KING:"), 24, temperature=0, tokenizer=tok))
    assert len(want) >= 10  # the tiny model's greedy text is not cut short by end-of-text
    r = client.completions.create(model=name, prompt="KING:", max_tokens=24, temperature=0)
    assert r.choices[0].text == want
    assert r.usage.prompt_tokens == 5 and r.usage.completion_tokens >= 1
    pieces, usage = [], None
    for chunk in client.completions.create(model=name, prompt="KING:", max_tokens=24, temperature=0, stream=True,
                                           stream_options={"include_usage": True}):
        pieces += [c.text for c in chunk.choices]
        usage = chunk.usage or usage
    assert "".join(pieces) == want and usage.total_tokens == r.usage.total_tokens
    sampled = m.generate(tok.encode("KING:"), 16, temperature=0.9, top_p=0.9, seed=42, tokenizer=tok)
    r = client.completions.create(model=name, prompt="KING:", max_tokens=16, temperature=0.9, top_p=0.9, seed=42)
    assert r.choices[0].text == _text(tok, sampled)


def test_openai_client_chat(served):
    from gptx.serve.chat import TURN_STOPS, render

    base, name, m, tok = served
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="test-key", max_retries=0)
    msgs = [{"role": "user", "content": "Say something."}]
    want = _text(tok, m.generate(tok.encode(render(msgs)), 20, temperature=0, tokenizer=tok))
    for s in TURN_STOPS:
        want = want.split(s)[0]
    r = client.chat.completions.create(model=name, messages=msgs, max_tokens=20, temperature=0)
    assert r.choices[0].message.content == want and r.choices[0].message.role == "assistant"
    stream = client.chat.completions.create(model=name, messages=msgs, max_tokens=20, temperature=0, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == want


def test_openai_client_errors(served):
    base, name, m, tok = served
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="test-key", max_retries=0)
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=name, prompt="x", max_tokens=5, temperature=5)
    assert e.value.body["param"] == "temperature"
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=name, prompt="x" * 1000, max_tokens=5)
    assert e.value.body["code"] == "context_length_exceeded"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{base}/v1", api_key="wrong", max_retries=0).models.list()
    assert httpx.get(f"{base}/metrics").status_code == 200


def test_serve_command_errors(model_dir, monkeypatch, capsys):
    import gptx.serve
    from gptx.__main__ import build_parser, main
    from gptx.model import GPT

    d, _, _ = model_dir
    args = build_parser().parse_args(["serve", str(d)])
    assert args.host == "127.0.0.1" and args.port == 8000 and args.weights == "f32"
    monkeypatch.setattr(gptx.serve, "missing_dependencies", lambda: ["fastapi", "uvicorn"])
    assert main(["serve", str(d)]) == 1
    assert 'pip install "gptx-engine[serve]"' in capsys.readouterr().err
    monkeypatch.undo()
    assert main(["serve", str(d / "missing")]) == 1
    assert "no such folder" in capsys.readouterr().err
    if hasattr(GPT, "quantize"):
        return
    r = subprocess.run([sys.executable, "-m", "gptx", "serve", str(d), "--port", str(free_port()), "--weights",
                        "bf16"], env=ENV, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "--weights bf16" in r.stderr and "quantize" in r.stderr
