"""Study files: parse, check and expand a grid into planned runs (`load_plan`); running them is `runner`'s.

The grid is teachers x students x methods x hyperparameters x seeds. Every run is an ordinary `xkd distill` run
in `STUDY/runs/<id>/`, so anything that reads a run reads a study's runs. Shared across the grid:

- one teacher fine-tune (and its pseudo heads) per teacher and task, prepared before the first run with the
  study's `teacher_seed`; the runs then name the prepared directory, so no run fine-tunes again;
- one teacher cache per teacher and task (its key ignores the student and seed, so the first run builds it);
- one TAKD assistant chain per teacher, seed and chain: a method with `assistant_layers` trains its assistants
  as runs of their own in `<runs dir>/assistants/`, and every student of that seed learns from the same assistant.
  The cost columns charge each TAKD run its whole chain, so the totals answer "what did this student cost".

Several study files may share one `runs_dir`: a run with the same name and config is then run once and read by
each (a changed config under the same name is refused, as below). `xkd study FILE --only student=cnn,bilstm`
runs part of the grid now and the rest later.

Resuming is the default: a finished run (summary.json) is skipped, an interrupted one continues from its newest
checkpoint, a failed one starts again. A finished run whose recorded config differs from what the study file
now asks for is an error, never silently reused.

The file (TOML, YAML or JSON)::

    name = "mr-methods"            # optional (default: the file name)
    seeds = [42, 1, 2]
    teacher_seed = 42              # optional (default: the first seed): the shared fine-tune and heads
    baseline = "none"              # optional (default: "none" when there is such a method): paired differences
    runs_dir = "studies/mr-runs"   # optional (default: <study dir>/runs)
    [base]                         # `xkd distill` config keys shared by every run
    task = "mr"
    [students.cnn]                 # one table per student setup, keys as in [base]
    student = "cnn"
    [methods.takd]                 # one table per method setup
    method = "kd"
    assistant_layers = [3]
    [methods.aguilar]
    method = "aguilar"
    students = ["bert2"]           # optional: only for these student sections
    [grid]                         # optional: hyperparameters, each a list; the cross product
    temperature = [1.0, 2.0]

`[teachers.NAME]` tables compare teachers the same way (default: one teacher, from [base]): a model, an ensemble
(`teacher = ["a", "b"]`: each member prepared once, as its own teacher) or saved outputs (`teacher_outputs`).
String values may name environment variables as `${NAME}`; an unset one is an error.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from xkd.config import CONFIG_FIELDS, DistillConfig, coerce_value, read_mapping
from xkd.distillation import check_config
from xkd.errors import XKDError, closest
from xkd.teachers.resolve import assistant_config
from xkd.transfer.sets import fit_augment

SECTIONS = ("teachers", "students", "methods")
TOP_KEYS = ("name", "seeds", "teacher_seed", "baseline", "base", "grid", "output_dir", "runs_dir", *SECTIONS)
# Keys a study owns: each run's directory, seed and resumption are the study's to decide.
RESERVED = ("output_dir", "overwrite", "resume", "seed")
# Keys that do not change what a run computes (compared configs ignore them).
COSMETIC = ("output_dir", "overwrite", "resume", "progress", "latency")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass
class PlannedRun:
    """One run of the grid: its directory name, its place in the grid, its config, and its assistants."""

    id: str
    group: dict[str, str]  # teacher, student, method, hyperparameters: everything but the seed
    seed: int
    config: DistillConfig
    assistants: list[PlannedRun] = field(default_factory=list)  # the assistant runs it learns from, in order
    kind: str = "run"  # "run", or "assistant" for a shared TAKD link


@dataclass
class StudyPlan:
    name: str
    directory: Path
    seeds: list[int]
    teacher_seed: int
    teachers: dict[str, dict[str, Any]]
    runs: list[PlannedRun]
    assistants: list[PlannedRun]
    source: str

    runs_dir: Path | None = None  # where runs live (default: directory/runs); studies may share one
    baseline: str | None = None  # the method section differences are paired against (default: "none")

    def run_dir(self, run: PlannedRun) -> Path:
        root = self.runs_dir or self.directory / "runs"
        return root / "assistants" / run.id if run.kind == "assistant" else root / run.id

    def select(self, filters: dict[str, set[str]]) -> list[PlannedRun]:
        """The runs whose group matches every filter (key -> allowed names), after the assistants they need."""
        runs = self.runs
        for key, allowed in filters.items():
            if key not in ("teacher", "student", "method", "hyperparameters", "seed"):
                raise XKDError(f"--only {key}=...: filter by teacher, student, method, hyperparameters or seed")
            known = {str(r.seed) if key == "seed" else r.group[key] for r in self.runs}
            known.discard("")
            unknown = allowed - known
            if unknown:
                raise XKDError(
                    f"--only {key}={','.join(sorted(unknown))}: no such {key} in the study; it has "
                    f"{', '.join(sorted(known))}"
                )
            runs = [r for r in runs if (str(r.seed) if key == "seed" else r.group[key]) in allowed]
        needed = {a.id for r in runs for a in r.assistants}
        return [*(a for a in self.assistants if a.id in needed), *runs]

    def all_runs(self) -> list[PlannedRun]:
        """Assistants first: the TAKD runs read their saved models."""
        return [*self.assistants, *self.runs]


def _expand(value: Any, where: str) -> Any:
    """`${NAME}` in strings -> the environment variable's value; unset variables are an error."""
    if isinstance(value, str):

        def substitute(match: re.Match) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise XKDError(f"{where} uses ${{{name}}}, which is not set; export {name} or write the value")
            return os.environ[name]

        return _ENV.sub(substitute, value)
    if isinstance(value, list):
        return [_expand(v, where) for v in value]
    if isinstance(value, dict):
        return {k: _expand(v, where) for k, v in value.items()}
    return value


