"""Turning errors into one line on stderr and an exit code, never a bare traceback.

- `XKDError` (bad input, found by xkd's own checks): `Error: ...`, exit code 2.
- `OSError` from the operating system (permission, not a directory, exists, no space, read-only, missing file),
  wherever a file is opened or written: one line naming the path, what is wrong and what to do, exit code 2.
- `Interrupted` (Ctrl-C or SIGTERM during training, labelling or a study): what was kept and the exact command that
  continues, exit code 130 (SIGINT) or 143 (SIGTERM).
- Anything else is a bug: its traceback stays visible, followed by a one-line summary, exit code 1.
"""

from __future__ import annotations

import errno
import sys
import traceback

import click
import cloup

from xkd.errors import Interrupted, XKDError

ADVICE = {
    errno.EACCES: "check its permissions or choose another path",
    errno.EPERM: "check its permissions or choose another path",
    errno.ENOTDIR: "a part of that path is a file, not a directory; choose another path",
    errno.EEXIST: "it exists and is not a directory; remove it or choose another path",
    errno.EISDIR: "it is a directory where a file was expected; choose a file path",
    errno.ENOSPC: "the disk is full; free some space and run the command again (finished files were kept)",
    errno.EDQUOT: "the disk quota is used up; free some space and run the command again",
    errno.EROFS: "the file system is read-only; choose a writable path",
    errno.ENOENT: "it does not exist; check the path",
    errno.ENAMETOOLONG: "the name is too long; choose a shorter path",
}


def describe_os_error(error: OSError) -> str:
    """`<path>: <what is wrong>; <what to do>` in one line."""
    where = " -> ".join(str(f) for f in (error.filename, error.filename2) if f) or "a file"
    what = (error.strerror or str(error) or type(error).__name__).strip().splitlines()[0]
    advice = ADVICE.get(error.errno, "check the path and the disk, then run the command again")
    return f"{where}: {what}; {advice}"


class XKDGroup(cloup.Group):
    """A click group that reports expected failures of any subcommand in one line (see the module docstring)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except XKDError as e:
            click.echo(f"Error: {e}", err=True)
            ctx.exit(2)
        except Interrupted as e:
            click.echo(f"Interrupted: {e}", err=True)
            ctx.exit(e.exit_code)
        except OSError as e:
            click.echo(f"Error: {describe_os_error(e)}", err=True)
            ctx.exit(2)
        except (click.exceptions.Exit, click.exceptions.ClickException, click.exceptions.Abort, SystemExit):
            raise
        except KeyboardInterrupt:  # outside the places that stop cleanly (e.g. while loading): nothing to keep
            click.echo("Interrupted: stopped before any work was saved", err=True)
            ctx.exit(130)
        except Exception as e:
            traceback.print_exc(file=sys.stderr)
            first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
            click.echo(
                f"xkd: internal error ({type(e).__name__}{': ' + first if first else ''}); this is a bug: please "
                "report it with the traceback above",
                err=True,
            )
            ctx.exit(1)
