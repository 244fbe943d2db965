"""`xkd study CONFIG`: a grid of distillation runs from one file, sharing what can be shared, resumable.

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
import time
import traceback
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from xkd.config import CONFIG_FIELDS, DistillConfig, coerce_value, read_mapping
from xkd.data import load_splits
from xkd.distillation import (
    assistant_config,
    build_teacher_caches,
    check_config,
    resolve_task,
    resolve_teachers,
    run_distill,
)
from xkd.errors import Interrupted, XKDError, closest
from xkd.files import file_lock, write_text_atomically
from xkd.log import Log, silent
from xkd.methods import get_method
from xkd.processes import process_state
from xkd.pseudo_heads import WEIGHTS_FILE, PseudoHeads
from xkd.teachers import heads_dir
from xkd.teachers.ensemble import teacher_list
from xkd.teachers.outside import outside_info
from xkd.training import Checkpoints

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
            link_base = DistillConfig(**{**base, **t_values, **hp}, seed=seed)
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
        cfg = DistillConfig(**values, seed=seed, output_dir=None)
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


def _comparable(cfg: DistillConfig | dict) -> dict[str, Any]:
    values = asdict(cfg) if isinstance(cfg, DistillConfig) else dict(cfg)
    return {k: v for k, v in values.items() if k not in COSMETIC}


def run_state(directory: Path) -> str:
    """finished, interrupted (has checkpoints), or pending."""
    if (directory / "summary.json").is_file():
        return "finished"
    if Checkpoints.exist(directory):
        return "interrupted"
    return "pending"


def prepare_teachers(plan: StudyPlan, log: Log, progress: bool = True) -> dict[str, dict[str, Any]]:
    """Fine-tune (when needed) and train pseudo heads once per teacher, each member of an ensemble as its own
    teacher; point every run at the result. Runs distilled from saved outputs (`teacher_outputs`) need none."""
    prepared: dict[str, dict[str, Any]] = {}
    for name in plan.teachers:
        members = [r for r in plan.runs if r.group["teacher"] == name and not r.config.teacher_outputs]
        if not members:
            outputs = next(r.config.teacher_outputs for r in plan.runs if r.group["teacher"] == name)
            prepared[name] = {**outside_info(outputs), "seconds": 0.0}
            continue
        first = replace(members[0].config, seed=plan.teacher_seed, progress=progress)
        start = time.perf_counter()
        task, raw = load_splits(resolve_task(first), first.data_dir, first.max_examples, first.max_train_examples)
        needs_heads = any(get_method(r.config.method).needs_teacher_heads for r in members)
        # load_plan cleared the runs' assistant_layers (their chains are runs of their own): no chain is trained here
        teacher, info = resolve_teachers(first, task, raw, needs_heads, plan.directory, log)
        del teacher
        prepared[name] = {**info, "seconds": round(time.perf_counter() - start, 2)}
        paths = [member["path"] for member in info.get("members", [info])]
        for run in [*members, *(a for a in plan.assistants if a.group["teacher"] == name)]:
            run.config = replace(run.config, teacher=paths[0] if len(paths) == 1 else paths, finetune_teacher="never")
    # Assistant chains: each link's teacher is the previous link's saved student.
    for run in plan.all_runs():
        if run.assistants:
            last = plan.run_dir(run.assistants[-1]) / "student"
            run.config = replace(run.config, teacher=str(last), finetune_teacher="never")
    return prepared


# What a transfer set's teacher cache depends on: runs equal in these share one.
TRANSFER_KEYS = (
    *("teacher", "task", "data_dir", "text_columns", "label_column", "max_length", "max_examples"),
    "max_train_examples",  # the transfer set drops texts of the training split: another train subset, another set
    *("multi_label", "label_separator"),
    *("transfer", "augment", "augment_factor", "augment_options", "augment_mlm", "transfer_dtype"),
)


def prepare_transfer_sets(runs: list[PlannedRun], log: Log, progress: bool = True) -> None:
    """Label each transfer set the runs share once, with every teacher output any of its runs reads (so a kd run
    does not store logits only and a later Universal-KD run label the whole set again)."""
    groups: dict[str, list[PlannedRun]] = {}
    for run in runs:
        cfg = run.config
        if (cfg.transfer or cfg.augment != "none") and not cfg.teacher_outputs:  # saved outputs are read as they are
            key = json.dumps({k: getattr(cfg, k) for k in TRANSFER_KEYS}, sort_keys=True, default=str)
            groups.setdefault(key, []).append(run)
    for members in groups.values():
        methods = [get_method(r.config.method) for r in members]
        names = sorted({m.name for m in methods if m.needs_teacher and not m.needs_attentions})
        if names:
            log(f"transfer set for {len(members)} run(s): labelled once for {', '.join(names)}")
            build_teacher_caches(replace(members[0].config, method="+".join(names), progress=progress), log)


def check_unchanged(plan: StudyPlan) -> None:
    """A finished run must have been run with the config the study asks for now, and, when its method uses the
    teacher's pseudo heads, with the heads the teacher has now (they are retrained, e.g. by a newer xkd)."""
    changed = []
    fingerprints: dict[Path, str | None] = {}  # heads directory -> SHA-256, hashed once per study
    for run in plan.all_runs():
        directory = plan.run_dir(run)
        saved, state = directory / "config.json", run_state(directory)
        if state == "pending" or not saved.is_file():
            continue
        # A key added to the config after the run was recorded counts at its default value.
        old = {**_comparable(DistillConfig()), **_comparable(json.loads(saved.read_text()))}
        new = _comparable(run.config)
        diff = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in new if old.get(k) != new.get(k)]
        if not diff and state == "finished" and _heads_changed(run, directory, fingerprints):
            diff = ["the teacher's pseudo heads were retrained since"]
        if diff:
            changed.append(f"{run.id} ({'; '.join(diff[:2])})")
    if changed:
        raise XKDError(
            f"{len(changed)} run(s) in {plan.directory} were run with another config than the study file asks for "
            f"now: {changed[0]}{' and more' if len(changed) > 1 else ''}; use another --output-dir, or delete "
            "those run directories to redo them"
        )


