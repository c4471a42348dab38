"""Subcommands of the gptx command line (one module each: add_parser(subparsers) and run(args))."""