def _config_values(table: Any, where: str, path: Path) -> dict[str, Any]:
    """A table of `xkd distill` config keys, checked key by key."""
    if not isinstance(table, dict):
        raise XKDError(f"{where} in {path} must be a table of config keys, got {table!r}")
    values = {}
    for key, value in table.items():
        name = str(key).replace("-", "_")
        if name in RESERVED:
            raise XKDError(
                f"{where} in {path} sets '{key}', which the study decides per run; use the top-level 'seeds' list "
                "for seeds and --output-dir for the study directory"
            )
        if name not in CONFIG_FIELDS:
            raise XKDError(f"unknown config key '{key}' in {where} of {path}{closest(name, CONFIG_FIELDS)}")
        values[name] = coerce_value(name, _expand(value, f"{where}.{key} in {path}"))
    return values


def _named_tables(raw: dict[str, Any], section: str, path: Path) -> dict[str, dict[str, Any]]:
    tables = raw.get(section)
    if tables is None:
        return {}
    if not isinstance(tables, dict) or not tables:
        raise XKDError(f"[{section}] in {path} must hold named tables, e.g. [{section}.NAME]")
    return {str(name): _config_values(table, f"[{section}.{name}]", path) for name, table in tables.items()}


def _student_restrictions(raw: dict[str, Any], path: Path) -> dict[str, list[str]]:
    """`students = [...]` in a method table limits that method to those student sections (and is removed)."""
    restrictions = {}
    for name, table in (raw.get("methods") or {}).items():
        if isinstance(table, dict) and "students" in table:
            names = table.pop("students")
            if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
                raise XKDError(f"[methods.{name}] students in {path} must be a list of student section names")
            restrictions[str(name)] = names
    return restrictions