def _heads_changed(run: PlannedRun, directory: Path, fingerprints: dict[Path, str | None]) -> bool:
    """Whether a finished run that used the teacher's pseudo heads used other heads than the stored ones: by the
    fingerprint it recorded, or, for runs from before fingerprints were recorded, by the heads being newer."""
    if not get_method(run.config.method).needs_teacher_heads:
        return False
    summary_file = directory / "summary.json"
    teacher = json.loads(summary_file.read_text()).get("teacher", {})
    recorded = teacher.get("members", [teacher])  # an ensemble records each member's heads
    for path, member in zip(teacher_list(run.config.teacher), recorded, strict=False):
        stored = heads_dir(path)
        if "heads_sha256" in member:
            if stored not in fingerprints:
                fingerprints[stored] = PseudoHeads.fingerprint(stored)
            changed = member["heads_sha256"] != fingerprints[stored]
        else:
            weights = stored / WEIGHTS_FILE
            changed = weights.is_file() and weights.stat().st_mtime > summary_file.stat().st_mtime
        if changed:
            return True
    return False


def _estimate(timed: list[tuple[dict[str, str], float]], run: PlannedRun) -> float | None:
    """Seconds a run will take: the mean of finished runs of its group, else of its student, else unknown (a
    mean over other students would mislead: a BERT run costs several CNN runs)."""
    for keys in (("student", "method", "hyperparameters"), ("student",)):
        similar = [seconds for group, seconds in timed if all(group[k] == run.group[k] for k in keys)]
        if similar:
            return sum(similar) / len(similar)
    return None


def write_plan(plan: StudyPlan, prepared: dict[str, Any]) -> None:
    def describe(run: PlannedRun) -> dict[str, Any]:
        return {
            "id": run.id,
            "kind": run.kind,
            "dir": str(plan.run_dir(run)),
            "group": run.group,
            "seed": run.seed,
            "assistants": [a.id for a in run.assistants],
        }

    record = {
        "name": plan.name,
        "source": plan.source,
        "seeds": plan.seeds,
        "teacher_seed": plan.teacher_seed,
        "baseline": plan.baseline,
        "teachers": prepared,
        "runs": [describe(r) for r in plan.runs],
        "assistants": [describe(r) for r in plan.assistants],
    }
    write_text_atomically(plan.directory / "study.json", json.dumps(record, indent=2) + "\n")


