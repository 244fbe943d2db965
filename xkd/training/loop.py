"""The training loop: short named steps that read in order, and no knowledge of any method.

set up -> restore (or start) -> for each epoch: train steps (batch -> teacher trace, frozen -> student trace ->
loss terms -> backward -> term hooks -> optimizer step) -> end the epoch (validate, term records, best checkpoint,
resumable checkpoint) -> finish (test the best weights). Fine-tuning a teacher is the same loop with the `none`
method and no teacher. Device and precision are decided here, once, by `accelerate`. What a method needs from
training beyond its loss (freezing layers, an attention record) it asks through its term module's hooks
(`xkd.methods.base.TermModule`).
"""

from __future__ import annotations

import json
import math
import shutil
import signal
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, set_seed
from datasets import DatasetDict
from torch import nn
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from xkd.data import Collator, is_labeled, make_loader
from xkd.errors import Interrupted, XKDError
from xkd.evaluation import evaluate
from xkd.interrupts import StopRequest, stop_requests
from xkd.log import Log, to_stderr
from xkd.methods.base import LossTerm, TermModule, weighted_loss
from xkd.processes import fresh_accelerator_state, use_cpu
from xkd.tasks import Task
from xkd.teacher_cache import TeacherCache
from xkd.trace import Trace
from xkd.training.checkpoints import Checkpoints, drop_lines_after, save_atomically
from xkd.training.settings import TrainSettings
from xkd.training.state import TrainState
from xkd.training.teacher_source import TeacherSource
from xkd.training.tracking import TRACKING_DIR, Tracking


@dataclass
class Run:
    """What one call of `train` works with, set up once."""

    task: Task
    settings: TrainSettings
    accelerator: Accelerator
    model: nn.Module  # prepared (DDP-wrapped under several processes)
    terms: list[LossTerm]
    term_modules: nn.Module
    source: TeacherSource
    train_loader: Any
    sampler: Any  # the training batch sampler: the epoch alone decides its batches (see `LengthBuckets`)
    eval_loaders: dict[str, Any]
    val_names: list[str]
    test_names: list[str]
    total_steps: int
    epochs: int
    run_dir: Path
    save_dir: Path
    meta: dict[str, Any]
    needs_attentions: bool
    checkpoints: Checkpoints
    state: TrainState
    tracking: Tracking

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    def term_hooks(self, hook: str) -> list[tuple[LossTerm, Any]]:
        """(term, bound hook) for every term module that defines `hook`."""
        return [(t, getattr(t.module, hook)) for t in self.terms if hasattr(t.module, hook)]