def _grid(raw: dict[str, Any], path: Path) -> list[dict[str, Any]]:
    """The hyperparameter combinations; keys with one value are constants, not grid axes."""
    grid = raw.get("grid") or {}
    if not isinstance(grid, dict):
        raise XKDError(f"[grid] in {path} must map config keys to lists of values")
    axes = {}
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise XKDError(f"[grid] {key} in {path} must be a non-empty list of values, e.g. {key} = [1.0, 2.0]")
        checked = [_config_values({key: v}, "[grid]", path) for v in values]
        axes[str(key).replace("-", "_")] = [c[str(key).replace("-", "_")] for c in checked]
    names = list(axes)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(axes[n] for n in names))]


def _label(values: dict[str, Any], varying: set[str]) -> str:
    return ",".join(f"{k}={v}" for k, v in values.items() if k in varying)


def _slug(*parts: str) -> str:
    text = "--".join(p for p in parts if p)
    return re.sub(r"[^A-Za-z0-9_.=,+-]", "_", text)


def load_plan(config_path: str | Path, output_dir: str | Path | None = None) -> StudyPlan:
    """Read and check a study file and expand its grid; checks every run's config before anything runs."""
    path = Path(config_path)
    raw = read_mapping(path, "study file")
    for key in raw:
        if key not in TOP_KEYS:
            raise XKDError(
                f"unknown study key '{key}' in {path}{closest(str(key), TOP_KEYS)}; the keys are {', '.join(TOP_KEYS)}"
            )
    seeds, teacher_seed = _seeds(raw, path)
    name = str(raw.get("name") or path.stem)
    directory = Path(output_dir or raw.get("output_dir") or Path("studies") / name)
    runs_dir = Path(_expand(raw["runs_dir"], f"runs_dir in {path}")) if raw.get("runs_dir") else None
    base = _config_values(raw.get("base") or {}, "[base]", path)
    teachers = _named_tables(raw, "teachers", path) or {"": {}}
    students = _named_tables(raw, "students", path) or {"": {}}
    only_for = _student_restrictions(raw, path)  # (takes each method's `students` key out first)
    methods = _named_tables(raw, "methods", path) or {"": {}}
    _check_names(raw, path, students, methods, only_for)
    baseline = raw.get("baseline", "none" if "none" in methods else None)
    grid = _grid(raw, path)
    varying = {k for k in (grid[0] if grid else {}) if len({json.dumps(g[k]) for g in grid}) > 1}

    runs: list[PlannedRun] = []
    assistants: dict[tuple, PlannedRun] = {}
    for (t_name, t_values), (s_name, s_values), (m_name, m_values), hp, seed in itertools.product(
        teachers.items(), students.items(), methods.items(), grid or [{}], seeds
    ):
        if m_name in only_for and s_name not in only_for[m_name]:
            continue  # the method is meant for other students (e.g. attention KL for transformers only)
        where = " / ".join(n for n in (t_name, s_name, m_name) if n) or "base"
        cfg = _run_config({**base, **t_values, **s_values, **m_values, **hp}, seed, f"study {path}, run {where}")
        hp_label = _label(hp, varying)
        group = {"teacher": t_name, "student": s_name, "method": m_name, "hyperparameters": hp_label}
        run = PlannedRun(_slug(t_name, s_name, m_name, hp_label, f"s{seed}"), group, seed, cfg)
        if cfg.assistant_layers:
            # The chain is a function of the teacher, the shared settings and the seed, not of the student.
            link_base = fit_augment(DistillConfig(**{**base, **t_values, **hp}, seed=seed))[0]
            run.assistants = _assistant_chain(assistants, run, link_base, t_name, hp_label)
            run.config = replace(cfg, assistant_layers=[])
        runs.append(run)
    ids = [r.id for r in runs]
    if len(set(ids)) != len(ids):
        raise XKDError(f"two runs of {path} get the same name; give the sections distinct names")
    return StudyPlan(
        name, directory, seeds, teacher_seed, teachers, runs, list(assistants.values()),
        str(path), runs_dir, baseline,
    )  # fmt: skip


