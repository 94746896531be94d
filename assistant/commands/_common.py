"""Helpers shared by the command modules: argument parsing and `--json` output."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, NoReturn

from assistant.errors import UsageError


class Parser(argparse.ArgumentParser):
    """argparse that raises UsageError (one line, exit 2) instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def parser(command: str, description: str) -> Parser:
    return Parser(prog=f"nightcap {command}", description=description)


def print_json(obj: Any) -> None:
    """`--json` contract: one JSON object on the last line of stdout."""
    sys.stdout.write(json.dumps(obj, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()
