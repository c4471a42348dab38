"""A summarisation corpus from Python docstrings: one-line summary <- extended description, split by module.

Source files are read with `ast` and `tokenize`, never imported: importing the whole standard library has side
effects (`antigravity` opens a web browser, `this` prints to stdout, `tkinter`/`turtle` want a display, some modules
exist only on another platform and raise on import, `idlelib` starts reading config files) and costs seconds and
memory per module, while the docstrings and comments are all in the source text.

The split unit is the module's first two dotted components (`email.mime`, `json.decoder`, `os`): submodules of one
package repeat each other's wording, so a unit lands in exactly one split, chosen by a hash of its name (sha256, not
a random state). The same Python version therefore gives the same files, byte for byte.
"""
from __future__ import annotations

import ast
import hashlib
import importlib.util
import io
import os
import re
import sysconfig
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

# Split fractions by hash of the unit name: 10% test, 10% val, the rest train.
TEST_FRACTION, VAL_FRACTION = 0.10, 0.10
# A pair's document needs this many words of prose (doctest lines not counted): shorter bodies say too little to be
# summarised ("See above.", a lone "Raises ValueError.").
MIN_DOC_WORDS = 12
# Summary length in words: a 1- or 2-word summary ("Constructor.", "Internal use") says nothing; longer than 40
# words is a paragraph, not a one-line summary.
MIN_SUMMARY_WORDS, MAX_SUMMARY_WORDS = 3, 40
# Documents longer than this many characters are dropped: tables of options and long reference pages are not
# summaries of one thing, and a small model's context holds a few hundred tokens anyway.
MAX_DOC_CHARS = 2000
# Folders that hold tests, demos or data rather than library code.
SKIP_DIRS = {"test", "tests", "idle_test", "__pycache__", "site-packages", "dist-packages", "turtledemo",
             "testing", "_test", "ensurepip"}
# A first line that is a call signature (`foo(a, b) -> int`, as C extensions and old modules write) is no summary.
SIGNATURE = re.compile(r"^[\w.]+\(.*\)(\s*->.*)?$")


@dataclass
class Pair:
    id: str          # module:qualified.name
    module: str
    document: str
    summary: str


@dataclass
class Corpus:
    splits: dict[str, list[Pair]]
    pretrain_text: str
    stats: dict = field(default_factory=dict)


def split_of(unit: str) -> str:
    """"train", "val" or "test" for a split unit, from the first 8 bytes of sha256(unit name)."""
    h = int.from_bytes(hashlib.sha256(unit.encode("utf-8")).digest()[:8], "big") / 2.0 ** 64
    return "test" if h < TEST_FRACTION else "val" if h < TEST_FRACTION + VAL_FRACTION else "train"


def unit_of(module: str) -> str:
    return ".".join(module.split(".")[:2])


def package_roots(packages) -> list[tuple[str, Path, str]]:
    """(name, folder or file, module prefix) per requested package; "stdlib" is the running Python's library."""
    roots = []
    for name in packages:
        if name == "stdlib":
            roots.append(("stdlib", Path(sysconfig.get_paths()["stdlib"]), ""))
            continue
        try:
            spec = importlib.util.find_spec(name)  # locates a top-level package without running its code
        except (ImportError, ValueError) as e:
            raise ValueError(f"--packages: cannot locate {name!r}: {e}") from None
        if spec is None:
            raise ValueError(f"--packages: {name!r} is not installed for this Python")
        if spec.submodule_search_locations:
            roots.append((name, Path(list(spec.submodule_search_locations)[0]), name))
        elif spec.origin and spec.origin.endswith(".py"):
            roots.append((name, Path(spec.origin), name))
        else:
            raise ValueError(f"--packages: {name!r} has no Python source to read ({spec.origin})")
    return roots


def module_files(root: Path, prefix: str) -> list[tuple[str, Path]]:
    """(module name, path) of every .py file under root, sorted by module name; test and data folders skipped."""
    if root.is_file():
        return [(prefix, root)]
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        # Only packages (folders with __init__.py): skips lib-dynload, config folders and data trees.
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith(".")
                             and (Path(dirpath) / d / "__init__.py").exists())
        for fn in sorted(filenames):
            if not fn.endswith(".py") or fn.startswith("test_"):
                continue
            parts = list(rel.parts) + ([] if fn == "__init__.py" else [fn[:-3]])
            if prefix:
                parts = [prefix] + parts
            if not parts or not all(p.isidentifier() for p in parts):
                continue
            out.append((".".join(parts), Path(dirpath) / fn))
    return sorted(out)


