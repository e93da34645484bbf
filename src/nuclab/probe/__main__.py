"""``python -m nuclab.probe``: the probe without the rest of the CLI (the sidecar's and the node
DaemonSet's entry point: loading every nuclab command would triple its memory)."""

from __future__ import annotations

import argparse
import logging
import sys

from nuclab.errors import NuclabError
from nuclab.probe import config, service


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nuclab.probe", description=__doc__)
    config.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        cfg = config.from_args(args)
    except NuclabError as exc:
        print(f"nuclab probe: error: {exc}", file=sys.stderr)
        return exc.exit_code
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    return service.run(cfg)


if __name__ == "__main__":
    sys.exit(main())
