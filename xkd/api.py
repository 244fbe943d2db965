"""xkd from Python: `xkd.distill(...)` and `xkd.study(...)` take the CLI's options and give its results.

The option names are the config keys, i.e. the CLI's long options with `_` for `-` (`--student-layers 3` is
`student_layers=3`); repeatable options take lists (`transfer=["a.txt"]`), KEY=VALUE options take dicts
(`method_options={"gamma": 2}`, the CLI's -O; `student_options` -S; `augment_options` -A). Defaults, the config
file (`config=`), validation and errors are the CLI's own: both go through `distill_config`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xkd.config import CONFIG_FIELDS, DistillConfig, build_config, coerce_value, read_config_file, read_mapping
from xkd.errors import XKDError, closest
from xkd.options import parse_pairs

PAIR_OPTIONS = ("method_options", "student_options", "augment_options")  # KEY=VALUE options: -O, -S, -A
Log = Callable[[str], None]


def distill_config(
    config_file: str | os.PathLike | None,
    student_config: str | os.PathLike | None,
    options: Mapping[str, Any],
    source: str = "the command line",
) -> DistillConfig:
    """A run's config: defaults < config file < student config file < `options` (only those given: None and
    empty lists mean 'not given', as an option left off the command line)."""
    file_values = read_config_file(config_file) if config_file else {}
    values = given_options(options, source)
    if student_config:
        from_file = {str(k).replace("-", "_"): v for k, v in read_mapping(student_config, "student config").items()}
        values["student_options"] = {**from_file, **values.get("student_options", {})}
    return build_config(file_values, values)


def given_options(options: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The options actually given, checked against the config's keys and types."""
    values = {}
    for name, value in options.items():
        if value is None or (isinstance(value, (tuple, list, dict)) and not value):
            continue
        if name not in CONFIG_FIELDS:
            raise XKDError(f"unknown option '{name}'{closest(name, CONFIG_FIELDS)} in {source}")
        if name in PAIR_OPTIONS and not isinstance(value, Mapping):
            value = parse_pairs([value] if isinstance(value, str) else list(value))
        elif isinstance(value, tuple):
            value = list(value)
        values[name] = coerce_value(name, value, source)
    return values


def resume_config(run_dir: str | os.PathLike, changed: Iterable[str], progress: bool | None = None) -> DistillConfig:
    """The interrupted run's own config, set to resume; any other option would make it another run."""
    import json

    saved = Path(run_dir) / "config.json"
    if not saved.is_file():
        raise XKDError(f"{run_dir} has no config.json; pass the directory of an interrupted xkd distill run")
    extra = sorted(changed)
    if extra:
        names = ", ".join(f"--{k.replace('_', '-')}" for k in extra)
        raise XKDError(f"--resume continues the run with its own config; drop {names}")
    values = json.loads(saved.read_text())
    values.update(output_dir=str(run_dir), resume=True, **({} if progress is None else {"progress": progress}))
    return build_config({}, values)


@dataclass
class DistillResult:
    """What `xkd.distill` returns: the run's `summary.json` as a dict and its directory; the student loads on
    first use (a study of many runs need not hold every model)."""

    summary: dict[str, Any]
    run_dir: Path
    _student: Any = field(default=None, repr=False)

    @property
    def student(self):
        """The best student, loaded from `run_dir/student` (an `nn.Module` returning an `xkd.Trace`)."""
        if self._student is None:
            from xkd.students import load_student

            self._student = load_student(self.run_dir / "student")
        return self._student

    def predictor(self, **options: Any):
        """An `xkd.Predictor` on the student: labels and probabilities for new texts."""
        from xkd.predict import Predictor

        return Predictor(self.run_dir / "student", **options)

    @property
    def test(self) -> dict[str, dict[str, float]]:
        """The student's test metrics per test split (fractions, as in summary.json)."""
        return self.summary.get("test", {})


def distill(
    config: str | os.PathLike | None = None,
    *,
    student_config: str | os.PathLike | None = None,
    resume: str | os.PathLike | None = None,
    log: Log | None = print,
    verbose: bool = False,
    **options: Any,
) -> DistillResult:
    """Run `xkd distill` with these options; returns the summary and (lazily) the loaded student.

    Example:
        result = xkd.distill(task="mr", student="cnn", method="kd", epochs=3, student_options={"vectors": G})
        result.summary["test"], result.predictor()(["dull ."])

    `resume=RUN_DIR` continues an interrupted run (only `progress` may be given with it). `log=None` and
    `progress=False` are silent; other libraries' chatter is silenced as the CLI silences it, unless `verbose`.
    """
    from xkd.distillation import run_distill
    from xkd.log import quiet_libraries, silent

    quiet_libraries(verbose)

    if resume is not None:
        if config or student_config:
            raise XKDError("resume continues the run with its own config; drop config/student_config")
        changed = [k for k in given_options(options, "distill()") if k != "progress"]
        cfg = resume_config(resume, changed, options.get("progress"))
    else:
        cfg = distill_config(config, student_config, options, "distill()")
    summary = run_distill(cfg, log=log or silent)
    return DistillResult(summary, Path(summary["student"]["dir"]).parent)


@dataclass
class StudyResult:
    """What `xkd.study` returns: the study directory, one row per run (group, seed, metrics in percent, costs),
    the per-group statistics (mean, sd, 95% interval), the counts of this invocation and the report's files."""

    directory: Path
    runs: list[dict[str, Any]]
    groups: list[dict[str, Any]]
    outcome: dict[str, Any]
    report: list[Path]


def study(
    config: str | os.PathLike,
    *,
    output_dir: str | os.PathLike | None = None,
    only: Mapping[str, str | Iterable[str]] | None = None,
    report: bool = True,
    progress: bool = False,
    log: Log | None = print,
    verbose: bool = False,
) -> StudyResult:
    """Run `xkd study CONFIG` (resumable: finished runs are skipped); `only={"student": ["cnn"]}` is --only.

    Failed runs do not raise: they are counted in `outcome["failed"]` with their message, as the CLI lists them.
    """
    from xkd.log import quiet_libraries, silent
    from xkd.studies import load_plan, run_study
    from xkd.studies.plan import only_filters

    quiet_libraries(verbose)
    from xkd.studies.results import group_rows, load_study, run_rows

    plan = load_plan(str(config), None if output_dir is None else str(output_dir))
    filters = only_filters(only)
    plan.select(filters)  # unknown keys and names fail here, before anything runs
    outcome = run_study(plan, log=log or silent, progress=progress, only=filters)
    files: list[Path] = []
    if report:
        from xkd.studies.report import report_study

        files = report_study(plan.directory)
    rows = run_rows(load_study(plan.directory))
    return StudyResult(plan.directory, rows, group_rows(rows, plan.baseline), outcome, files)
