"""`nuclab loadgen`: bad input is rejected with one line naming the field, before any load."""

from __future__ import annotations

import time

import pytest

from nuclab.cli import main
from nuclab.net import free_port


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (["produce", "--rate", "0", "--duration", "5s"], "--rate"),
        (["produce", "--rate", "-10", "--duration", "5s"], "--rate"),
        (["produce", "--rate", "100"], "--duration"),
        (["produce", "--rate", "100", "--schedule", "100:1s"], "--rate/--schedule"),
        (["produce", "--schedule", "100:1s", "--duration", "1s"], "--duration"),
        (["produce", "--schedule", "fast:1s"], "--schedule"),
        (["produce", "--schedule", "100..200"], "--schedule"),
        (["produce", "--rate", "10", "--duration", "1s", "--size", "0"], "--size"),
        (["produce", "--rate", "10", "--duration", "1s", "--payload", "/nonexistent"], "--payload"),
        (["produce", "--rate", "10", "--duration", "1s", "--results", "r.txt"], "--results"),
        (["produce", "--rate", "10", "--duration", "1s", "--tolerance", "-1"], "--tolerance"),
        (["produce", "--rate", "10", "--duration", "1s", "-X", "novalue"], "-X"),
        (["produce", "--rate", "10", "--duration", "1s", "--partitions", "0"], "--partitions"),
        (["http", "--url", "ftp://x", "--rate", "10", "--duration", "1s"], "--url"),
        (["http", "--url", "http://127.0.0.1:1/", "--rate", "max", "--duration", "1s"], "--rate"),
        (
            [
                "http",
                "--url",
                "http://h/",
                "--rate",
                "5",
                "--duration",
                "1s",
                "--arrivals",
                "burst",
            ],
            "--arrivals",
        ),
        (["consume", "--expect", "0"], "--expect"),
    ],
)
def test_bad_input_is_one_line_naming_the_field(
    argv: list[str], field: str, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    assert (
        main(
            ["loadgen", *argv, "--bootstrap", "127.0.0.1:1"]
            if argv[0] != "http"
            else ["loadgen", *argv]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"nuclab: error: {field}:"), err
    assert "\n" not in err
    assert time.monotonic() - started < 2  # rejected before any connection attempt


def test_unreachable_url_fails_within_the_timeout(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()  # nothing listens there
    started = time.monotonic()
    code = main(
        [
            "loadgen",
            "http",
            "--url",
            f"http://127.0.0.1:{port}/",
            "--rate",
            "10",
            "--duration",
            "1s",
            "--timeout",
            "2s",
        ]
    )
    assert code == 2
    assert time.monotonic() - started < 2 + 1.5  # the timeout, and room for a loaded machine
    err = capsys.readouterr().err
    assert f"--url: cannot connect to http://127.0.0.1:{port}/ within 2s" in err
