"""The ``nuclab`` command line: a thin layer that dispatches to ``nuclab.commands.*``.

User errors (``NuclabError``) become one line on stderr and their exit code; nothing else
is caught here, so a real bug still shows its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from nuclab import __version__, commands
from nuclab.errors import NuclabError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nuclab",
        description="Run distributed-systems experiments on a K3s lab.",
    )
    parser.add_argument("--version", action="version", version=f"nuclab {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except NuclabError as exc:
        print(f"nuclab: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("nuclab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
