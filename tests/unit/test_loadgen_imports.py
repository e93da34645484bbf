"""`nuclab loadgen` stays light: loading the command imports neither Kafka's nor the HTTP client;
the mode that runs imports its own client, and only that one."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

CLIENTS = ("aiohttp", "confluent_kafka")

# Runs in a fresh interpreter: this test process may have imported the clients already.
PROBE = """
import argparse, json, sys
from nuclab.commands import loadgen
from nuclab.errors import NuclabError

parser = argparse.ArgumentParser(prog="nuclab")
loadgen.register(parser.add_subparsers(dest="command", required=True))
argv = json.loads(sys.argv[1])
code = None
if argv:
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except NuclabError as exc:
        code = exc.exit_code
print(json.dumps({
    "code": code,
    "loaded": sorted({name.split(".")[0] for name in sys.modules} & {"aiohttp", "confluent_kafka"}),
}))
"""


def _loaded(*argv: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(list(argv))],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_loading_the_command_imports_no_client() -> None:
    assert _loaded() == {"code": None, "loaded": []}


# A rate of 0 is refused (exit 2) before any connection: the run gets as far as its mode's
# validation, which is where the client is imported.
@pytest.mark.parametrize(
    ("argv", "client"),
    [
        (("loadgen", "http", "--url", "http://127.0.0.1:9/", "--rate", "0", "--duration", "1s"),
         "aiohttp"),
        (("loadgen", "produce", "--bootstrap", "127.0.0.1:9", "--rate", "0", "--duration", "1s"),
         "confluent_kafka"),
        (("loadgen", "consume", "--bootstrap", "127.0.0.1:9", "--expect", "0"),
         "confluent_kafka"),
    ],
    ids=["http", "produce", "consume"],
)  # fmt: skip
def test_a_mode_imports_only_its_own_client(argv: tuple[str, ...], client: str) -> None:
    assert _loaded(*argv) == {"code": 2, "loaded": [client]}