def _read_source(path: Path) -> str:
    with open(path, "rb") as f:
        data = f.read()
    encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    return data.decode(encoding)


def split_docstring(doc: str) -> tuple[str, str] | None:
    """(summary, body) of a cleaned docstring whose first paragraph is one line, else None."""
    lines = doc.strip("\n").split("\n")
    if len(lines) < 3 or lines[1].strip():
        return None  # no body, or a first paragraph of several lines: no one-line summary
    summary = " ".join(lines[0].split())
    body = "\n".join(lines[2:]).strip("\n")
    return summary, body


def prose_words(body: str) -> int:
    """Words outside doctest examples (a `>>>` line, its `...` continuations and its output up to a blank line)."""
    n, in_example = 0, False
    for line in body.split("\n"):
        s = line.strip()
        if s.startswith(">>>"):
            in_example = True
            continue
        if not s:
            in_example = False
            continue
        if not in_example:
            n += len(s.split())
    return n


def _docstrings(tree: ast.Module, module: str):
    """(qualified name, docstring) of the module, its classes and functions, nested ones included."""
    stack = [(tree, "")]
    while stack:
        node, qual = stack.pop()
        doc = ast.get_docstring(node, clean=True)
        if doc:
            yield qual or "<module>", doc
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                stack.append((child, f"{qual}.{child.name}" if qual else child.name))


def _comments(source: str) -> list[str]:
    """Comment blocks (consecutive comment lines joined), without the '#' and without shebang/coding lines."""
    blocks, current, last_row = [], [], -2
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type != tokenize.COMMENT:
                continue
            text = tok.string.lstrip("#").strip()
            if tok.start[0] <= 2 and (text.startswith("!") or "coding" in text):
                continue
            if tok.start[0] != last_row + 1 and current:
                blocks.append(" ".join(current))
                current = []
            if text and set(text) - set("-=*#~_"):
                current.append(text)
            last_row = tok.start[0]
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    if current:
        blocks.append(" ".join(current))
    return blocks


def build_corpus(packages=("stdlib",)) -> Corpus:
    """Pairs and pretraining text from the named packages' source files (see the module docstring)."""
    if not packages:
        raise ValueError("--packages: name at least one package (stdlib for the standard library)")
    counts = dict(files=0, unreadable=0, docstrings=0, no_summary_line=0, signature_summary=0, short_summary=0,
                  long_summary=0, doctest_only=0, short_body=0, long_body=0, duplicate_summary=0)
    candidates: list[Pair] = []
    texts: dict[str, list[str]] = {}  # unit -> docstrings and comments, in file order
    seen_files = set()
    for _, root, prefix in package_roots(packages):
        for module, path in module_files(root, prefix):
            key = os.path.realpath(path)
            if key in seen_files:
                continue
            seen_files.add(key)
            try:
                source = _read_source(path)
                tree = ast.parse(source, filename=str(path))
            except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
                counts["unreadable"] += 1  # e.g. lib2to3's deliberately broken test data
                continue
            counts["files"] += 1
            unit_text = texts.setdefault(unit_of(module), [])
            docs = sorted(_docstrings(tree, module))
            unit_text.extend(doc for _, doc in docs)
            unit_text.extend(_comments(source))
            for qual, doc in docs:
                counts["docstrings"] += 1
                pair = _pair(module, qual, doc, counts)
                if pair is not None:
                    candidates.append(pair)
    # Summaries seen more than once ("Return self==value.", "Initialize self.") are boilerplate: all copies go,
    # which also keeps one text from appearing in two splits.
    freq: dict[str, int] = {}
    for p in candidates:
        k = p.summary.lower()
        freq[k] = freq.get(k, 0) + 1
    splits = {"train": [], "val": [], "test": []}
    for p in candidates:
        if freq[p.summary.lower()] > 1:
            counts["duplicate_summary"] += 1
            continue
        splits[split_of(unit_of(p.module))].append(p)
    parts = [t for unit in sorted(texts) if split_of(unit) != "test" for t in texts[unit]]
    # Boilerplate repeated across modules (the encodings.* copyright note, importlib's bootstrap warning) can put a
    # test document into the pretraining text through another module: such test pairs go too.
    text = "\n\n".join(parts) + "\n"
    kept = [p for p in splits["test"] if p.document not in text]
    counts["seen_in_pretraining"] = len(splits["test"]) - len(kept)
    splits["test"] = kept
    units = {s: sorted({unit_of(p.module) for p in splits[s]}) for s in splits}
    stats = dict(python=_python_version(), packages=list(packages), pairs={s: len(v) for s, v in splits.items()},
                 units={s: len(v) for s, v in units.items()}, files=counts.pop("files"),
                 docstrings=counts.pop("docstrings"), dropped=counts, pretrain_chars=0)
    stats["pretrain_chars"] = len(text)
    return Corpus(splits, text, stats)


