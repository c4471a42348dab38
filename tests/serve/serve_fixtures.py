"""Fixtures and shared pieces of the server tests: a tiny random byte-level model saved to a temp folder, an in-process
client, a live server on a free loopback port, a gate that holds the engine in its decode step. (Fixtures live here,
imported by each test module, rather than in a conftest.py: the suite's modules import the top-level conftest by
name.)"""
import contextlib
import threading
import time

import numpy as np
import pytest

from gptx.checkpoint import save_checkpoint
from gptx.model import GPT, GPTConfig
from gptx.tokenizer import Tokenizer

BLOCK = 128


def need_serve_extra():
    """Skip the calling module without the serve extra (the test extra installs it)."""
    from gptx.serve import missing_dependencies

    missing = missing_dependencies()
    if missing:
        pytest.skip(f"the serve extra is not installed ({', '.join(missing)})", allow_module_level=True)


def tiny_model(seed=0):
    m = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=BLOCK, vocab_size=257), seed=seed)
    # Larger embeddings: logits spread enough that sampling is not uniform and greedy has clear winners.
    np.asarray(m._p.wte)[:] *= 10
    return m


def engine_of(app):
    return app.fastapi.state.gptx.engine


@contextlib.contextmanager
def live_server(app):
    """uvicorn serving app on 127.0.0.1 at a free port, in a thread; yields the base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False,
                                           timeout_graceful_shutdown=2))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not t.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        t.join(10)


class DecodeGate:
    """Holds the engine inside its decode step until opened: makes 'while a request is running' deterministic."""

    def __init__(self, real):
        self.real = real
        self.open = threading.Event()
        self.entered = threading.Event()

    def __call__(self, *args, **kwargs):
        self.entered.set()
        if not self.open.wait(30):
            raise TimeoutError("DecodeGate was never opened")
        return self.real(*args, **kwargs)


def wait_until(cond, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """(folder, model, tokenizer): a checkpoint `gptx serve` opens, and the same model in memory."""
    d = tmp_path_factory.mktemp("serve-model")
    m, tok = tiny_model(), Tokenizer.bytes()
    save_checkpoint(d, m, tokenizer=tok, state={"step": 1})
    return d, m, tok


@pytest.fixture
def client(model_dir):
    from fastapi.testclient import TestClient

    from gptx.serve import create_app

    _, m, tok = model_dir
    with TestClient(create_app(m, tok, model_name="tiny")) as c:
        yield c


@pytest.fixture
def decode_gate(monkeypatch):
    import gptx.serve.engine as engine

    gate = DecodeGate(engine.decode)
    monkeypatch.setattr(engine, "decode", gate)
    yield gate
    gate.open.set()
