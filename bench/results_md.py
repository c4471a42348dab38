"""Shared reporting of the bench scripts: the machine's CPU, and one script's section of bench/RESULTS.md."""
import os
import platform

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


def cpu_model():
    """'MODEL (N logical CPUs; avx2, fma, ...)' from /proc/cpuinfo (the ISA flags gptx dispatches on)."""
    model, n, flags = platform.processor() or "unknown", 0, set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name":
                    model, n = value.strip(), n + 1
                elif key == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    isa = [x for x in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16") if x in flags]
    return f"{model} ({n} logical CPUs; {', '.join(isa) or 'no avx2'})"
