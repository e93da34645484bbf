"""CLI subcommands. Each module here defines ``register(subparsers)``; the CLI finds them all.

A module's ``register`` adds its subparser(s) and sets ``func`` (callable taking the parsed
``argparse.Namespace`` and returning an exit code) with ``parser.set_defaults(func=...)``.
"""