def _seeds(raw: dict[str, Any], path: Path) -> tuple[list[int], int]:
    """The study's seeds (distinct integers) and the seed of the shared teacher fine-tune (default: the first)."""
    seeds = raw.get("seeds")
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise XKDError(f"'seeds' in {path} must be a non-empty list of integers, e.g. seeds = [42, 1, 2]")
    if len(set(seeds)) != len(seeds):
        raise XKDError(f"'seeds' in {path} repeats a seed: {seeds}")
    teacher_seed = raw.get("teacher_seed", seeds[0])
    if not isinstance(teacher_seed, int):
        raise XKDError(f"'teacher_seed' in {path} must be an integer, got {teacher_seed!r}")
    return seeds, teacher_seed


def _check_names(
    raw: dict[str, Any], path: Path, students: dict[str, Any], methods: dict[str, Any], only_for: dict[str, list]
) -> None:
    """The baseline and each method's `students` name sections that exist."""
    baseline = raw.get("baseline", "none" if "none" in methods else None)
    if baseline is not None and baseline not in methods:
        raise XKDError(
            f"baseline '{baseline}' in {path} is not a [methods.NAME] section{closest(str(baseline), methods)}"
        )
    for method, names in only_for.items():
        unknown = [n for n in names if n not in students]
        if unknown:
            raise XKDError(
                f"[methods.{method}] students in {path} names '{unknown[0]}', which is not a [students.NAME] "
                f"section{closest(unknown[0], students)}"
            )


def _run_config(values: dict[str, Any], seed: int, where: str) -> DistillConfig:
    """One run's checked config; errors name the run (its study file and sections)."""
    try:
        cfg = fit_augment(DistillConfig(**values, seed=seed, output_dir=None))[0]
        check_config(cfg)
    except XKDError as e:
        raise XKDError(f"{where}: {e}") from None
    return cfg


def _assistant_chain(
    assistants: dict[tuple, PlannedRun], run: PlannedRun, link_base: DistillConfig, t_name: str, hp_label: str
) -> list[PlannedRun]:
    """The TAKD assistants `run` learns through, each planned once per teacher, hyperparameters, seed and chain
    prefix (so students of one seed share them); new links are added to `assistants`."""
    chain: list[int] = []
    links: list[PlannedRun] = []
    for k in run.config.assistant_layers:
        chain.append(k)
        key = (t_name, hp_label, run.seed, tuple(chain))
        if key not in assistants:
            link_id = _slug(t_name, "ta" + "-ta".join(map(str, chain)), hp_label, f"s{run.seed}")
            group = {**run.group, "student": f"ta{k}", "method": "kd"}
            link_cfg = assistant_config(link_base, "", k, Path())
            assistants[key] = PlannedRun(link_id, group, run.seed, link_cfg, list(links), kind="assistant")
        links.append(assistants[key])
    return links


def comparable(cfg: DistillConfig | dict) -> dict[str, Any]:
    values = asdict(cfg) if isinstance(cfg, DistillConfig) else dict(cfg)
    return {k: v for k, v in values.items() if k not in COSMETIC}


def only_filters(only: Mapping[str, str | Iterable[str]] | Iterable[str] | None) -> dict[str, set[str]]:
    """Part of a grid (`--only`, `xkd.study(only=...)`): key -> allowed names, from `{"student": ["cnn"]}` or from
    `KEY=NAME[,NAME...]` items; a name string may list several, comma-separated, in either form."""
    if only is None:
        return {}
    if not isinstance(only, Mapping):
        pairs = []
        for item in only:
            key, sep, names = item.partition("=")
            if not sep or not names:
                raise XKDError(f"--only {item}: write KEY=NAME[,NAME...], e.g. --only student=cnn,bilstm")
            pairs.append((key.strip(), names))
    else:
        pairs = list(only.items())
    filters: dict[str, set[str]] = {}
    for key, names in pairs:
        listed = names.split(",") if isinstance(names, str) else [str(n) for n in names]
        filters.setdefault(key, set()).update(n.strip() for n in listed if n.strip())
    return filters
