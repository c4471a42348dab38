"""Fixtures of the server tests: a tiny random byte-level model saved to a temp folder, an in-process client and a
gate that holds the engine in its decode step."""
import pytest
from serve_helpers import DecodeGate, tiny_model

from gptx.checkpoint import save_checkpoint
from gptx.tokenizer import Tokenizer


@pytest.fixture(scope="session")
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
