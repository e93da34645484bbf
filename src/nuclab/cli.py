"""The ``nuclab`` command line: a thin layer that dispatches to ``nuclab.commands.*``.

Only the chosen command's module is imported (the others pull in aiohttp, pyarrow,
matplotlib, the Kafka client...: seconds of start-up that ``nuclab list`` must not pay);
``nuclab --help`` lists every command from ``COMMANDS`` without importing any of them.

User errors (``NuclabError``) become one line on stderr and their exit code. Anything else is
a bug: one line naming it, exit 1, and a hint to re-run with ``--debug`` (accepted before or
after the command), which lets the traceback through.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from nuclab import __version__
from nuclab.errors import NuclabError

DEBUG_HELP = "show the traceback of an unexpected error (for a bug report)"

# Command -> (module in nuclab.commands that registers it, its one-line help). A unit test
# checks that each module registers exactly these names with exactly this help.
COMMANDS: dict[str, tuple[str, str]] = {
    "create": ("experiment", "create an experiment and wait for its peers"),
    "list": ("experiment", "list the experiments"),
    "scale": ("experiment", "scale an experiment (0 pauses it)"),
    "stats": (
        "stats",
        "show what a running experiment's peers measured (delivery, latency, probe RTT)",
    ),
    "delete": ("experiment", "export an experiment, then delete it and wait until it is gone"),
    "export": (
        "export",
        "export an experiment's metrics and logs into a dataset (Parquet + manifest)",
    ),
    "loadgen": (
        "loadgen",
        "generate Kafka or HTTP load at a target rate and measure what was achieved",
    ),
    "probe": ("probe", "measure RTT and loss to peers (sidecar) or between nodes (--node)"),
    "report": ("report", "render an exported dataset as one self-contained HTML page"),
    "compare": ("compare", "compare the key figures of exported datasets; fail on a regression"),
    "rerun": ("rerun", "create an experiment again from the dataset it was exported to"),
    "campaign": (
        "campaign",
        "run a campaign file's grid of experiments, export each and compare them; resumable",
    ),
}


class Parser(argparse.ArgumentParser):
    """argparse, with its errors (an unknown flag, a value of the wrong type) on one line like
    nuclab's own, and a pointer to --help instead of the whole usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def chosen_command(argv: Sequence[str]) -> str | None:
    """The command named on the line: the first word that is not an option (the top level
    has only ``-h`` and ``--version``, which take no value)."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; with ``argv``, only the module of the command it names is imported (the
    other commands are listed by name and help), without, every command is complete."""
    parser = Parser(
        prog="nuclab",
        description="Run distributed-systems experiments on a K3s lab.",
    )
    parser.add_argument("--version", action="version", version=f"nuclab {__version__}")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    if argv is None:
        modules = sorted({module for module, _ in COMMANDS.values()})
    else:
        command = chosen_command(argv)
        modules = [COMMANDS[command][0]] if command else []
    for module in modules:
        importlib.import_module(f"nuclab.commands.{module}").register(subparsers)
    for name, (_, text) in COMMANDS.items():
        if name not in subparsers.choices:
            subparsers.add_parser(name, help=text, add_help=False)
    for sub in subparsers.choices.values():
        # SUPPRESS: absent after the command, it leaves the top level's value alone.
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(words)
    args = parser.parse_args(words)
    try:
        return int(args.func(args) or 0)
    except NuclabError as exc:
        print(f"nuclab: error: {one_line(str(exc))}", file=sys.stderr)
        if args.debug:
            raise
        return exc.exit_code
    except KeyboardInterrupt:
        print("nuclab: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        detail = one_line(f"{type(exc).__name__}: {exc}")
        print(
            f"nuclab: error: unexpected {detail} (a bug in nuclab: re-run with --debug to see "
            "the traceback)",
            file=sys.stderr,
        )
        return 1


def one_line(text: str) -> str:
    """A message on one line (a multi-line one from a server or a parser joined)."""
    return " ".join(text.split())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
