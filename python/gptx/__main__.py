"""The gptx command line: each subcommand lives in gptx/cli/<name>.py with add_parser(subparsers) and run(args)."""
import argparse
import importlib
import sys

# Subcommands in the order `gptx --help` lists them; a module that is missing is simply not offered.
SUBCOMMANDS = ["info", "train", "demo", "prepare", "sample", "summarize", "eval", "export", "serve", "bench"]


def build_parser():
    parser = argparse.ArgumentParser(
        prog="gptx", description="GPT training and sampling on native kernels",
        epilog="gptx --cmake-dir / --include-dir: print where the C++ package's CMake config / headers are")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"gptx.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"gptx.cli.{name}":
                continue
            raise
        p = module.add_parser(sub)
        p.set_defaults(_run=module.run)
    return parser


# Path queries for C++ builds (`cmake -Dgptx_DIR="$(python -m gptx --cmake-dir)"`), answered before the
# subcommand parser so they print nothing but the path.
PATH_FLAGS = {"--cmake-dir": "get_cmake_dir", "--include-dir": "get_include"}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in PATH_FLAGS:
        from gptx import _paths

        try:
            print(getattr(_paths, PATH_FLAGS[argv[0]])())
        except FileNotFoundError as e:
            print(f"gptx: {e}", file=sys.stderr)
            return 1
        return 0
    parser = build_parser()
    args = parser.parse_args(argv)
    args._argv = argv  # `gptx train --nproc N` starts N ranks of the same command line
    if not hasattr(args, "_run"):
        parser.print_help()
        return 2
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
