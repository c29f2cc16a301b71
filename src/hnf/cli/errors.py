"""How every ``hnf`` command reports a failure: ``error: <message>`` on stderr and an exit status.

:func:`reports_errors` wraps a command so that an :class:`~hnf.errors.HnfError` raised anywhere
below it (bad input, bad configuration) ends the command with its message and exit status 2,
not a traceback. Other exceptions are bugs and keep their traceback.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NoReturn, ParamSpec, TypeVar

import typer

from hnf.errors import HnfError

P = ParamSpec("P")
R = TypeVar("R")

USAGE_EXIT = 2  # an unusable input, option or configuration (the status click gives usage errors)


def fail(message: str, code: int = USAGE_EXIT) -> NoReturn:
    """Print ``error: <message>`` on stderr (``error:`` in red on a terminal) and exit with ``code``."""
    typer.secho("error:", fg="red", err=True, nl=False)
    typer.echo(f" {message}", err=True)
    raise typer.Exit(code)


def reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """``command`` with every :class:`HnfError` turned into :func:`fail` (exit status 2).

    Put it under the ``@app.command(...)`` decorator (or on the function that is registered):
    typer reads the options from the wrapped signature, which :func:`functools.wraps` keeps.
    """

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except HnfError as err:
            fail(str(err))

    return run
