"""An OpenAI-compatible HTTP server over one GPT: continuous batching, streaming, metrics (`gptx serve`).

Its dependencies (FastAPI, uvicorn, sse-starlette, prometheus-client) are the optional extra
`pip install "gptx-engine[serve]"`; gptx itself imports without them, and so does this package: create_app says what
to install when they are missing.
"""
from __future__ import annotations

import importlib.util

REQUIRED = {"fastapi": "fastapi", "uvicorn": "uvicorn", "sse_starlette": "sse-starlette",
            "prometheus_client": "prometheus-client"}
INSTALL_HINT = 'pip install "gptx-engine[serve]"'


def missing_dependencies() -> list[str]:
    """The distributions of the serve extra that are not installed."""
    return [dist for mod, dist in REQUIRED.items() if importlib.util.find_spec(mod) is None]


def require() -> None:
    missing = missing_dependencies()
    if missing:
        raise ImportError(f"gptx serve needs {', '.join(missing)}: {INSTALL_HINT}")


def create_app(*args, **kwargs):
    """The ASGI application (see gptx.serve.app.create_app)."""
    require()
    from gptx.serve.app import create_app as make

    return make(*args, **kwargs)


__all__ = ["create_app", "missing_dependencies", "require"]
