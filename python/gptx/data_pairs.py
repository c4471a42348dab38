"""Document -> summary pairs: JSONL reading with the usual key pairs detected, the prompt template, and the cut that
fits a document and its summary into the context. Fine-tuning (data_finetune), `gptx summarize` and `gptx eval
--rouge` all go through here, so a model is prompted at inference exactly as it was trained."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from gptx._checks import path as _path

# Key pairs recognised without flags, in the order they are tried: XSum, CNN/DailyMail, SAMSum, OpenAI-style
# prompt/completion.
KNOWN_KEYS = (("document", "summary"), ("article", "highlights"), ("dialogue", "summary"), ("prompt", "completion"))
# The GPT-2 paper's summarisation prompt (Radford et al. 2019, section 3.6): the text, then "TL;DR:".
DEFAULT_TEMPLATE = "{document}\nTL;DR:"
RAW_TEMPLATE = "{document}"  # prompt/completion files: the prompt is already a prompt


@dataclass
class Pair:
    id: object          # the line's "id" when it has one, else its line number
    source: str         # the document (or prompt)
    target: str | None  # the summary (or completion); None when the line has none
    line: int


@dataclass
class PairFile:
    pairs: list[Pair]
    source_key: str
    target_key: str | None
    skipped_empty: int = 0   # lines whose document or summary is empty (after stripping whitespace)
    path: str = ""
    raw: bool = field(default=False)  # prompt/completion: no template, the prompt keeps its end when cut

    @property
    def has_targets(self) -> bool:
        return any(p.target is not None for p in self.pairs)


def _lines(path: str):
    """(line number, dict) per non-blank line; ValueError naming the file and line for anything else."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"{where}: not valid UTF-8 ({e.reason})") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: invalid JSON: {e.msg} (column {e.colno})") from None
            except RecursionError:
                raise ValueError(f"{where}: invalid JSON: nested too deeply") from None
            if not isinstance(obj, dict):
                raise ValueError(f"{where}: expected a JSON object, got {type(obj).__name__}")
            yield lineno, obj


def detect_keys(obj: dict, source_key=None, target_key=None, need_target=True, where="") -> tuple[str, str | None]:
    """(source key, target key) for a file whose first object is obj: the keys given, else the first of KNOWN_KEYS
    that obj holds (its source key alone when need_target is False and no target is there)."""
    if source_key is not None and target_key is not None:
        return source_key, target_key
    for s, t in KNOWN_KEYS:
        if source_key not in (None, s) or target_key not in (None, t):
            continue
        if s in obj and t in obj:
            return s, t
    for s, t in KNOWN_KEYS:
        if source_key not in (None, s) or target_key not in (None, t):
            continue
        if s in obj and not need_target:
            return s, None
    if source_key is not None and not need_target:
        return source_key, None
    if source_key is not None:
        raise ValueError(f"{where}: no summary key known for document key {source_key!r} (keys found: "
                         f"{sorted(obj)}): pass --summary-key")
    known = ", ".join(f"{s}/{t}" for s, t in KNOWN_KEYS)
    raise ValueError(f"{where}: none of the known key pairs ({known}) is in this line (keys found: {sorted(obj)}): "
                     f"pass --document-key and --summary-key")


def read_pairs(path, source_key=None, target_key=None, need_target=True, skip_empty=True) -> PairFile:
    """The pairs of a JSONL file. Keys: as given, else detected from the first line (detect_keys). A line that lacks
    the source key, or the target key when need_target, is a ValueError naming the line and the keys found; values
    must be strings. skip_empty: lines whose source or (present) target is blank are left out and counted."""
    path = _path("read_pairs", "path", path)
    pairs, skipped = [], 0
    keys = None
    for lineno, obj in _lines(path):
        where = f"{path}:{lineno}"
        if keys is None:
            keys = detect_keys(obj, source_key, target_key, need_target, where)
        s_key, t_key = keys
        for key in (s_key, t_key):
            if key is None:
                continue
            if key not in obj:
                if key == t_key and not need_target:
                    continue
                raise ValueError(f"{where}: missing key \"{key}\" (keys found: {sorted(obj)})")
            if not isinstance(obj[key], str):
                raise ValueError(f"{where}: \"{key}\" must be a string, got {type(obj[key]).__name__}")
            try:  # JSON's \ud800-style escapes can spell lone surrogates, which no tokenizer can encode
                obj[key].encode("utf-8")
            except UnicodeEncodeError as e:
                raise ValueError(f"{where}: \"{key}\" holds an unpaired surrogate escape "
                                 f"(\\u{ord(obj[key][e.start]):04x}): not text") from None
        source = obj[s_key]
        target = obj.get(t_key) if t_key is not None else None
        if skip_empty and (not source.strip() or (target is not None and not target.strip())):
            skipped += 1
            continue
        ident = obj.get("id", lineno)
        pairs.append(Pair(ident if isinstance(ident, (str, int)) else str(ident), source, target, lineno))
    if keys is None:
        raise ValueError(f"{path} holds no examples")
    if not pairs:
        raise ValueError(f"{path}: every one of its {skipped} examples has an empty document or summary")
    raw = keys == ("prompt", "completion") or (keys[0] == "prompt" and keys[1] is None)
    return PairFile(pairs, keys[0], keys[1], skipped, path, raw)


def unescape(text: str | None) -> str | None:
    """A template typed on a command line: "\\n" and "\\t" become a newline and a tab."""
    return None if text is None else text.replace("\\n", "\n").replace("\\t", "\t")


class Template:
    """A prompt template with one {document} field, e.g. "{document}\\nTL;DR:". The summary follows the prompt with
    one space in front (the way GPT-2's BPE writes a word after a colon); raw (prompt/completion) pairs are used
    as they are.

    A document too long for the context is cut: a document at its end (the lead of a text carries most of its
    content), a raw prompt at its start (its end says what to write next, as fine-tuning on prompt/completion
    always did). The template's own text and the summary are never cut.
    """

    def __init__(self, template: str | None = None, raw: bool = False):
        if template is None:
            template = RAW_TEMPLATE if raw else DEFAULT_TEMPLATE
        if not isinstance(template, str) or template.count("{document}") != 1:
            raise ValueError(f"the template must contain {{document}} exactly once, got {template!r}")
        self.template = template
        self.raw = raw
        self.head, self.tail = template.split("{document}")

    def target_text(self, summary: str) -> str:
        if self.raw or not summary or summary[0].isspace():
            return summary
        return " " + summary

    def prompt_ids(self, document: str, tokenizer, room: int, where: str = "") -> tuple[list[int], bool]:
        """(prompt token ids of at most `room` tokens, whether the document was cut). The template's text is
        encoded apart from the document, so the ids do not depend on where a cut falls."""
        head = tokenizer.encode(self.head) if self.head else []
        tail = tokenizer.encode(self.tail) if self.tail else []
        doc = tokenizer.encode(document)
        fixed = len(head) + len(tail)
        if fixed + 1 > room:
            raise ValueError(f"{where}the template {self.template!r} takes {fixed} tokens, leaving no room for the "
                             f"document in {room} tokens: shorten the template or the summary length")
        cut = len(doc) > room - fixed
        if cut:
            keep = room - fixed
            doc = doc[-keep:] if self.raw else doc[:keep]
        ids = head + doc + tail
        if not ids:
            raise ValueError(f"{where}the prompt is empty")
        return ids, cut
