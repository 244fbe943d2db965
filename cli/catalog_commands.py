"""What xkd knows by name: `xkd tasks`, `xkd students`, `xkd methods` (built-ins and plug-ins)."""

from __future__ import annotations

import click

from .options import echo_options


@click.command("tasks")
def tasks_command() -> None:
    """List the registered tasks: text columns, label count, metrics.

    \b
    Example:
      xkd tasks
    """
    from xkd.tasks import TASKS

    for name in TASKS:
        t = TASKS.get(name)
        kind = "pair" if t.is_pair else "single"
        click.echo(f"{name:6} {kind:6} labels={t.output_size} metrics={','.join(t.metrics):18} {t.description}")


@click.command("students")
def students_command() -> None:
    """List the built-in students with their options, and plug-ins registered under `xkd.students`.

    \b
    Example:
      xkd students
    """
    from xkd.students import STUDENTS
    from xkd.students.plugins import entry_point_students

    for name in STUDENTS:
        spec = STUDENTS.get(name)
        click.echo(f"{name}: {spec.summary}")
        click.echo("    options: " + (", ".join(f"{k}={v!r}" for k, v in spec.options.items()) or "none"))
    for name, entry in sorted(entry_point_students().items()):
        click.echo(f"{name}: plug-in {entry.value}")
    click.echo("any other: --student package.module:Class (see the plug-in protocol in the README)")


@click.command("methods")
def methods_command() -> None:
    """List the registered methods: their loss terms (weights under the defaults), options and the students and
    teachers they apply to.

    \b
    Example:
      xkd methods
    """
    from xkd.errors import XKDError
    from xkd.methods import METHODS
    from xkd.methods.base import load_entry_point_methods

    load_entry_point_methods()
    for name in METHODS:
        m = METHODS.get(name)
        click.echo(f"{name}: {m.summary}")
        try:
            terms = ", ".join(f"{term} x {weight:g}" for term, weight in m.default_terms())
        except XKDError:  # a plugged-in method that cannot be built on the example pairing
            terms = "depend on the student and teacher"
        click.echo(f"    terms: {terms}")
        specs = m.option_specs()
        click.echo("    options: " + ("(name=default, allowed values, what it does)" if specs else "none"))
        echo_options(specs)
        click.echo(f"    applies to: {m.applies_to}")
        reads = ", ".join([*m.reads(), *(["attention maps (online)"] if m.needs_attentions else [])])
        click.echo(
            f"    reads of the teacher (default options): {reads or 'nothing'}; "
            f"multi-label tasks: {'yes' if m.multi_label else 'no'}"
        )
