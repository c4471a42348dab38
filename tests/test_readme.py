"""The README's Python blocks run as written, in order and in one namespace (later blocks use what earlier ones
made), with a few numbers made smaller so the suite stays fast. A block preceded by `<!-- readme-test: skip REASON
-->` is not run; a block that needs a GPU runs only where there is one."""
import re
from pathlib import Path

import pytest

import gptx

README = Path(__file__).resolve().parent.parent / "README.md"
# Each must still be found in the README (a stale one fails), so what is run is what is shown, but shorter.
SHRINK = {"steps=300": "steps=3"}
SKIP = re.compile(r"<!--\s*readme-test:\s*skip\b(.*?)-->")


def python_blocks(text):
    """(first line number, code, skip reason or None) of each ```python block."""
    lines = text.splitlines()
    blocks, i = [], 0
    while i < len(lines):
        if lines[i].strip() == "```python":
            start = i + 1
            end = next(j for j in range(start, len(lines)) if lines[j].strip() == "```")
            before = "\n".join(lines[max(0, i - 2):i])
            m = SKIP.search(before)
            blocks.append((start + 1, "\n".join(lines[start:end]) + "\n", m.group(1).strip() if m else None))
            i = end
        i += 1
    return blocks


def test_readme_has_python_blocks():
    assert len(python_blocks(README.read_text(encoding="utf-8"))) >= 3


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    text = README.read_text(encoding="utf-8")
    for old, new in SHRINK.items():
        assert old in text, f"README no longer contains {old!r}: update SHRINK in {__file__}"
    monkeypatch.chdir(tmp_path)  # files the examples write (runs/mine, hf_dir) land here
    namespace = {"__name__": "__readme__"}
    ran = 0
    for line, code, skip in python_blocks(text):
        if skip is not None:
            continue
        if re.search(r"""["']cuda""", code) and not gptx.cuda.is_available():
            continue  # the GPU example: run where there is a GPU
        for old, new in SHRINK.items():
            code = code.replace(old, new)
        try:
            exec(compile(code, f"README.md:{line}", "exec"), namespace)
        except Exception as e:
            pytest.fail(f"the README's Python block at line {line} fails: {type(e).__name__}: {e}")
        ran += 1
    assert ran >= 3
