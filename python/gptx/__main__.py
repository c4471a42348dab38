"""The gptx command line: `gptx info` (more subcommands arrive with the model and sampler)."""
import argparse
import json
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="gptx", description="GPT training and sampling on native kernels")
    sub = parser.add_subparsers(dest="command")
    p_info = sub.add_parser("info", help="version, CPU kernel path, threads, CUDA")
    p_info.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)

    if args.command == "info":
        from gptx._info import format_info, info

        d = info()
        print(json.dumps(d, indent=2) if args.json else format_info(d))
        return 0
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
