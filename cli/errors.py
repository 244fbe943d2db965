"""Turning user errors into one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import click

from xkd.errors import XKDError


class XKDGroup(click.Group):
    """A click group that reports `XKDError` from any subcommand as `Error: ...` with exit code 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except XKDError as e:
            click.echo(f"Error: {e}", err=True)
            ctx.exit(2)
