"""From a parsed request to the engine's sequences, and from their events to OpenAI's response bodies and chunks."""
from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from functools import partial

from gptx.serve.engine import Sequence
from gptx.serve.errors import APIError, bad

DISCONNECT_POLL_S = 0.25   # how often a non-streaming request checks that its client is still there


class Run:
    """One request's sequences (prompts x n, prompt-major: choice i*n + j) and the queue their events arrive on."""

    def __init__(self, state, prompts, params, stops, want_prompt_logprobs=False):
        self.state, self.params = state, params
        self.prompts = prompts
        self.queue: asyncio.Queue = asyncio.Queue()
        loop = asyncio.get_running_loop()
        # One seed per request; choice k draws from stream (seed, k), as model.generate(seed=seed) numbers its
        # sequences. Without a seed, a fresh one: the request is then random but still batch-independent.
        seed = params.seed if params.seed is not None else secrets.randbits(63)
        self.seqs = []
        for i, p in enumerate(prompts):
            max_new = params.max_tokens if params.max_tokens is not None else state.block - len(p)
            for j in range(params.n):
                k = i * params.n + j
                sink = partial(_deliver, loop, self.queue, k)
                self.seqs.append(Sequence(p, params, max_new, seed, k, state.eos, sink, want_prompt_logprobs,
                                          stops))
        self.started = time.monotonic()

    def submit(self):
        self.state.engine.submit(self.seqs)

    def cancel(self):
        if any(not s.finished for s in self.seqs):
            for s in self.seqs:
                s.cancel()
            self.state.engine.wake()

    async def events(self):
        """(choice, event) until every choice is done; an engine error is raised."""
        left = len(self.seqs)
        while left:
            k, ev = await self.queue.get()
            if ev[0] == "error":
                raise ev[1]
            if ev[0] == "done":
                left -= 1
            yield k, ev

    @property
    def usage(self) -> dict:
        prompt = sum(len(p) for p in self.prompts)
        made = sum(s.made for s in self.seqs)
        return {"prompt_tokens": prompt, "completion_tokens": made, "total_tokens": prompt + made}


def _deliver(loop, queue, k, event):
    loop.call_soon_threadsafe(queue.put_nowait, (k, event))


def check_context(state, ids, max_tokens, where):
    """400 when a prompt, or prompt + max_tokens, does not fit the model's context."""
    block = state.block
    if len(ids) > block:
        raise APIError(400, f"{where}: the prompt has {len(ids)} tokens, more than the model's context "
                       f"({block} tokens)", where, "context_length_exceeded")
    if max_tokens is not None and len(ids) + max_tokens > block:
        raise APIError(400, f"max_tokens: the prompt ({len(ids)} tokens) + max_tokens ({max_tokens}) exceeds the "
                       f"model's context ({block} tokens)", "max_tokens", "context_length_exceeded")


def encode_prompt(state, p, where):
    if isinstance(p, list):
        return p
    if p == "":
        if state.tokenizer.eot_token is None:
            raise bad(where, "is empty and the tokenizer has no end-of-text token to start from")
        return [state.tokenizer.eot_token]  # GPT-2's convention: an unconditional sample starts at end-of-text
    return state.tokenizer.encode(p)


def _token_text(state, t) -> str:
    return state.tokenizer.decode([t])


