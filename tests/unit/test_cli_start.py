"""nuclab's start-up: only the chosen command's module is imported; --help still lists all."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from nuclab import cli

HEAVY = ("aiohttp", "pyarrow", "pandas", "matplotlib", "kubernetes", "ansible_runner", "kafka")


def imported_after(code: str) -> set[str]:
    """Modules loaded by a fresh interpreter after ``code`` (a clean sys.modules)."""
    probe = f"{code}\nimport json, sys; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    return set(json.loads(out.splitlines()[-1]))


def test_list_imports_only_the_experiment_commands() -> None:
    loaded = imported_after(
        "from nuclab import cli\ncli.build_parser(['list', '-o', 'json']).parse_args(['list'])"
    )
    commands = {m for m in loaded if m.startswith("nuclab.commands.")}
    assert commands == {"nuclab.commands.experiment"}
    assert not {m.split(".")[0] for m in loaded} & set(HEAVY)


def test_help_lists_every_command_without_importing_any() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "import sys\nfrom nuclab import cli\nsys.exit(cli.main(['-h']))"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0
    for name, (_, text) in cli.COMMANDS.items():
        assert f"    {name}" in proc.stdout
        assert " ".join(text.split()[:4]) in " ".join(proc.stdout.split())
    loaded = imported_after("from nuclab import cli\ncli.build_parser(['--help'])")
    assert not {m for m in loaded if m.startswith("nuclab.commands.")}


def test_the_command_table_is_what_the_modules_register() -> None:
    parser = cli.build_parser()  # every module, complete
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    registered = {choice.dest: choice.help for choice in action._choices_actions}
    assert registered == {name: text for name, (_, text) in cli.COMMANDS.items()}


def test_a_command_parses_the_same_lazily_and_fully() -> None:
    argv = ["scale", "purple", "3", "--timeout", "9", "-q"]
    assert vars(cli.build_parser(argv).parse_args(argv)) == vars(
        cli.build_parser().parse_args(argv)
    )
