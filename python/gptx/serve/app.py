"""The HTTP application: OpenAI's routes over one Engine, /health, /metrics, the API key and error bodies.

create_app(model, tokenizer) serves a model at once; create_app(load=f) starts answering (/health: 503) and calls
f() -> (model, tokenizer) in a thread, so a large checkpoint can load while load balancers already probe it.
"""
from __future__ import annotations

import hmac
import json
import logging
import threading
import time

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from gptx.serve import handlers
from gptx.serve.chat import ChatTemplate
from gptx.serve.engine import Engine
from gptx.serve.errors import APIError
from gptx.serve.metrics import Metrics
from gptx.serve.schemas import parse_chat, parse_completion

log = logging.getLogger("gptx.serve")
MAX_BODY_BYTES = 16 << 20   # 16 MiB: far more than a full context of token ids written as JSON
GENERATION_ROUTES = ("/v1/completions", "/v1/chat/completions")


class ServerState:
    """What the routes share: the engine once the model is loaded, and the metrics from the start."""

    def __init__(self, name, max_batch, max_queue, chat_template):
        self.name, self.max_batch, self.max_queue = name, max_batch, max_queue
        self.chat_template = chat_template
        self.metrics = Metrics()
        self.engine = None
        self.error = None            # why loading failed
        self.created = int(time.time())

    def attach(self, model, tokenizer):
        from gptx.generate_hf import eos_ids

        self.model, self.tokenizer = model, tokenizer
        self.block, self.vocab = model.config.block_size, model.config.vocab_size
        self.eos = eos_ids(model, tokenizer, None)
        eot = tokenizer.eot_token
        self.chat = ChatTemplate(self.chat_template, "" if eot is None else tokenizer.decode([eot]))
        self.engine = Engine(model, tokenizer, self.max_batch, self.max_queue, self.metrics).start()

    def ready(self):
        if self.engine is None:
            if self.error is not None:
                raise APIError(503, f"the model failed to load: {self.error}", code="model_load_failed")
            raise APIError(503, "the model is still loading", code="model_loading")
        return self

    def observe(self, endpoint, run):
        self.metrics.request_time.labels(endpoint).observe(time.monotonic() - run.started)


def create_app(model=None, tokenizer=None, *, load=None, model_name: str = "gptx", max_batch: int = 16,
               max_queue: int = 256, api_key: str | None = None, chat_template: str | None = None) -> FastAPI:
    """The ASGI app. chat_template: a Jinja chat template's text (None: the plain template, gptx/serve/chat.py)."""
    if (model is None) == (load is None):
        raise ValueError("create_app: pass model and tokenizer, or load= (a function returning both)")
    if model is not None and tokenizer is None:
        raise ValueError("create_app: tokenizer is required with model (text in, text out)")
    if chat_template is not None:
        ChatTemplate(chat_template)  # a template that does not compile fails here, before serving
    state = ServerState(model_name, max_batch, max_queue, chat_template)

    def lifespan(app):
        return _Lifespan(state, model, tokenizer, load)

    app = FastAPI(title="gptx", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.gptx = state

    @app.exception_handler(APIError)
    async def api_error(request, e: APIError):
        return JSONResponse(e.body(), status_code=e.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, e):
        err = APIError(e.status_code, f"{request.method} {request.url.path}: {e.detail}",
                       code="not_found" if e.status_code == 404 else None)
        return JSONResponse(err.body(), status_code=e.status_code)

    @app.get("/health")
    async def health():
        try:
            state.ready()
        except APIError as e:
            return JSONResponse({"status": "loading" if state.error is None else "failed", "message": e.message},
                                status_code=503)
        return {"status": "ok"}

    @app.get("/metrics")
    async def metrics():
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    def model_card():
        s = state.ready()
        return {"id": s.name, "object": "model", "created": s.created, "owned_by": "gptx",
                "max_model_len": s.block}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{name:path}")
    async def one_model(name: str):
        card = model_card()
        if name != card["id"]:
            raise APIError(404, f"model {name!r} does not exist: this server serves {card['id']!r}", "model",
                           "model_not_found")
        return card

    @app.post("/v1/completions")
    async def completions(request: Request):
        s = state.ready()
        req = parse_completion(await _json(request), s.name, s.vocab)
        return await _guarded(handlers.completions(s, req, request))

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        s = state.ready()
        req = parse_chat(await _json(request), s.name, s.vocab)
        return await _guarded(handlers.chat_completions(s, req, request))

    return _Gate(app, state, api_key)


async def _json(request: Request):
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise APIError(413, f"the request body has {len(raw)} bytes, more than {MAX_BODY_BYTES}", "body",
                       "body_too_large")
    try:
        return json.loads(raw, parse_constant=_no_constant)
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        what = "is nested too deeply" if isinstance(e, RecursionError) else f"is not valid JSON: {e}"
        raise APIError(400, f"the request body {what}", "body", "invalid_json") from None


def _no_constant(name):
    raise ValueError(f"{name} is not a JSON number")


async def _guarded(work):
    """The route's result; an unexpected exception becomes a 500 error body (the server keeps serving)."""
    try:
        return await work
    except APIError:
        raise
    except Exception as e:
        log.exception("request failed")
        raise APIError(500, f"internal error: {type(e).__name__}: {e}", code="internal_error") from None


class _Lifespan:
    def __init__(self, state, model, tokenizer, load):
        self.state, self.model, self.tokenizer, self.load = state, model, tokenizer, load
        self.thread = None

    async def __aenter__(self):
        if self.load is None:
            self.state.attach(self.model, self.tokenizer)
        else:
            self.thread = threading.Thread(target=self._load, name="gptx-serve-load", daemon=True)
            self.thread.start()

    def _load(self):
        try:
            self.state.attach(*self.load())
        except Exception as e:
            log.error("loading the model failed: %s", e)
            self.state.error = f"{type(e).__name__}: {e}"
            on_fail = getattr(self.load, "on_failure", None)
            if on_fail is not None:
                on_fail(e)

    async def __aexit__(self, *exc):
        if self.state.engine is not None:
            self.state.engine.stop()


class _Gate:
    """ASGI middleware: the API key on /v1/ routes, and the request counter by endpoint and status.

    Plain ASGI rather than a BaseHTTPMiddleware, which would buffer streams and hide client disconnects."""

    def __init__(self, app, state, api_key):
        self.app, self.state = app, state
        self.key = None if api_key is None else api_key.encode()

    @property
    def fastapi(self):
        return self.app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if self.key is not None and path.startswith("/v1/") and not self._authorized(scope):
            err = APIError(401, "invalid or missing API key: send the header 'Authorization: Bearer KEY'",
                           code="invalid_api_key")
            await JSONResponse(err.body(), status_code=401)(scope, receive, send)
            return self._count(path, 401)
        status = [500]

        async def send_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self._count(path, status[0])

    def _authorized(self, scope) -> bool:
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.key)
        return False

    def _count(self, path, status):
        if path in GENERATION_ROUTES:
            self.state.metrics.requests.labels(path, str(status)).inc()