def _ids(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


# ----- /v1/completions -----

async def completions(state, req, request):
    p = req.params
    if len(req.prompts) * p.n > state.max_queue:  # refused before any tokenizing: it could never be queued
        raise APIError(400, f"prompt: {len(req.prompts)} prompts x n = {p.n} is {len(req.prompts) * p.n} sequences, "
                       f"more than the server queues at once ({state.max_queue}, --max-queue)", "prompt",
                       "too_many_sequences")
    prompts = [encode_prompt(state, x, "prompt" if len(req.prompts) == 1 else f"prompt[{i}]")
               for i, x in enumerate(req.prompts)]
    for i, ids in enumerate(prompts):
        check_context(state, ids, p.max_tokens, "prompt" if len(prompts) == 1 else f"prompt[{i}]")
    want_plp = p.echo and p.logprobs is not None
    run = Run(state, prompts, p, p.stop, want_prompt_logprobs=want_plp)
    echo = [x if isinstance(x, str) else state.tokenizer.decode(x) for x in req.prompts] if p.echo else None
    run.submit()
    head = {"id": _ids("cmpl"), "object": "text_completion", "created": int(time.time()), "model": state.name}
    if p.stream:
        return _stream(run, request, partial(_completion_chunks, state, run, head, echo))
    n_choices = len(run.seqs)
    texts = [echo[k // p.n] if echo else "" for k in range(n_choices)]
    lps = [_LogprobsBuilder(state, len(texts[k])) for k in range(n_choices)] if p.logprobs is not None else None
    finish = [None] * n_choices
    async for k, ev in _watched(run, request):
        if ev[0] == "prompt":
            lps[k].prompt(ev[1])
        elif ev[0] == "token":
            texts[k] += ev[1]["text"]
            if lps is not None:
                lps[k].add(ev[1])
        else:
            texts[k] += ev[2]
            finish[k] = ev[1]
    state.observe("/v1/completions", run)
    choices = [{"index": k, "text": texts[k], "logprobs": lps[k].body() if lps else None, "finish_reason": finish[k]}
               for k in range(n_choices)]
    return dict(head, choices=choices, usage=run.usage)


class _LogprobsBuilder:
    """The completions API's logprobs object: tokens, token_logprobs, top_logprobs, text_offset."""

    def __init__(self, state, base: int):
        self.state, self.base = state, base
        self.tokens, self.token_logprobs, self.top, self.offsets = [], [], [], []

    def prompt(self, entries):
        at = 0
        for e in entries:
            s = _token_text(self.state, e["token"])
            self._one(s, e["logprob"], e["top"], at)
            at += len(s)

    def add(self, e):
        self._one(_token_text(self.state, e["token"]), e["logprob"], e["top"], self.base + e["offset"])

    def _one(self, text, lp, top, offset):
        self.tokens.append(text)
        self.token_logprobs.append(lp)
        self.top.append(None if top is None else {_token_text(self.state, t): v for t, v in top})
        self.offsets.append(offset)

    def body(self):
        return {"tokens": self.tokens, "token_logprobs": self.token_logprobs, "top_logprobs": self.top,
                "text_offset": self.offsets}


async def _completion_chunks(state, run, head, echo):
    p = run.params
    usage_alone = p.include_usage
    extra = {"usage": None} if usage_alone else {}

    def chunk(k, text, reason=None, logprobs=None):
        return dict(head, choices=[{"index": k, "text": text, "logprobs": logprobs, "finish_reason": reason}],
                    **extra)

    if echo:
        for k in range(len(run.seqs)):
            yield chunk(k, echo[k // p.n])
    left = len(run.seqs)
    async for k, ev in run.events():
        if ev[0] == "token":
            e = ev[1]
            lp = None
            if p.logprobs is not None:
                b = _LogprobsBuilder(state, len(echo[k // p.n]) if echo else 0)
                b.add(e)
                lp = b.body()
            if e["text"] or lp is not None:
                yield chunk(k, e["text"], logprobs=lp)
        elif ev[0] == "done":
            left -= 1
            c = chunk(k, ev[2], ev[1])
            if left == 0 and not usage_alone:
                c["usage"] = run.usage  # without stream_options.include_usage: on the last chunk
            yield c
    state.observe("/v1/completions", run)
    if usage_alone:
        yield dict(head, choices=[], usage=run.usage)


# ----- /v1/chat/completions -----

async def chat_completions(state, req, request):
    p = req.params
    chat = state.chat
    ids = state.tokenizer.encode(chat.render(req.messages), allow_special=chat.special)
    check_context(state, ids, p.max_tokens, "messages")
    if p.max_tokens is None and len(ids) >= state.block:
        raise APIError(400, f"messages: the prompt has {len(ids)} tokens, which leaves no room in the model's "
                       f"context ({state.block} tokens)", "messages", "context_length_exceeded")
    run = Run(state, [ids], p, list(p.stop) + [s for s in chat.stops if s not in p.stop])
    run.submit()
    head = {"id": _ids("chatcmpl"), "object": "chat.completion", "created": int(time.time()), "model": state.name}
    if p.stream:
        return _stream(run, request, partial(_chat_chunks, state, run, dict(head, object="chat.completion.chunk")))
    texts = [""] * p.n
    content = [[] for _ in range(p.n)] if p.logprobs is not None else None
    finish = [None] * p.n
    async for k, ev in _watched(run, request):
        if ev[0] == "token":
            texts[k] += ev[1]["text"]
            if content is not None:
                content[k].append(_chat_logprob(state, ev[1]))
        elif ev[0] == "done":
            texts[k] += ev[2]
            finish[k] = ev[1]
    state.observe("/v1/chat/completions", run)
    choices = [{"index": k, "message": {"role": "assistant", "content": texts[k]},
                "logprobs": None if content is None else {"content": content[k]}, "finish_reason": finish[k]}
               for k in range(p.n)]
    return dict(head, choices=choices, usage=run.usage)


def _chat_logprob(state, e) -> dict:
    def item(t, lp):
        s = _token_text(state, t)
        return {"token": s, "logprob": lp, "bytes": list(state.tokenizer.token_bytes(t))}

    return dict(item(e["token"], e["logprob"]), top_logprobs=[item(t, v) for t, v in e["top"]])


async def _chat_chunks(state, run, head):
    p = run.params
    extra = {"usage": None} if p.include_usage else {}

    def chunk(k, delta, reason=None, logprobs=None):
        return dict(head, choices=[{"index": k, "delta": delta, "logprobs": logprobs, "finish_reason": reason}],
                    **extra)

    for k in range(p.n):
        yield chunk(k, {"role": "assistant", "content": ""})
    left = p.n
    async for k, ev in run.events():
        if ev[0] == "token":
            e = ev[1]
            lp = {"content": [_chat_logprob(state, e)]} if p.logprobs is not None else None
            if e["text"] or lp is not None:
                yield chunk(k, {"content": e["text"]}, logprobs=lp)
        elif ev[0] == "done":
            left -= 1
            c = chunk(k, {"content": ev[2]} if ev[2] else {}, ev[1])
            if left == 0 and not p.include_usage:
                c["usage"] = run.usage
            yield c
    state.observe("/v1/chat/completions", run)
    if p.include_usage:
        yield dict(head, choices=[], usage=run.usage)


# ----- delivery -----

async def _watched(run, request):
    """run.events(), cancelling the run when the client disconnects (or the handler is cancelled)."""
    events = run.events().__aiter__()
    try:
        while True:
            nxt = asyncio.ensure_future(events.__anext__())
            while True:
                done, _ = await asyncio.wait({nxt}, timeout=DISCONNECT_POLL_S)
                if done:
                    break
                if await request.is_disconnected():
                    nxt.cancel()
                    run.cancel()
                    raise APIError(499, "the client disconnected", code="client_disconnected")
            try:
                yield nxt.result()
            except StopAsyncIteration:
                return
    finally:
        run.cancel()


def _stream(run, request, chunks):
    """Server-sent events: one `data: {json}` per chunk, then `data: [DONE]`. An engine error mid-stream is sent as
    a chunk {"error": {...}} (which the openai client raises), then [DONE]."""
    from sse_starlette.sse import EventSourceResponse

    async def gen():
        try:
            async for c in chunks():
                yield {"data": json.dumps(c)}
        except APIError as e:
            yield {"data": json.dumps(e.body())}
        finally:
            run.cancel()  # a client that left (the response task is cancelled) frees its slots
        yield {"data": "[DONE]"}

    return EventSourceResponse(gen(), sep="\n", ping=15)