def run_study(
    plan: StudyPlan, log: Log = print, progress: bool = True, only: dict[str, set[str]] | None = None
) -> dict[str, Any]:
    """Run every unfinished run of the plan in order (assistants first); returns counts and the failures.

    `only` restricts this invocation to part of the grid (e.g. {"student": {"cnn"}}); study.json and the report
    still describe the whole plan, with the other runs counted as unfinished.

    A failing run is recorded in its directory (`error.txt`) and the study goes on with the others; runs that
    learn from a failed assistant are skipped. Run the same command again to retry what failed.
    """
    state = process_state()
    # Under `accelerate launch` every process runs every run together (data parallel): only the main process
    # speaks and writes, and run locks (meant for independent study processes) are not taken.
    distributed = state.num_processes > 1
    if not state.is_main_process:
        log = silent
    plan.directory.mkdir(parents=True, exist_ok=True)
    with state.main_process_first():
        prepared = prepare_teachers(plan, log, progress)
    check_unchanged(plan)
    if state.is_main_process:
        write_plan(plan, prepared)
    tally = _Tally.of(plan, plan.select(only) if only else plan.all_runs())
    log(tally.opening(plan, selected=bool(only)))
    todo = tally.todo()
    prepare_transfer_sets(todo, log, progress)
    for position, run in enumerate(todo, 1):
        say = _numbered(log, position, len(todo), run.id)
        _await_assistants(plan, run, tally, distributed, say)
        blocked = [a.id for a in run.assistants if a.id in tally.failed]
        if blocked:
            tally.failed[run.id] = f"its assistant {blocked[0]} failed"
            say(f"skipped, {tally.failed[run.id]}")
            continue
        summary = _run_unless_taken(plan, run, todo[position - 1 :], tally, distributed, progress, log, say)
        if summary is not None:
            tally.done(run, summary, say)
    return tally.outcome(plan)


@dataclass
class _Tally:
    """What one `run_study` invocation knows: the runs it covers, which finished or failed, the wall times the
    ETA is estimated from, and the runs it left to other processes."""

    everything: list[PlannedRun]
    states: dict[str, str]
    finished: set[str]
    timed: list[tuple[dict[str, str], float]]
    failed: dict[str, str] = field(default_factory=dict)
    skipped: list[PlannedRun] = field(default_factory=list)

    @classmethod
    def of(cls, plan: StudyPlan, everything: list[PlannedRun]) -> _Tally:
        states = {r.id: run_state(plan.run_dir(r)) for r in everything}
        finished = {r.id for r in everything if states[r.id] == "finished"}
        timed = [
            (r.group, json.loads((plan.run_dir(r) / "summary.json").read_text()).get("wall_seconds", 0.0))
            for r in everything
            if r.id in finished
        ]
        return cls(everything, states, finished, timed)

    def opening(self, plan: StudyPlan, selected: bool) -> str:
        part = f" (selected: {len(self.everything)})" if selected else ""
        return (
            f"study {plan.name}: {len(plan.runs)} runs + {len(plan.assistants)} assistants{part} in "
            f"{plan.directory}; {len(self.finished)} finished, "
            f"{sum(s == 'interrupted' for s in self.states.values())} to resume"
        )

    def todo(self) -> list[PlannedRun]:
        """Runs without assistants first (results sooner), then the assistants, then the runs that learn from them."""
        order = [r for r in self.everything if r.kind == "run" and not r.assistants]
        order += [r for r in self.everything if r.kind == "assistant"]
        order += [r for r in self.everything if r.assistants]
        return [r for r in order if r.id not in self.finished]

    def done(self, run: PlannedRun, summary: dict[str, Any], say: Log) -> None:
        self.finished.add(run.id)
        self.timed.append((run.group, summary["wall_seconds"]))
        main = next(iter(summary["validation"].values()), {})
        metric = next((k for k in main if k != "score"), "score")
        say(
            f"done in {summary['wall_seconds'] / 60:.1f} min, validation {metric} "
            f"{100 * main.get(metric, float('nan')):.2f}"
        )

    def outcome(self, plan: StudyPlan) -> dict[str, Any]:
        # Runs left to other processes: by now some may have finished there; report only those still going.
        still_running = [r.id for r in self.skipped if run_state(plan.run_dir(r)) != "finished"]
        return {
            "finished": len(self.finished) + len(self.skipped) - len(still_running),
            "total": len(self.everything),
            "failed": self.failed,
            "elsewhere": still_running,
        }


