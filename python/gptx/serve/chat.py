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
"""
from __future__ import annotations

LABELS = {"system": "System", "user": "User", "assistant": "Assistant"}
TURN_STOPS = ["\n\nUser:", "\n\nSystem:"]


def render(messages) -> str:
    """The prompt text for messages [{"role", "content"}] (role system, user or assistant)."""
    turns = [f"{LABELS[m['role']]}: {m['content'].strip()}" for m in messages]
    return "\n\n".join(turns + ["Assistant:"])
