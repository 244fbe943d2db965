"""`xkd cache`: the teacher-output cache built ahead of runs, listed, cleared."""

from __future__ import annotations

import json
from pathlib import Path

import click

from xkd.errors import Interrupted

from .distill_options import DISTILL_GROUPS, DISTILL_OPTIONS, config_from
from .errors import XKDGroup
from .options import apply_grouped, echo_err


@click.group(cls=XKDGroup)
def cache() -> None:
    """The teacher-output cache: one teacher pass per split, reused by every run, seed and method.

    `xkd distill` builds and reuses it by itself (--teacher-cache auto); `build` pays for it ahead of a study.
    Caches live in $XKD_CACHE_DIR/traces (default ~/.cache/xkd/traces).

    \b
    Examples:
      xkd cache build --teacher teachers/mr --task mr
      xkd cache build --config recipe.toml
      xkd cache info
      xkd cache clear --task mr
    """


@cache.command("build")
@apply_grouped(DISTILL_OPTIONS, DISTILL_GROUPS)
def cache_build(config_file: str | None, student_config: str | None, **options) -> None:
    """Build (or check) the teacher cache that `xkd distill` with the same options would use.

    \b
    Examples:
      xkd cache build --teacher teachers/mr --task mr --max-length 64
      xkd cache build --config recipe.toml
    """
    from xkd.log import silent
    from xkd.processes import process_state
    from xkd.teacher_outputs import build_teacher_caches

    cfg = config_from(config_file, student_config, options)
    main = process_state().is_main_process  # under `accelerate launch`, every process labels and one speaks
    try:
        built = build_teacher_caches(cfg, log=echo_err if main else silent)
    except Interrupted as e:
        raise e.continue_with("the same xkd cache build command (labelling continues where it stopped)") from None
    if main:  # an ensemble (several --teacher): a list, one cache per member
        shown = [{"dir": str(cache.directory), **cache.meta} for cache in built]
        click.echo(json.dumps(shown[0] if len(shown) == 1 else shown, indent=2))


@cache.command("info")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def cache_info(as_json: bool) -> None:
    """List the teacher caches: teacher, task, splits, size, when built.

    \b
    Example:
      xkd cache info --json
    """
    from xkd.teacher_cache import list_caches, traces_root

    caches = list_caches()
    if as_json:
        click.echo(json.dumps(caches, indent=2))
        return
    if not caches:
        click.echo(f"no teacher caches in {traces_root()}")
        return
    for c in caches:
        if "damaged" in c:
            click.echo(f"{c['dir']}\n  damaged ({c['damaged']}): rebuilt when next used, or 'xkd cache clear' it")
            continue
        splits = ", ".join(f"{k} {v}" for k, v in c["splits"].items())
        click.echo(f"{c['dir']}\n  teacher {c['teacher']}  task {c['task']}  max length {c['max_length']}")
        click.echo(f"  {splits}  |  {c['size_mib']} MiB  |  built {c['created']} in {c['build_seconds']} s")


@cache.command("clear")
@click.argument("directories", nargs=-1, type=click.Path(file_okay=False))
@click.option("--task", help="Only the caches of this task.")
@click.option("--all", "everything", is_flag=True, help="Every cache.")
def cache_clear(directories: tuple[str, ...], task: str | None, everything: bool) -> None:
    """Delete teacher caches: the given directories, a task's, or --all. They are rebuilt when next needed.

    \b
    Examples:
      xkd cache clear --task mr
      xkd cache clear --all
    """
    from xkd.errors import XKDError
    from xkd.teacher_cache import clear_caches, list_caches, traces_root

    if not (directories or task or everything):
        raise XKDError("say which caches to clear: directories, --task NAME, or --all (see 'xkd cache info')")
    known = {c["dir"]: c for c in list_caches()}
    chosen = [Path(d) for d in directories]
    for d in chosen:
        if str(d) not in known and str(d.resolve()) not in known:
            raise XKDError(f"{d} is not a teacher cache; 'xkd cache info' lists them")
    chosen += [Path(d) for d, c in known.items() if everything or (task and c.get("task") == task)]
    removed = clear_caches(dict.fromkeys(chosen))
    click.echo(f"removed {len(removed)} teacher cache(s) from {traces_root()}")
