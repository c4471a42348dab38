"""The gptx command line: each subcommand lives in gptx/cli/<name>.py with add_parser(subparsers) and run(args)."""
import argparse
import importlib
import sys

# Subcommands in the order `gptx --help` lists them; a module that is missing is simply not offered.
SUBCOMMANDS = ["info", "train", "demo", "prepare", "sample", "eval", "bench"]


def build_parser():
    parser = argparse.ArgumentParser(prog="gptx", description="GPT training and sampling on native kernels")
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


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "_run"):
        parser.print_help()
        return 2
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