def _pair(module: str, qual: str, doc: str, counts: dict) -> Pair | None:
    parts = split_docstring(doc)
    if parts is None:
        counts["no_summary_line"] += 1
        return None
    summary, body = parts
    words = len(summary.split())
    if SIGNATURE.match(summary):
        counts["signature_summary"] += 1
        return None
    if words < MIN_SUMMARY_WORDS:
        counts["short_summary"] += 1
        return None
    if words > MAX_SUMMARY_WORDS:
        counts["long_summary"] += 1
        return None
    n = prose_words(body)
    if n == 0 and ">>>" in body:
        counts["doctest_only"] += 1
        return None
    if n < MIN_DOC_WORDS:
        counts["short_body"] += 1
        return None
    if len(body) > MAX_DOC_CHARS:
        counts["long_body"] += 1
        return None
    return Pair(f"{module}:{qual}", module, body, summary)


def _python_version() -> str:
    import platform

    return platform.python_version()


PRETRAIN_FILE = "pretrain.txt"
SPLITS = ("train", "val", "test")


def write_corpus(corpus: Corpus, out_dir, tokenizer_vocab: int | None = None) -> dict:
    """train.jsonl, val.jsonl, test.jsonl ({"id", "document", "summary"} per line), pretrain.txt and stats.json in
    out_dir, each written atomically; with tokenizer_vocab, also a byte-level BPE of that many ids trained on
    pretrain.txt (the test split's text never reaches it) in out_dir/tokenizer. Returns the stats."""
    import json

    from gptx._fileio import atomic_write_bytes, atomic_write_json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        lines = [json.dumps({"id": p.id, "document": p.document, "summary": p.summary}, ensure_ascii=False)
                 for p in corpus.splits[split]]
        atomic_write_bytes(str(out / f"{split}.jsonl"), ("\n".join(lines) + "\n" if lines else "").encode("utf-8"))
    atomic_write_bytes(str(out / PRETRAIN_FILE), corpus.pretrain_text.encode("utf-8"))
    stats = dict(corpus.stats)
    if tokenizer_vocab is not None:
        from gptx.tokenizer import Tokenizer

        tok = Tokenizer.train([corpus.pretrain_text], tokenizer_vocab, name="docstrings-bpe")
        tok.save(str(out / "tokenizer"))
        stats["tokenizer"] = {"kind": "bpe", "vocab_size": tok.vocab_size}
    atomic_write_json(str(out / "stats.json"), stats)
    return stats


def stats_line(stats: dict) -> str:
    p, u, d = stats["pairs"], stats["units"], stats["dropped"]
    dropped = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in d.items() if v)
    return (f"{sum(p.values()):,} pairs (train {p['train']:,} / val {p['val']:,} / test {p['test']:,}; modules "
            f"grouped in {u['train']} / {u['val']} / {u['test']} units) from {stats['docstrings']:,} docstrings in "
            f"{stats['files']:,} files of {', '.join(stats['packages'])} (Python {stats['python']}); "
            f"dropped: {dropped}; "
            f"pretraining text {stats['pretrain_chars']:,} characters (test modules excluded)")
