"""Replaces one script's section of bench/RESULTS.md (between its begin/end markers), leaving the others alone."""
import os

HEADER = ("# gptx benchmark results\n\nWritten by the scripts in bench/ (see bench/README.md); each script replaces "
          "only the section between its own markers.\n\n")


def write_section(path, name, text):
    """Put `text` between <!-- name:begin --> and <!-- name:end --> in path (appended, or a new file, if missing)."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = f"{begin}\n{text}\n{end}"
    if os.path.exists(path):
        with open(path) as f:
            doc = f.read()
        if begin in doc and end in doc:
            doc = doc[:doc.index(begin)] + block + doc[doc.index(end) + len(end):]
        else:
            doc = doc.rstrip("\n") + "\n\n" + block + "\n"
    else:
        doc = HEADER + block + "\n"
    with open(path, "w") as f:
        f.write(doc)
