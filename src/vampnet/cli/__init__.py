"""The `vampnet` command: each command translates its flags into the shared options' configs and the pipeline's or
the modes' calls, then reports. No model logic lives here.

The commands are grouped by what they do (generate, models, training, serve, evaluate: one module each, registered
in the order `vampnet --help` lists them). A run imports only the module of the command it invokes, so that
`vampnet vamp` does not pay for the training, corpus and server code; `--help`, no command or an unknown one
imports them all. Every failure the user can cause ends with one line `error: ...` and exit status 1 (2 for bad
usage)."""
from __future__ import annotations

import importlib
import os
import sys

import typer

from ..errors import VampNetError

__all__ = ["COMMAND_MODULES", "app", "main", "register_commands", "run"]

# the order `vampnet --help` lists the groups in
COMMAND_GROUPS = ("generate", "models", "training", "serve", "evaluate")
# command name -> the module that defines it (tests/test_cli.py checks this against what the modules register)
COMMAND_MODULES = {
    **dict.fromkeys(("vamp", "loop", "continue", "inpaint", "stretch", "compress", "decompress"), "generate"),
    **dict.fromkeys(("encode", "decode", "convert", "info", "download"), "models"),
    **dict.fromkeys(("tokenize", "pack-tokens", "prepare-corpus", "train", "finetune"), "training"),
    **dict.fromkeys(("ui", "osc"), "serve"),
    "eval": "evaluate",
}


def register_commands(command: str | None = None):
    """The typer app with `command`'s module registered (every module when `command` is None or unknown)."""
    group = COMMAND_MODULES.get(command) if command is not None else None
    for name in (group,) if group else COMMAND_GROUPS:
        importlib.import_module(f"{__name__}.{name}")
    return importlib.import_module(f"{__name__}.common").app


def __getattr__(name: str):
    if name == "app":  # `from vampnet.cli import app`: the whole command set, as `vampnet --help` shows it
        return register_commands()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _invoked_command(argv: list[str]) -> str | None:
    """The command word of a command line (the first word not an option), or None."""
    words = [word for word in argv if not word.startswith("-")]
    return words[0] if words and "--help" not in argv[: argv.index(words[0])] else None


def main(argv=None) -> int:
    """Entry point: run the app, turning our errors into one line and a non-zero exit."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        app = register_commands(_invoked_command(argv))
        app(args=argv, standalone_mode=False)
    except VampNetError as e:
        typer.echo(f"error: {e}", err=True)
        return 1
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 1
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return 130
    except Exception as e:  # click usage errors and anything unexpected: one line, no traceback
        if hasattr(e, "show") and hasattr(e, "exit_code"):  # typer/click usage errors print their own message
            e.show()
            return e.exit_code
        if os.environ.get("VAMPNET_DEBUG"):
            raise
        typer.echo(f"error: unexpected {type(e).__name__}: {e} (set VAMPNET_DEBUG=1 for a traceback)", err=True)
        return 1
    return 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
