"""Compares the PTX of every CUDA kernel between two git revisions (no GPU needed).

A refactor of the CUDA launchers must leave the kernels alone; on a machine without a GPU this is how to check it.
Each revision's csrc/cuda/*.cu is compiled to PTX (nvcc -ptx, one file per architecture) and every kernel's body is
compared with symbol names and branch labels normalised (they change with namespaces, file names and the order of
functions). Kernels whose body is found unchanged, changed, removed or added are listed.

    python bench/ptx_compare.py HEAD~1 HEAD            # sm_90
    python bench/ptx_compare.py main WORKTREE --arch 80 # WORKTREE: the files as they are on disk
"""
from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(?:\.visible\s+|\.weak\s+)?\.(?:entry|func)\s+(\w+)")


def checkout(rev: str, dest: Path) -> Path:
    dest.mkdir(parents=True)
    if rev == "WORKTREE":
        dest.rmdir()
        shutil.copytree(ROOT / "csrc", dest / "csrc")
    else:
        tar = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "csrc"], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=tar, check=True)
    return dest


def ptx(tree: Path, arch: str, nvcc: str) -> dict[str, str]:
    """kernel symbol -> normalised body, over every .cu file of the tree."""
    kernels = {}
    for cu in sorted((tree / "csrc/cuda").glob("*.cu")):
        out = tree / f"{cu.stem}.ptx"
        subprocess.run([nvcc, "-std=c++17", f"-arch=sm_{arch}", "--expt-relaxed-constexpr", "-I", str(tree / "csrc"),
                        "-I", str(tree / "csrc/include"), "-ptx", str(cu), "-o", str(out)], check=True)
        name, body = None, []
        for line in out.read_text().splitlines():
            if line.lstrip().startswith("//") or line.startswith((".file", ".loc")):
                continue
            m = BLOCK.match(line)
            if m:
                if name:
                    kernels[name] = "\n".join(body)
                name, body = m.group(1), []
            elif name is not None:
                body.append(re.sub(r"(\$L__BB|__local_depot)\d+", r"\1", re.sub(r"_Z\w+", "SYM", line)))
        if name:
            kernels[name] = "\n".join(body)
    return kernels


def demangle(names: list[str]) -> list[str]:
    if not names or shutil.which("c++filt") is None:
        return names
    return subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True).stdout.splitlines()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old", help="git revision (or WORKTREE)")
    ap.add_argument("new", help="git revision (or WORKTREE)")
    ap.add_argument("--arch", default="90")
    ap.add_argument("--nvcc", default="nvcc")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        old = ptx(checkout(args.old, Path(tmp) / "old"), args.arch, args.nvcc)
        new = ptx(checkout(args.new, Path(tmp) / "new"), args.arch, args.nvcc)
    left = collections.Counter(new.values())
    changed = []
    for name, body in old.items():
        if left[body]:
            left[body] -= 1
        else:
            changed.append(name)
    added = []
    for name, body in new.items():  # the new kernels whose body no old kernel had
        if left[body]:
            left[body] -= 1
            added.append(name)
    print(f"sm_{args.arch}: {len(old) - len(changed)} of {len(old)} kernels of {args.old} have an identical body in "
          f"{args.new}; {len(changed)} changed or removed, {len(added)} changed or added")
    for n in demangle(changed):
        print("  old:", n)
    for n in demangle(added):
        print("  new:", n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
