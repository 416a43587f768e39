"""The ``h5recorder`` command: ``demo`` and ``recover``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="h5recorder")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo")
    args = parser.parse_args(argv)
    print(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
