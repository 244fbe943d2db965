"""Running a planned study: shared teachers and transfer sets first, then each run under a lock, resumable, with
progress and an ETA; results are read back from the runs' directories (`xkd.studies.results`). The plan (the file
format, the grid, the checks) is `xkd.studies.plan`."""

from __future__ import annotations

import json
import time
import traceback
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from xkd.config import DistillConfig
from xkd.data import load_splits
from xkd.distillation import run_distill
from xkd.errors import Interrupted, XKDError
from xkd.files import file_lock, write_text_atomically
from xkd.log import Log, silent
from xkd.methods import get_method
from xkd.processes import process_state
from xkd.pseudo_heads import WEIGHTS_FILE, PseudoHeads
from xkd.studies.plan import PlannedRun, StudyPlan, comparable
from xkd.tasks import resolve_task
from xkd.teacher_outputs import build_teacher_caches
from xkd.teachers import heads_dir
from xkd.teachers.ensemble import teacher_list
from xkd.teachers.outside import outside_info
from xkd.teachers.resolve import resolve_teachers
from xkd.training import Checkpoints


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
        teacher, info = resolve_teachers(first, task, raw, needs_heads, log)
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
        if run.assistants:  # its teacher is an assistant not trained yet: the run labels the set itself, after it
            continue
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
        old = {**comparable(DistillConfig()), **comparable(json.loads(saved.read_text()))}
        new = comparable(run.config)
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