def _numbered(log: Log, position: int, total: int, run_id: str) -> Log:
    """`log` with the run's place in this invocation's queue in front: `[3/12] cnn--kd--s1: ...`."""
    return lambda message: log(f"[{position}/{total}] {run_id}: {message}")


def _await_assistants(plan: StudyPlan, run: PlannedRun, tally: _Tally, distributed: bool, say: Log) -> None:
    """Assistants of `run` that this process did not finish are being trained by another one: wait for them."""
    for assistant in (a for a in run.assistants if a.id not in tally.finished):
        if assistant.id in tally.failed:
            continue
        say(f"waiting for its assistant {assistant.id} (another process)")
        if not distributed:
            with run_lock(plan.run_dir(assistant), wait=True):
                pass
        if run_state(plan.run_dir(assistant)) == "finished":
            tally.finished.add(assistant.id)
        else:
            tally.failed[assistant.id] = "did not finish in the other process"


def _run_unless_taken(
    plan: StudyPlan,
    run: PlannedRun,
    upcoming: list[PlannedRun],
    tally: _Tally,
    distributed: bool,
    progress: bool,
    log: Log,
    say: Log,
) -> dict[str, Any] | None:
    """Train `run` under its lock; None when another process holds it, has finished it, or it failed (recorded)."""
    directory = plan.run_dir(run)
    with nullcontext(True) if distributed else run_lock(directory) as locked:
        if not locked:
            tally.skipped.append(run)
            say("skipped, another process is running it")
            return None
        state = run_state(directory)  # another process may have finished it since the study started
        if state == "finished":
            tally.finished.add(run.id)
            return None
        left = [r for r in upcoming if r.id not in tally.failed]
        say(
            f"{'resuming' if state == 'interrupted' else 'starting'} ({len(tally.finished)} finished, "
            f"{len(tally.failed)} failed; {_eta(tally.timed, left)})"
        )
        try:
            return _run_one(plan, run, state == "interrupted", progress, log)
        except Interrupted as e:  # the whole study stops; the run is resumed from its checkpoint next time
            raise Interrupted(
                f"study {plan.name} stopped in run {run.id} ({len(tally.finished)} of {len(tally.everything)} "
                f"finished; {str(e).split('; continue with')[0]}); continue with: xkd study {plan.source} "
                "(the same command)",
                e.signal_number,
            ) from None
        except Exception as e:  # one failed run must not lose the others
            tally.failed[run.id] = str(e).splitlines()[0] if str(e) else type(e).__name__
            say(f"failed: {tally.failed[run.id]} (details in {directory / 'error.txt'})")
            return None


def run_lock(directory: Path, wait: bool = False):
    """An exclusive lock on a run directory, so that study processes working on one grid (e.g. one per GPU,
    each with its own --only) never train the same run twice; yields False when another process holds it."""
    return file_lock(directory / ".lock", wait)


def _eta(timed: list, upcoming: list[PlannedRun]) -> str:
    remaining = [_estimate(timed, r) for r in upcoming]
    unknown = sum(x is None for x in remaining)
    if unknown == len(remaining):
        return "ETA after the first run"
    eta = sum(x for x in remaining if x is not None)
    return f"ETA {eta / 60:.0f} min" + (f" + {unknown} run(s) of a kind not yet timed" if unknown else "")


def _run_one(plan: StudyPlan, run: PlannedRun, resume: bool, progress: bool, log: Log) -> dict[str, Any]:
    """Start or resume one run, its log in RUN/log.txt; a failure leaves RUN/error.txt and raises."""
    directory = plan.run_dir(run)
    cfg = replace(run.config, output_dir=str(directory), overwrite=not resume, resume=resume, progress=progress)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "error.txt").unlink(missing_ok=True)
    try:
        with (directory / "log.txt").open("a") as handle:

            def to_file(message: str) -> None:
                handle.write(message + "\n")
                handle.flush()

            return run_distill(cfg, log=to_file)
    except (KeyboardInterrupt, Interrupted):  # an interrupted run, not a failed one: no error.txt
        log(f"interrupted: run the same command again to resume {run.id} from its last checkpoint")
        raise
    except Exception as e:
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        detail = f"{message}\n" if isinstance(e, XKDError) else traceback.format_exc()  # a bug: keep the trace
        if process_state().is_main_process:
            write_text_atomically(directory / "error.txt", detail)
        raise
