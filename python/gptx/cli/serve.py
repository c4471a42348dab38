"""`gptx serve`: an OpenAI-compatible HTTP server (completions, chat, streaming) with continuous batching."""
from __future__ import annotations

import os
import sys

from gptx.cli._numbers import integer
from gptx.cli.sample import add_tokenizer_argument

WEIGHTS = ("f32", "bf16", "int8")


def add_parser(sub):
    p = sub.add_parser("serve", help="serve a model over an OpenAI-compatible HTTP API",
                       description="Serve a gptx checkpoint (a run or step folder) or a Hugging Face GPT-2 folder "
                       "over HTTP: POST /v1/completions, POST /v1/chat/completions (streaming with stream: true), "
                       "GET /v1/models, /health and /metrics (Prometheus). Requests share one decode batch "
                       "(continuous batching). Needs the serve extra: pip install \"gptx-engine[serve]\".")
    p.add_argument("checkpoint", metavar="CHECKPOINT")
    add_tokenizer_argument(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only; "
                   "0.0.0.0 for every interface)")
    p.add_argument("--port", type=integer(0), default=8000, help="TCP port (default 8000; 0: any free port)")
    p.add_argument("--max-batch", type=integer(1), default=16, metavar="N",
                   help="sequences decoded together, each with a KV-cache slot of block_size (default 16)")
    p.add_argument("--max-queue", type=integer(1), default=256, metavar="Q",
                   help="sequences that may wait for a slot; more get 429 (default 256)")
    p.add_argument("--threads", type=integer(1), default=None, metavar="N", help="CPU threads (default: all cores)")
    p.add_argument("--api-key", default=None, metavar="KEY",
                   help="require 'Authorization: Bearer KEY' on /v1/ routes (default: the GPTX_API_KEY variable, "
                   "else none)")
    p.add_argument("--weights", default="f32", choices=WEIGHTS,
                   help="weights for decoding: f32 (default), bf16 or int8 (model.quantize)")
    p.add_argument("--model-name", default=None, metavar="NAME",
                   help="the id clients pass as model (default: the checkpoint folder's name)")
    p.add_argument("--chat-template", default=None, metavar="FILE",
                   help="a Jinja chat template (as in a Hugging Face tokenizer_config.json) for /v1/chat/completions "
                   "(default: the plain 'User: ... Assistant:' template; needs jinja2)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    return p


def quantize(model, weights: str):
    """The model with its matmul weights in `weights` (f32: as it is)."""
    if weights == "f32":
        return model
    if not hasattr(model, "quantize"):
        raise ValueError(f"--weights {weights}: this gptx build has no model.quantize; use --weights f32")
    model.quantize(weights)
    return model


def run(args) -> int:
    from gptx.serve import missing_dependencies, INSTALL_HINT

    missing = missing_dependencies()
    if missing:
        print(f"gptx serve: error: needs {', '.join(missing)}; install them with: {INSTALL_HINT}", file=sys.stderr)
        return 1
    import uvicorn

    import gptx
    from gptx.serve.app import create_app

    if args.threads:
        gptx.set_num_threads(args.threads)
    if not os.path.exists(args.checkpoint):
        print(f"gptx serve: error: {args.checkpoint}: no such folder", file=sys.stderr)
        return 1
    template = None
    if args.chat_template is not None:
        try:
            with open(args.chat_template, encoding="utf-8") as f:
                template = f.read()
        except (OSError, UnicodeDecodeError) as e:
            print(f"gptx serve: error: --chat-template {args.chat_template}: {e}", file=sys.stderr)
            return 1
    name = args.model_name or os.path.basename(os.path.normpath(os.path.abspath(args.checkpoint)))
    api_key = args.api_key if args.api_key is not None else os.environ.get("GPTX_API_KEY") or None
    failed = []

    def load():
        model, tok = gptx.load(args.checkpoint, tokenizer=args.tokenizer, device=args.device)
        return quantize(model, args.weights), tok

    def on_failure(e):  # a model that cannot load: stop serving /health 503 forever and exit 1
        failed.append(e)
        server.should_exit = True

    load.on_failure = on_failure
    try:
        app = create_app(load=load, model_name=name, max_batch=args.max_batch, max_queue=args.max_queue,
                         api_key=api_key, chat_template=template)
    except (ValueError, ImportError) as e:
        print(f"gptx serve: error: --chat-template: {e}", file=sys.stderr)
        return 1
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False,
                            timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    print(f"gptx serve: loading {args.checkpoint} as model {name!r}; listening on http://{args.host}:{args.port} "
          f"(/health answers 503 until the model is ready)", file=sys.stderr, flush=True)
    server.run()
    if failed:
        print(f"gptx serve: error: {failed[0]}", file=sys.stderr)
        return 1
    return 0
