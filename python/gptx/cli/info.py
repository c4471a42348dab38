"""`gptx info`: version, CPU kernel path, threads, CUDA build and devices."""
import json


def add_parser(sub):
    p = sub.add_parser("info", help="version, CPU kernel path, threads, CUDA")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    return p


def run(args) -> int:
    from gptx._info import format_info, info

    d = info()
    print(json.dumps(d, indent=2) if args.json else format_info(d))
    return 0
