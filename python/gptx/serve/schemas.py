"""Request bodies of /v1/completions and /v1/chat/completions: parsed and checked field by field.

Each bad field is a 400 naming it (errors.bad). Fields OpenAI defines and gptx does not implement are refused by name
rather than ignored (suffix, best_of > n, tools, ...); unknown fields are refused too, as OpenAI refuses them.
Sampling fields beyond OpenAI's (top_k, min_p, repetition_penalty) are the ones vLLM and llama.cpp's server take.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from gptx.serve.errors import bad

MAX_N = 64             # choices per request: each is a sequence in the batch
MAX_LOGPROBS = 20      # top alternatives per token (OpenAI: 5 for completions, 20 for chat)
MAX_STOP = 16          # stop strings per request (OpenAI allows 4; more costs little here)
MAX_SEED = (1 << 63) - 1


@dataclass
class GenParams:
    """What one request asks of the engine, shared by its choices."""
    max_tokens: int | None = 16          # None: what the context leaves after the prompt
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int | None = None
    min_p: float | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    logit_bias: dict = field(default_factory=dict)   # token id -> added to its logit
    stop: list = field(default_factory=list)          # strings; the text ends before the first one found
    seed: int | None = None
    n: int = 1
    logprobs: int | None = None          # None: no log-probabilities; k: the token's and the k most likely
    echo: bool = False
    stream: bool = False
    include_usage: bool = False


@dataclass
class CompletionRequest:
    prompts: list                         # each a str or a list of token ids
    params: GenParams


@dataclass
class ChatRequest:
    messages: list                        # [{"role": str, "content": str}]
    params: GenParams


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def number(body, name, default, lo, hi, lo_open=False):
    v = body.get(name)
    if v is None:
        return default
    if not _is_num(v) or not math.isfinite(v):
        raise bad(name, f"must be a number, got {v!r}", "invalid_type")
    if v < lo or (lo_open and v == lo) or v > hi:
        raise bad(name, f"must be in {'(' if lo_open else '['}{lo:g}, {hi:g}], got {v!r}")
    return float(v)


def integer(body, name, default, lo, hi=None):
    v = body.get(name)
    if v is None:
        return default
    if isinstance(v, float) and v.is_integer():  # 16.0 from a client that writes every number as a float
        v = int(v)
    if not _is_int(v):
        raise bad(name, f"must be an integer, got {v!r}", "invalid_type")
    if v < lo or (hi is not None and v > hi):
        raise bad(name, f"must be an integer in [{lo}, {'inf' if hi is None else hi}], got {v}")
    return v


def boolean(body, name, default=False):
    v = body.get(name)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise bad(name, f"must be true or false, got {v!r}", "invalid_type")
    return v


def _stop(body):
    v = body.get("stop")
    if v is None:
        return []
    items = [v] if isinstance(v, str) else v
    if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
        raise bad("stop", "must be a string or a list of strings", "invalid_type")
    if len(items) > MAX_STOP:
        raise bad("stop", f"at most {MAX_STOP} stop strings, got {len(items)}")
    if any(s == "" for s in items):
        raise bad("stop", "stop strings must not be empty")
    return list(dict.fromkeys(items))


def _logit_bias(body, vocab_size):
    v = body.get("logit_bias")
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise bad("logit_bias", "must be an object mapping token ids to biases", "invalid_type")
    out = {}
    for k, b in v.items():
        try:
            t = int(k)
        except ValueError:
            raise bad("logit_bias", f"key {k!r} is not a token id") from None
        if not 0 <= t < vocab_size:
            raise bad("logit_bias", f"token id {t} is outside [0, {vocab_size})")
        if not _is_num(b) or not -100 <= b <= 100:
            raise bad("logit_bias", f"bias of token {t} must be a number in [-100, 100], got {b!r}")
        out[t] = float(b)
    return out


def _common(body, vocab_size, max_tokens_default):
    """The sampling and output fields both endpoints share."""
    p = GenParams()
    p.temperature = number(body, "temperature", 1.0, 0.0, 2.0)
    p.top_p = number(body, "top_p", 1.0, 0.0, 1.0, lo_open=True)
    top_k = integer(body, "top_k", None, -1)
    p.top_k = None if top_k is None or top_k <= 0 else top_k  # -1 and 0 mean no limit (vLLM, llama.cpp)
    min_p = number(body, "min_p", None, 0.0, 1.0)
    p.min_p = None if not min_p else min_p
    p.presence_penalty = number(body, "presence_penalty", 0.0, -2.0, 2.0)
    p.frequency_penalty = number(body, "frequency_penalty", 0.0, -2.0, 2.0)
    p.repetition_penalty = number(body, "repetition_penalty", 1.0, 0.0, 10.0, lo_open=True)
    p.logit_bias = _logit_bias(body, vocab_size)
    p.stop = _stop(body)
    p.seed = integer(body, "seed", None, -MAX_SEED - 1, MAX_SEED)
    p.n = integer(body, "n", 1, 1, MAX_N)
    p.max_tokens = integer(body, "max_tokens", max_tokens_default, 0)
    p.stream = boolean(body, "stream")
    opts = body.get("stream_options")
    if opts is not None:
        if not p.stream:
            raise bad("stream_options", "is only allowed with stream: true")
        if not isinstance(opts, dict) or set(opts) - {"include_usage", "continuous_usage_stats"}:
            raise bad("stream_options", "must be an object with include_usage (true or false)")
        p.include_usage = boolean(opts, "include_usage")
    return p


def _check_model(body, served):
    m = body.get("model")
    if m is not None and not isinstance(m, str):
        raise bad("model", f"must be a string, got {m!r}", "invalid_type")
    if m is not None and m != served:
        from gptx.serve.errors import APIError
        raise APIError(404, f"model {m!r} does not exist: this server serves {served!r}", "model", "model_not_found")


def _check_known(body, known, where):
    if not isinstance(body, dict):
        raise bad("body", f"the {where} request body must be a JSON object", "invalid_type")
    unknown = [k for k in body if k not in known]
    if unknown:
        raise bad(unknown[0], f"unrecognized request argument (not a field of {where})", "unknown_parameter")


COMMON = {"model", "temperature", "top_p", "top_k", "min_p", "presence_penalty", "frequency_penalty",
          "repetition_penalty", "logit_bias", "stop", "seed", "n", "max_tokens", "stream", "stream_options", "user"}
COMPLETION_FIELDS = COMMON | {"prompt", "logprobs", "echo", "suffix", "best_of"}
CHAT_FIELDS = COMMON | {"messages", "logprobs", "top_logprobs", "max_completion_tokens", "response_format",
                        "tools", "tool_choice", "parallel_tool_calls", "service_tier", "store", "metadata"}


def _prompts(v, vocab_size):
    """A string, a list of strings, a list of token ids or a list of token-id lists -> a list of prompts."""
    def ids(lst, where):
        if not lst:
            raise bad(where, "is an empty list of token ids")
        for t in lst:
            if not _is_int(t):
                raise bad(where, f"token ids must be integers, got {t!r}", "invalid_type")
            if not 0 <= t < vocab_size:
                raise bad(where, f"token id {t} is outside the vocabulary [0, {vocab_size})")
        return list(lst)

    if v is None:
        raise bad("prompt", "is required", "missing_required_parameter")
    if isinstance(v, str):
        return [v]
    if not isinstance(v, list) or not v:
        raise bad("prompt", "must be a string, a list of strings, a list of token ids or a list of such lists",
                  "invalid_type")
    if all(_is_int(t) for t in v):
        return [ids(v, "prompt")]
    out = []
    for i, p in enumerate(v):
        if isinstance(p, str):
            out.append(p)
        elif isinstance(p, list):
            out.append(ids(p, f"prompt[{i}]"))
        else:
            raise bad(f"prompt[{i}]", f"must be a string or a list of token ids, got {type(p).__name__}",
                      "invalid_type")
    return out


def parse_completion(body, served: str, vocab_size: int) -> CompletionRequest:
    _check_known(body, COMPLETION_FIELDS, "/v1/completions")
    _check_model(body, served)
    prompts = _prompts(body.get("prompt"), vocab_size)
    p = _common(body, vocab_size, 16)
    lp = body.get("logprobs")
    if lp is not None and not isinstance(lp, bool):
        p.logprobs = integer(body, "logprobs", None, 0, MAX_LOGPROBS)
    elif lp is not None:
        raise bad("logprobs", f"must be an integer in [0, {MAX_LOGPROBS}] (or null), got {lp!r}", "invalid_type")
    p.echo = boolean(body, "echo")
    if body.get("suffix"):
        raise bad("suffix", "is not supported (gptx models are left-to-right only)", "unsupported_parameter")
    best_of = integer(body, "best_of", None, 1)
    if best_of is not None and best_of != p.n:
        raise bad("best_of", "only best_of = n (or omitted) is supported", "unsupported_parameter")
    if p.stream and p.echo and p.logprobs is not None:
        raise bad("echo", "echo with logprobs is supported without stream only", "unsupported_parameter")
    return CompletionRequest(prompts, p)


ROLES = ("system", "developer", "user", "assistant")


def _content(v, where):
    """Message content: a string, or a list of text parts ({"type": "text", "text": ...}), joined."""
    if isinstance(v, str):
        return v
    if isinstance(v, list):
        out = []
        for j, part in enumerate(v):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise bad(f"{where}[{j}]", "only text parts ({\"type\": \"text\", \"text\": ...}) are supported")
            out.append(part["text"])
        return "".join(out)
    raise bad(where, "must be a string or a list of text parts", "invalid_type")


def parse_chat(body, served: str, vocab_size: int) -> ChatRequest:
    _check_known(body, CHAT_FIELDS, "/v1/chat/completions")
    _check_model(body, served)
    msgs = body.get("messages")
    if msgs is None:
        raise bad("messages", "is required", "missing_required_parameter")
    if not isinstance(msgs, list) or not msgs:
        raise bad("messages", "must be a non-empty list of messages", "invalid_type")
    messages = []
    for i, m in enumerate(msgs):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise bad(where, "must be an object with role and content", "invalid_type")
        role = m.get("role")
        if role not in ROLES:
            raise bad(f"{where}.role", f"must be one of {', '.join(ROLES)}, got {role!r}")
        if "content" not in m:
            raise bad(f"{where}.content", "is required", "missing_required_parameter")
        messages.append({"role": "system" if role == "developer" else role,
                         "content": _content(m["content"], f"{where}.content")})
    for name in ("tools", "tool_choice"):
        if body.get(name):
            raise bad(name, "tool calls are not supported", "unsupported_parameter")
    fmt = body.get("response_format")
    if fmt is not None and fmt != {"type": "text"}:
        raise bad("response_format", "only {\"type\": \"text\"} is supported", "unsupported_parameter")
    # max_tokens is the older name of max_completion_tokens; omitted: the rest of the context.
    p = _common(body, vocab_size, None)
    newer = integer(body, "max_completion_tokens", None, 0)
    if newer is not None:
        p.max_tokens = newer
    if boolean(body, "logprobs"):
        p.logprobs = integer(body, "top_logprobs", 0, 0, MAX_LOGPROBS)
    elif body.get("top_logprobs") is not None:
        raise bad("top_logprobs", "needs logprobs: true")
    return ChatRequest(messages, p)
