"""The `vampnet` command: each command translates its flags into the shared options' configs and the pipeline's or
the modes' calls, then reports. No model logic lives here.

The commands are grouped by what they do (generate, models, training, serve, evaluate: one module each, imported
below in the order `vampnet --help` lists them). Every failure the user can cause ends with one line
`error: ...` and exit status 1 (2 for bad usage)."""
from __future__ import annotations

import os
import sys

import typer

from ..errors import VampNetError
# each registers its commands on `app`, in this order (the order --help lists them)
from . import generate, models, training, serve, evaluate  # noqa: F401, I001
from .common import app

__all__ = ["app", "main", "run"]


def main(argv=None) -> int:
    """Entry point: run the app, turning our errors into one line and a non-zero exit."""
    try:
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