def parameter_count(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@dataclass
class TrainJob:
    """What one call of `train` trains, on what, with which settings, and where it writes."""

    model: nn.Module
    task: Task
    splits: DatasetDict
    collator: Collator
    terms: list[LossTerm]
    settings: TrainSettings
    run_dir: Path
    teacher: nn.Module | None = None
    needs_attentions: bool = False
    teacher_cache: TeacherCache | None = None
    save_dir: Path | None = None  # where the best model is saved [default: run_dir/student]
    meta: dict[str, Any] = field(default_factory=dict)  # what the saved model records of its run
    initial_best: float = -math.inf
    resume: bool = False


def train(job: TrainJob, log: Log = to_stderr) -> dict[str, Any]:
    """Train the job's `model` on `splits["train"]` with the weighted `terms`, keeping the best validation checkpoint.

    Writes `run_dir/metrics.jsonl` (one line per epoch) and saves the best model to `save_dir` (default
    `run_dir/student`); returns a summary with the best epoch, validation and test metrics and timings (the caller
    writes `summary.json`). The teacher's outputs come from `teacher_cache` for the splits it holds (never when
    attentions are needed). Under `accelerate launch` each process takes its share of every batch (`batch_size` is
    the global batch), gradients are averaged by DDP, and only the main process writes files. Trainable parts of
    the loss terms are optimised with the student and never saved with it. A checkpoint of the student is saved
    only when the validation score beats `initial_best` (a second training stage passes the first stage's best).

    Resumable checkpoints (`run_dir/checkpoints/step-N.pt`, see `TrainState`) are written atomically at every
    epoch end and every `checkpoint_every` steps, keeping the newest `keep_checkpoints`. With `resume`, training
    continues from the newest one and ends exactly where an uninterrupted run would (same batches, dropout masks
    and updates).
    """
    settings = job.settings
    run = set_up(job, log)
    resumed_epoch = restore(run) if job.resume else start(run)
    run.state.start_clock()
    bar = tqdm(total=run.total_steps, desc="train", disable=not (settings.progress and run.main), dynamic_ncols=True)
    bar.update(run.state.step)
    with stop_requests() as stop:
        for epoch in range(run.state.epoch, run.epochs + 1):
            if run.state.stopped_at is not None:  # early stopping ended the run before an interruption
                break
            train_epoch(run, epoch, bar, continuing=epoch == resumed_epoch, stop=stop)
            if run.state.stopped_at is not None:  # stopped by an evaluation within the epoch
                break
            end_epoch(run, epoch, bar)
            if run.state.step >= run.total_steps:
                break
    bar.close()
    return finish(run)


def set_up(job: TrainJob, log: Log = to_stderr) -> Run:
    """Seed, device, loaders, optimizer and schedule; the terms' `start` hooks check the student first."""
    task, settings, terms, teacher, run_dir = job.task, job.settings, job.terms, job.teacher, Path(job.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    set_seed(settings.seed)
    fresh_accelerator_state()
    accelerator = Accelerator(
        cpu=use_cpu(),
        mixed_precision=settings.precision,
        gradient_accumulation_steps=settings.grad_accumulation,
        dataloader_config=DataLoaderConfiguration(split_batches=True),  # results do not depend on process count
        **({"log_with": settings.report_to, "project_dir": run_dir / TRACKING_DIR} if settings.report_to else {}),
    )
    if settings.batch_size % accelerator.num_processes:
        raise XKDError(
            f"batch size {settings.batch_size} does not split over {accelerator.num_processes} processes; "
            f"use a multiple of {accelerator.num_processes}"
        )
    source = TeacherSource(teacher, job.teacher_cache, job.needs_attentions)
    train_loader, eval_loaders, val_names, test_names = make_loaders(task, job.splits, job.collator, settings, source)
    steps_per_epoch = len(train_loader)
    total_steps = settings.epochs * steps_per_epoch
    if settings.max_steps is not None:
        total_steps = min(total_steps, settings.max_steps)
    sampler = train_loader.batch_sampler  # before accelerate wraps the loader
    term_modules = nn.ModuleList([t.module for t in terms if t.module is not None])
    model, term_modules, optimizer, train_loader, scheduler = prepare_optimisation(
        accelerator,
        job.model,
        term_modules,
        train_loader,
        settings,
        math.ceil(total_steps / settings.grad_accumulation),
    )
    if teacher is not None:
        teacher.to(accelerator.device)  # frozen: placed, never wrapped for DDP or optimised
    state = TrainState(accelerator, model, term_modules, optimizer, scheduler, settings, source, job.initial_best)
    checkpoints = Checkpoints(
        run_dir / "checkpoints", settings.keep_checkpoints, enabled=accelerator.is_main_process, log=log
    )
    save_dir = Path(job.save_dir) if job.save_dir is not None else run_dir / "student"
    epochs = math.ceil(total_steps / steps_per_epoch)
    loaders = (train_loader, sampler, eval_loaders, val_names, test_names)
    tracking = Tracking.start(accelerator, settings.report_to, run_dir, {**job.meta, **asdict(settings)})
    run = Run(task, settings, accelerator, model, terms, term_modules, source, *loaders, total_steps, epochs,
              run_dir, save_dir, job.meta, job.needs_attentions, checkpoints, state, tracking)  # fmt: skip
    for _, hook in run.term_hooks("start"):
        hook(state.student())
    return run


def make_loaders(
    task: Task, splits: DatasetDict, collator: Collator, settings: TrainSettings, source: TeacherSource
) -> tuple[Any, dict[str, Any], list[str], list[str]]:
    """The shuffled training loader and the validation/test loaders. Batches carry no teacher inputs when no
    teacher runs on them (no teacher, or the cache serves the split): padding them would be wasted work."""

    def batcher(split: str) -> Collator:
        return collator.without("teacher") if source.teacher is None or source.cached(split) else collator

    buckets = settings.length_buckets
    train_loader = make_loader(
        splits["train"], batcher("train"), settings.batch_size, shuffle=True, seed=settings.seed, buckets=buckets
    )
    val_names = [n for n in task.validation_splits if n in splits]
    test_names = [n for n in task.test_splits if n in splits and is_labeled(splits[n])]
    eval_loaders = {
        n: make_loader(splits[n], batcher(n), settings.eval_batch_size, shuffle=False, buckets=buckets)
        for n in val_names + test_names
    }
    return train_loader, eval_loaders, val_names, test_names


def prepare_optimisation(
    accelerator: Accelerator,
    model: nn.Module,
    term_modules: nn.ModuleList,
    train_loader: Any,
    settings: TrainSettings,
    optimizer_steps: int,
) -> tuple[nn.Module, nn.Module, torch.optim.Optimizer, Any, Any]:
    """AdamW over the student and the terms' modules (no weight decay on biases and norms, as in BERT's recipe),
    a linear schedule with warmup, all placed and wrapped by accelerate."""
    decay, no_decay = [], []
    for name, p in nn.ModuleList([model, term_modules]).named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    groups = [{"params": decay, "weight_decay": settings.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=settings.lr)
    warmup = int(settings.warmup_ratio * optimizer_steps)
    scheduler = get_linear_schedule_with_warmup(optimizer, warmup, optimizer_steps)
    model, optimizer, train_loader, scheduler = accelerator.prepare(model, optimizer, train_loader, scheduler)
    if any(p.requires_grad for p in term_modules.parameters()):  # DDP refuses a module without parameters
        term_modules = accelerator.prepare(term_modules)
    else:
        term_modules.to(accelerator.device)
    return model, term_modules, optimizer, train_loader, scheduler


def epoch_logs(run: Run) -> list[Path]:
    """The per-epoch JSON-lines files a run writes: metrics, and every term module's epoch log (those of every
    known kind, so a run started over under another method leaves no stale record behind)."""
    names = {cls.epoch_log for cls in _subclasses(TermModule) if cls.epoch_log}
    names |= {getattr(t.module, "epoch_log", None) for t in run.terms} - {None}
    return [run.run_dir / "metrics.jsonl", *(run.run_dir / n for n in sorted(names))]


def _subclasses(cls: type) -> list[type]:
    return [sub for direct in cls.__subclasses__() for sub in (direct, *_subclasses(direct))]


def start(run: Run) -> None:
    """A fresh run: no epoch lines from an earlier run in the same directory survive."""
    if run.main:
        for path in epoch_logs(run):
            path.unlink(missing_ok=True)
    return None


def restore(run: Run) -> int:
    """Continue from the newest checkpoint; returns the epoch it resumes in."""
    if run.main:  # what a kill mid-write left behind
        run.checkpoints.clean()
        shutil.rmtree(run.save_dir.with_name(run.save_dir.name + ".saving"), ignore_errors=True)
    saved = run.checkpoints.latest()
    if saved is None:
        raise XKDError(f"{run.run_dir} has no checkpoint to resume from; start the run again without --resume")
    run.state.load_state_dict(saved)
    if run.main:  # lines of an epoch that the checkpoint does not cover are written again
        for path in epoch_logs(run):
            drop_lines_after(path, run.state.epoch, run.state.step)
    return run.state.epoch


def train_epoch(run: Run, epoch: int, bar: tqdm, continuing: bool, stop: StopRequest | None = None) -> None:
    """One pass over the training batches (the rest of it when `continuing` an interrupted epoch). A stop request
    (Ctrl-C, SIGTERM) ends it at the next optimizer step with a resumable checkpoint."""
    state = run.state
    run.model.train()
    run.term_modules.train()
    run.sampler.for_epoch(epoch)
    if not continuing:
        state.sums, state.seen, state.batches_done = {}, 0, 0
    skip = state.batches_done
    for index, batch in enumerate(run.train_loader):
        if index < skip:  # resumed mid-epoch: these batches were trained on before the interruption
            continue
        train_step(run, batch)
        if due(state.step, run.settings.log_every):
            running = {f"train/{k}": v / state.seen for k, v in state.sums.items()}
            run.tracking.scalars({**running, "train/lr": state.scheduler.get_last_lr()[0]}, state.step)
        bar.update(1)
        bar.set_postfix(
            epoch=epoch, loss=f"{state.sums['loss'] / state.seen:.4f}", best=f"{max(state.best_score, 0):.4f}"
        )
        if state.step >= run.total_steps:
            break
        if state.step % run.settings.grad_accumulation:
            continue  # evaluations and checkpoints fall between optimizer steps
        if stop is not None and stop.agreed(run.accelerator):
            state.epoch, state.batches_done = epoch, index + 1
            run.checkpoints.save(state.state_dict())
            bar.close()
            raise Interrupted(
                f"training stopped at step {state.step} of {run.total_steps}; a resumable checkpoint is in "
                f"{run.checkpoints.directory}",
                stop.signal or signal.SIGINT,
            )
        evaluate_now = due(state.step, run.settings.eval_every) and index + 1 < len(run.train_loader)
        if evaluate_now:  # the epoch's last batch is evaluated by `end_epoch`
            validate(run, epoch, within_epoch=True)
        if evaluate_now or due(state.step, run.settings.checkpoint_every):
            state.epoch, state.batches_done = epoch, index + 1
            run.checkpoints.save(state.state_dict())
        if state.stopped_at is not None:
            break


def due(step: int, every: int) -> bool:
    return bool(every) and step % every == 0


def train_step(run: Run, batch: dict) -> None:
    """One batch: teacher and student traces, the weighted loss, backward, the terms' `after_backward` hooks,
    clipping and the optimizer step (every `grad_accumulation` batches)."""
    state, accelerator = run.state, run.accelerator
    teacher_trace = run.source("train", batch)
    with accelerator.accumulate(run.model, run.term_modules):
        with accelerator.autocast():
            student_trace = run.model(batch["student"], output_attentions=run.needs_attentions)
            loss, values = weighted_loss(run.terms, student_trace, teacher_trace, batch["labels"], run.task)
        # One all-reduce per step gives the logged means, and the stop signal: the mean is not finite on every
        # process as soon as one process's loss is not, so all stop (none waits in an all-reduce).
        logged = accelerator.reduce(torch.stack([loss, *values.values()]).detach().float(), "mean")
        stop_unless_finite(run, logged, list(values))
        accelerator.backward(loss)
        for _, hook in run.term_hooks("after_backward"):
            hook(state.student())
        if run.settings.max_grad_norm and accelerator.sync_gradients:
            params = [*run.model.parameters(), *run.term_modules.parameters()]
            accelerator.clip_grad_norm_(params, run.settings.max_grad_norm)
        state.optimizer.step()
        state.scheduler.step()
        state.optimizer.zero_grad(set_to_none=True)
    state.step += 1
    state.seen += 1
    state.trained += int(batch["labels"].shape[0])
    for name, value in zip(["loss", *values], logged.tolist(), strict=True):
        state.sums[name] = state.sums.get(name, 0.0) + value


def stop_unless_finite(run: Run, logged: torch.Tensor, names: list[str]) -> None:
    """A one-line error before a non-finite loss updates the weights, naming the first bad term."""
    if bool(torch.isfinite(logged).all()):
        return
    bad = next((n for n, v in zip(names, logged[1:], strict=True) if not torch.isfinite(v)), "total")
    kept = f"the best checkpoint so far is kept in {run.save_dir}" if run.state.best_state else "no checkpoint yet"
    raise XKDError(
        f"the loss is not finite at step {run.state.step + 1} (term '{bad}'); stopped before updating the weights "
        f"({kept}); lower --lr or check the data"
    )


def end_epoch(run: Run, epoch: int, bar: tqdm) -> None:
    """Validate, log the epoch and the terms' records, keep the best student, write a resumable checkpoint."""
    state = run.state
    train_means = validate(run, epoch)
    record_terms(run, epoch, state.student())
    bar.set_postfix(epoch=epoch, loss=f"{train_means.get('loss', 0.0):.4f}", best=f"{state.best_score:.4f}")
    state.sums, state.seen = {}, 0
    state.epoch, state.batches_done = epoch + 1, 0
    run.checkpoints.save(state.state_dict())


def validate(run: Run, epoch: int, within_epoch: bool = False) -> dict[str, float]:
    """Score the validation splits, log a `metrics.jsonl` line (marked `"at": "step"` within an epoch), keep the
    student if it is the best so far, and count evaluations without a gain for `patience`. Returns the training
    means logged."""
    state, student = run.state, run.state.student()
    val = {n: evaluate(student, run.eval_loaders[n], run.task) for n in run.val_names}
    score = val[run.val_names[0]][run.task.main_metric]
    state.evaluations += 1
    train_means = {k: v / max(state.seen, 1) for k, v in state.sums.items()}
    where = {"at": "step"} if within_epoch else {}
    record = {"epoch": epoch, "step": state.step, **where, "train": train_means, **val}
    append_line(run, run.run_dir / "metrics.jsonl", {**record, "elapsed_s": round(state.elapsed(), 2)})
    run.tracking.scalars(tracked(val, train_means, within_epoch), state.step)
    if score > state.best_score:
        state.best_score, state.best_epoch, state.best_step, state.best_val = score, epoch, state.step, val
        state.best_state = {k: v.detach().cpu().clone() for k, v in student.state_dict().items()}
        state.evals_without_gain = 0
        if run.main:
            save_atomically(student, run.save_dir, {**run.meta, "validation": val, "epoch": epoch, "step": state.step})
    else:
        state.evals_without_gain += 1
    if run.settings.patience and state.evals_without_gain >= run.settings.patience:
        state.stopped_at = state.step
    return train_means


def record_terms(run: Run, epoch: int, student: nn.Module) -> None:
    """Each term module's `epoch_record` over the first validation split, appended to its `epoch_log`."""
    split = run.val_names[0]
    for term, hook in run.term_hooks("epoch_record"):
        log = getattr(term.module, "epoch_log", None)
        record = hook(validation_pairs(run, student, split))
        if log and record is not None:
            append_line(run, run.run_dir / log, {"epoch": epoch, "term": term.name, "split": split, **record})
            for key, value in record.items():
                if is_matrix(value):  # e.g. the projector's attention over teacher layers
                    run.tracking.heatmap(f"{term.name}/{key}", value, run.state.step)


def is_matrix(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(row, list) and row for row in value)


def tracked(
    metrics: dict[str, dict[str, float]], train: dict[str, float] | None = None, within_epoch: bool = False
) -> dict[str, float]:
    """Metrics per split, and the training means since the epoch began, as flat tracker names
    (`validation/accuracy`; `epoch/loss` at an epoch's end, `step/loss` at an --eval-every evaluation within it)."""
    out = {f"{split}/{name}": value for split, values in metrics.items() for name, value in values.items()}
    prefix = "step" if within_epoch else "epoch"
    return out | {f"{prefix}/{name}": value for name, value in (train or {}).items()}


def validation_pairs(run: Run, student: nn.Module, split: str) -> Iterator[tuple[Trace, Trace | None]]:
    """(student, teacher) traces over a split, in eval mode and without gradients; train mode is restored after."""
    was_training = student.training, run.term_modules.training
    student.eval()
    run.term_modules.eval()
    device = next(student.parameters()).device
    try:
        for batch in run.eval_loaders[split]:
            batch = _to(batch, device)
            with torch.no_grad():
                pair = student(batch["student"], output_attentions=run.needs_attentions), run.source(split, batch)
            yield pair
    finally:
        student.train(was_training[0])
        run.term_modules.train(was_training[1])


def _to(batch: dict, device: torch.device) -> dict:
    return {k: (_to(v, device) if isinstance(v, dict) else v.to(device)) for k, v in batch.items()}


def append_line(run: Run, path: Path, record: dict[str, Any]) -> None:
    if run.main:
        with path.open("a") as f:
            f.write(json.dumps(record) + "\n")


def finish(run: Run) -> dict[str, Any]:
    """Test the best weights; the summary of the training run."""
    state, accelerator = run.state, run.accelerator
    seconds = state.elapsed()
    student = state.student()
    if state.best_state is not None:
        student.load_state_dict(state.best_state)
    test = {n: evaluate(student, run.eval_loaders[n], run.task) for n in run.test_names}
    run.tracking.scalars(tracked(test), state.step)
    run.tracking.end()
    return {
        "task": run.task.name,
        "best_epoch": state.best_epoch,
        "best_score": state.best_score,
        "best_step": state.best_step,
        "steps": state.step,
        "stopped_early": None
        if state.stopped_at is None
        else {
            "step": state.stopped_at,
            "patience": run.settings.patience,
            "evaluations": state.evaluations,  # how many validation passes ran before the stop
            "evaluate_every": run.settings.eval_every or "epoch",
        },
        "validation": state.best_val,
        "test": test,
        "train_seconds": round(seconds, 2),
        "train_seconds_before_resume": round(state.earlier_seconds, 2),
        "steps_per_second": round(state.step / seconds, 3) if seconds else None,
        "device": str(accelerator.device),
        "processes": accelerator.num_processes,
        # Global counts for the compute columns (each process sees an equal share of every batch).
        "train_examples": state.trained * accelerator.num_processes,
        "teacher_forward_examples": run.source.forward_examples * accelerator.num_processes,
        "trainable_parameters": parameter_count(nn.ModuleList([run.model, run.term_modules]), trainable_only=True),
        "settings": asdict(run.settings),
    }
