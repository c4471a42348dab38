"""`gptx bench`: runs the native gptx-bench program shipped in the wheel (gptx/bin), passing the flags through."""
import os
import shutil
import subprocess
import sys

# (flag, argparse keywords): the gptx-bench options, mirrored so `gptx bench --help` documents them.
_FLAGS = [
    ("--device", dict(metavar="D", help="cpu (default), cuda or cuda:N: where the inputs live and the ops run")),
    ("--op", dict(action="append", metavar="NAME", help="op or row to run (repeatable, or a comma list)")),
    ("--shape", dict(action="append", metavar="S", help="MxNxK (matmul) or BxNHxTxHS (attention); repeatable")),
    ("--threads", dict(type=int, metavar="N", help="kernel and probe threads (default: all cores)")),
    ("--isa", dict(metavar="NAME", help="CPU kernel path: generic, avx2, avx512, avx512_bf16, reference (--device cpu only)")),
    ("--repeats", dict(type=int, metavar="N", help="timed runs per op")),
    ("--params", dict(type=int, metavar="N", help="parameter count of adamw_step / global_norm")),
    ("--probe-mib", dict(type=int, metavar="N", help="size of each bandwidth probe array in MiB")),
    ("--json", dict(metavar="FILE", help="also write the results as JSON")),
    ("--quick", dict(action="store_true", help="smaller shapes, 3 repeats: smoke tests only")),
    ("--no-validate", dict(action="store_true", help="skip the reference check")),
    ("--list", dict(action="store_true", help="list the ops and exit")),
]


def add_parser(sub):
    p = sub.add_parser("bench", help="validate and time the native ops on the CPU or a GPU (runs gptx-bench)")
    for flag, kw in _FLAGS:
        p.add_argument(flag, **kw)
    p.add_argument("--bench-path", metavar="PATH", help="gptx-bench to run (default: the one in the wheel)")
    return p


def find_bench(explicit=None) -> str:
    """The wheel's gptx/bin/gptx-bench, else $GPTX_BENCH, else gptx-bench on PATH (a plain CMake install)."""
    from gptx._paths import get_bench_path

    if explicit is not None and not (os.path.isfile(explicit) and os.access(explicit, os.X_OK)):
        # never fall back to another binary: the user asked for this one
        raise FileNotFoundError(f"--bench-path {explicit}: not an executable file")
    for path in (explicit, get_bench_path(), os.environ.get("GPTX_BENCH"), shutil.which("gptx-bench")):
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise FileNotFoundError(
        "gptx-bench not found: this gptx was not installed from a wheel that ships it (gptx/bin/gptx-bench); "
        "build it with -DGPTX_BUILD_BENCH=ON and pass --bench-path or set GPTX_BENCH")


def bench_argv(args) -> list:
    argv = []
    for flag, kw in _FLAGS:
        value = getattr(args, flag[2:].replace("-", "_"))
        if kw.get("action") == "store_true":
            if value:
                argv.append(flag)
        elif kw.get("action") == "append":
            for v in value or []:
                argv += [flag, str(v)]
        elif value is not None:
            argv += [flag, str(value)]
    return argv


def _check_json_target(path: str) -> None:
    """OSError unless path can be written: gptx-bench reports a failed --json write only as a warning (exit 0), so
    a result would be lost without a word. A file this check creates is removed again."""
    existed = os.path.exists(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a folder")
    with open(path, "ab"):
        pass
    if not existed:
        os.unlink(path)


def _stamp(path: str):
    try:
        st = os.stat(path)
        return st.st_mtime_ns, st.st_size, st.st_ino
    except OSError:
        return None


def run(args) -> int:
    if args.json:
        try:
            _check_json_target(args.json)
        except OSError as e:
            print(f"gptx bench: error: --json {args.json}: cannot write: {e.strerror or e}", file=sys.stderr)
            return 2
    try:
        exe = find_bench(args.bench_path)
    except FileNotFoundError as e:
        print(f"gptx bench: {e}", file=sys.stderr)
        return 2
    sys.stdout.flush()
    before = _stamp(args.json) if args.json else None
    rc = subprocess.call([exe] + bench_argv(args))
    if rc == 0 and args.json and not args.list:
        after = _stamp(args.json)
        if after is None or after == before or after[1] == 0:
            print(f"gptx bench: error: --json {args.json}: the results were not written", file=sys.stderr)
            return 1
    return rc
