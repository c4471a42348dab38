"""The plain chat template, for models that carry none (every gptx checkpoint today).

A conversation becomes role-labelled paragraphs, ending with an open "Assistant:" turn for the model to complete:

    System: You are terse.

    User: Hello

    Assistant: Hi.

    User: Name a colour.

    Assistant:

The reply is the text the model writes after "Assistant:" (a leading space included, as the model writes it). It
ends at the end-of-text token, at the request's own stop strings, or where the model starts a new turn itself
(TURN_STOPS), since a base model trained on dialogue tends to write the next "User:" line too.

A model tuned on its own format can bring its template instead (`gptx serve --chat-template FILE`): a Jinja template
as Hugging Face tokenizers carry them (chat_template in tokenizer_config.json), rendered in a sandbox with messages,
add_generation_prompt=True, bos_token and eos_token (the end-of-text token's text). Its output may contain the
end-of-text token's text, which becomes that token; the reply then ends at end-of-text or the request's stop strings.
"""
from __future__ import annotations

LABELS = {"system": "System", "user": "User", "assistant": "Assistant"}
TURN_STOPS = ["\n\nUser:", "\n\nSystem:"]


class ChatTemplate:
    """The prompt text and the extra stop strings of a conversation: the plain template, or a Jinja one."""

    def __init__(self, source: str | None = None, eot_text: str = ""):
        self.source = source
        self.stops = TURN_STOPS if source is None else []
        self.special = source is not None  # a template's own special tokens (e.g. <|endoftext|>) are tokens
        if source is None:
            return
        try:
            from jinja2 import TemplateError
            from jinja2.sandbox import ImmutableSandboxedEnvironment
        except ImportError:
            raise ImportError("a chat template file needs jinja2: pip install jinja2") from None

        def raise_exception(message):
            raise TemplateError(message)

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = raise_exception
        try:
            self._template = env.from_string(source)
        except TemplateError as e:
            raise ValueError(f"the chat template does not compile: {e}") from None
        self._vars = {"bos_token": eot_text, "eos_token": eot_text}

    def render(self, messages) -> str:
        if self.source is None:
            return render(messages)
        from jinja2 import TemplateError

        try:
            return self._template.render(messages=messages, add_generation_prompt=True, **self._vars)
        except TemplateError as e:
            from gptx.serve.errors import bad

            raise bad("messages", f"the chat template refused them: {e}") from None


def render(messages) -> str:
    """The prompt text for messages [{"role", "content"}] (role system, user or assistant)."""
    turns = [f"{LABELS[m['role']]}: {m['content'].strip()}" for m in messages]
    return "\n\n".join(turns + ["Assistant:"])
