"""The training loop: one function whose steps read in order.

batch -> teacher trace (frozen, no grad) -> student trace -> loss terms -> step -> evaluation each epoch ->
best checkpoint on validation -> test evaluation of the best weights. Fine-tuning a teacher is the same loop with
the `none` method and no teacher. Device and precision are decided here, once, by `accelerate`.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import DataLoaderConfiguration, parse_flag_from_env, set_seed
from datasets import DatasetDict
from torch import nn
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from xkd.data import Collator, is_labeled, make_loader
from xkd.errors import XKDError
from xkd.evaluation import evaluate
from xkd.files import write_text_atomically
from xkd.methods import LossTerm, weighted_loss
from xkd.projector import ProjectionLoss
from xkd.tasks import Task
from xkd.teacher_cache import TeacherCache
from xkd.trace import Trace


@dataclass
class TrainSettings:
    """Optimisation settings shared by distillation and teacher fine-tuning."""

    epochs: int = 3
    batch_size: int = 32
    eval_batch_size: int = 128
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    max_steps: int | None = None
    seed: int = 42
    precision: str = "no"  # "no", "bf16" or "fp16" (accelerate's mixed precision)
    grad_accumulation: int = 1
    length_buckets: bool = True
    checkpoint_every: int = 0  # also checkpoint every N optimizer steps (0: at epoch ends only)
    keep_checkpoints: int = 2  # resumable checkpoints kept on disk (the newest N)
    progress: bool = True


def rng_state() -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Checkpoints:
    """Resumable training states in one directory, written atomically, the newest `keep` kept."""

    def __init__(self, directory: Path, keep: int, enabled: bool = True) -> None:
        self.directory, self.keep, self.enabled = directory, max(keep, 1), enabled

    def paths(self) -> list[Path]:
        return sorted(self.directory.glob("step-*.pt"))

    @classmethod
    def exist(cls, run_dir: Path) -> bool:
        """Whether `run_dir` holds a resumable checkpoint."""
        return bool(cls(Path(run_dir) / "checkpoints", keep=1).paths())

    def save(self, state: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.directory / f"step-{state['step']:08d}.pt"
        tmp = final.with_name(final.name + ".partial")
        torch.save(state, tmp)
        os.replace(tmp, final)  # a crash mid-write leaves the previous checkpoint as the newest
        for old in self.paths()[: -self.keep]:
            old.unlink(missing_ok=True)

    def latest(self) -> dict[str, Any] | None:
        paths = self.paths()
        return torch.load(paths[-1], map_location="cpu", weights_only=False) if paths else None


def _drop_epochs_from(path: Path, epoch: int) -> None:
    """Keep only the JSON lines of epochs before `epoch` (a resumed run writes the rest again)."""
    if path.is_file():
        lines = [line for line in path.read_text().splitlines() if json.loads(line)["epoch"] < epoch]
        write_text_atomically(path, "".join(line + "\n" for line in lines))


def use_cpu() -> bool:
    """CPU when asked (`ACCELERATE_USE_CPU`) or when there is no accelerator; accelerate then runs processes
    launched by `accelerate launch`/`torchrun` as a gloo group instead of ignoring the launcher."""
    return parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.accelerator.is_available()


def process_state() -> PartialState:
    """The process group (one process unless launched by `accelerate launch` or `torchrun`)."""
    return PartialState(cpu=use_cpu())


def parameter_count(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _optimizer(model: nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    # No weight decay on biases and norms, as in BERT's recipe.
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": settings.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=settings.lr)


def save_atomically(model: nn.Module, directory: Path, meta: dict[str, Any]) -> None:
    """Save into a temporary sibling, then move each file into place with an atomic rename.

    A crash mid-save never leaves a half-written weights file; files the directory already holds (a run's logs)
    are kept.
    """
    tmp = directory.with_name(directory.name + ".saving")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save(tmp, **meta)
    directory.mkdir(parents=True, exist_ok=True)
    for path in tmp.iterdir():
        os.replace(path, directory / path.name)
    tmp.rmdir()


class TeacherSource:
    """The frozen teacher's Trace for a batch: from the teacher cache when it holds the split, else online."""

    def __init__(self, teacher: nn.Module | None, cache: TeacherCache | None, needs_attentions: bool) -> None:
        self.teacher, self.cache, self.needs_attentions = teacher, cache, needs_attentions
        self.forward_examples = 0  # examples this process ran through the teacher (the compute columns count them)

    @torch.no_grad()
    def __call__(self, split: str, batch: dict) -> Trace | None:
        if self.cache is not None and self.cache.has(split) and not self.needs_attentions:
            return self.cache.trace(split, batch["index"], batch.get("teacher", {}).get("attention_mask"))
        if self.teacher is None:
            return None
        self.forward_examples += int(batch["labels"].shape[0])
        return self.teacher(batch["teacher"], output_attentions=self.needs_attentions)


def _to(batch: dict, device: torch.device) -> dict:
    return {k: (_to(v, device) if isinstance(v, dict) else v.to(device)) for k, v in batch.items()}


@torch.no_grad()
def mean_attention(
    module: ProjectionLoss, model: nn.Module, source: TeacherSource, split: str, loader, needs_attentions: bool
) -> list[list[float]]:
    """The projector's attention α averaged over a split: row j = how student layer j spreads over teacher layers."""
    was_training = module.training, model.training
    module.eval()
    model.eval()
    device = next(model.parameters()).device
    total, count = None, 0
    for batch in loader:
        batch = _to(batch, device)
        student = model(batch["student"], output_attentions=needs_attentions)
        alpha = module(student, source(split, batch)).attention.float()
        total = alpha.sum(0) if total is None else total + alpha.sum(0)
        count += alpha.shape[0]
    module.train(was_training[0])
    model.train(was_training[1])
    return (total / max(count, 1)).cpu().tolist()


def train(
    model: nn.Module,
    task: Task,
    splits: DatasetDict,
    collator: Collator,
    terms: list[LossTerm],
    settings: TrainSettings,
    run_dir: str | Path,
    teacher: nn.Module | None = None,
    needs_attentions: bool = False,
    teacher_cache: TeacherCache | None = None,
    save_dir: str | Path | None = None,
    meta: dict[str, Any] | None = None,
    initial_best: float = -math.inf,
    resume: bool = False,
) -> dict[str, Any]:
    """Train `model` on `splits["train"]` with the weighted `terms`, keeping the best validation checkpoint.

    Writes `run_dir/metrics.jsonl` (one line per epoch) and saves the best model to `save_dir` (default
    `run_dir/student`). Returns a
    summary with the best epoch, validation and test metrics and timings; the caller writes `summary.json`.
    The teacher's outputs come from `teacher_cache` for the splits it holds (and never when attentions are
    needed). Under `accelerate launch` each process takes its share of every batch (`batch_size` is the global
    batch), gradients are averaged by DDP, and only the main process writes files.
    Trainable parts of the loss terms (student pseudo heads, projectors) are optimised with the student and
    never saved with it. For terms that project over teacher layers, the mean attention α over the first
    validation split is appended to `attention.jsonl` after every epoch. A checkpoint is saved only when the
    validation score beats `initial_best` (a second training stage passes the first stage's best).

    Resumable checkpoints (`run_dir/checkpoints/step-N.pt`: student, loss-term modules and their stage buffers,
    optimizer, scheduler, AMP scaler, RNG states, epoch, position in the epoch's batch order, running sums, best
    score and weights) are written atomically at every epoch end and every `checkpoint_every` steps, keeping the
    newest `keep_checkpoints`. With `resume`, training continues from the newest one and ends exactly where an
    uninterrupted run would (same batches, dropout masks and updates).
    """
    run_dir = Path(run_dir)
    save_dir = Path(save_dir) if save_dir is not None else run_dir / "student"
    run_dir.mkdir(parents=True, exist_ok=True)
    set_seed(settings.seed)
    accelerator = Accelerator(
        cpu=use_cpu(),
        mixed_precision=settings.precision,
        gradient_accumulation_steps=settings.grad_accumulation,
        dataloader_config=DataLoaderConfiguration(split_batches=True),  # results do not depend on process count
    )
    if settings.batch_size % accelerator.num_processes:
        raise XKDError(
            f"batch size {settings.batch_size} does not split over {accelerator.num_processes} processes; "
            f"use a multiple of {accelerator.num_processes}"
        )

    buckets = settings.length_buckets
    # Batches carry no teacher inputs when no teacher runs on them (no teacher, or the cache serves the split):
    # padding them would be wasted work.
    cached = set(teacher_cache.arrays) if teacher_cache is not None and not needs_attentions else set()

    def batcher(split: str) -> Collator:
        return collator.without("teacher") if teacher is None or split in cached else collator

    train_loader = make_loader(
        splits["train"], batcher("train"), settings.batch_size, shuffle=True, seed=settings.seed, buckets=buckets
    )
    sampler = train_loader.batch_sampler  # the epoch alone decides its batches (see `LengthBuckets`)
    val_names = [n for n in task.validation_splits if n in splits]
    test_names = [n for n in task.test_splits if n in splits and is_labeled(splits[n])]
    eval_loaders = {
        n: make_loader(splits[n], batcher(n), settings.eval_batch_size, shuffle=False, buckets=buckets)
        for n in val_names + test_names
    }
    steps_per_epoch = len(train_loader)
    total_steps = settings.epochs * steps_per_epoch
    if settings.max_steps is not None:
        total_steps = min(total_steps, settings.max_steps)
    epochs = math.ceil(total_steps / steps_per_epoch)
    optimizer_steps = math.ceil(total_steps / settings.grad_accumulation)

    term_modules = nn.ModuleList([t.module for t in terms if t.module is not None])
    optimizer = _optimizer(nn.ModuleList([model, term_modules]), settings)
    scheduler = get_linear_schedule_with_warmup(
        optimizer, int(settings.warmup_ratio * optimizer_steps), optimizer_steps
    )
    model, optimizer, train_loader, scheduler = accelerator.prepare(model, optimizer, train_loader, scheduler)
    if any(p.requires_grad for p in term_modules.parameters()):  # DDP refuses a module without parameters
        term_modules = accelerator.prepare(term_modules)
    else:
        term_modules.to(accelerator.device)
    if teacher is not None:
        teacher.to(accelerator.device)  # frozen: placed, never wrapped for DDP or optimised
    source = TeacherSource(teacher, teacher_cache, needs_attentions)
    freezers = [t.module for t in terms if getattr(t.module, "freezes", False)]
    if freezers and not hasattr(accelerator.unwrap_model(model), "layer_modules"):
        raise XKDError("freezing layers needs a student with layer_modules() (BERT-k has it); drop -O freeze=true")
    main = accelerator.is_main_process
    projections = [t for t in terms if isinstance(t.module, ProjectionLoss)]

    metrics_path = run_dir / "metrics.jsonl"
    attention_path = run_dir / "attention.jsonl"
    checkpoints = Checkpoints(run_dir / "checkpoints", settings.keep_checkpoints, enabled=main)
    best_score, best_epoch, best_state, best_val = initial_best, 0, None, {}
    step, first_epoch, skip, elapsed = 0, 1, 0, 0.0
    sums: dict[str, float] = {}
    seen = trained = 0  # batches this epoch; examples trained on (this process)
    if resume:
        state = checkpoints.latest()
        if state is None:
            raise XKDError(f"{run_dir} has no checkpoint to resume from; start the run again without --resume")
        accelerator.unwrap_model(model).load_state_dict(state["student"])
        accelerator.unwrap_model(term_modules).load_state_dict(state["terms"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler") is not None and accelerator.scaler is not None:
            accelerator.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])  # nothing draws from it before the next step (loaders have own generators)
        step, first_epoch, skip, elapsed = state["step"], state["epoch"], state["batches_done"], state["elapsed"]
        sums, seen = dict(state["sums"]), state["seen"]
        trained, source.forward_examples = state.get("counts", (0, 0))
        best_score, best_epoch, best_val, best_state = (
            state["best_score"], state["best_epoch"], state["best_val"], state["best_state"],
        )  # fmt: skip
        if main:  # lines of an epoch that the checkpoint does not cover are written again
            for path in (metrics_path, attention_path):
                _drop_epochs_from(path, first_epoch)
    elif main:
        metrics_path.unlink(missing_ok=True)
        attention_path.unlink(missing_ok=True)
    start = time.perf_counter() - elapsed

    def checkpoint(epoch: int, batches_done: int) -> None:
        checkpoints.save(
            {
                "student": accelerator.unwrap_model(model).state_dict(),
                "terms": accelerator.unwrap_model(term_modules).state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": accelerator.scaler.state_dict() if accelerator.scaler is not None else None,
                "rng": rng_state(),
                "step": step,
                "epoch": epoch,
                "batches_done": batches_done,
                "sums": sums,
                "seen": seen,
                "counts": (trained, source.forward_examples),
                "elapsed": time.perf_counter() - start,
                "best_score": best_score,
                "best_epoch": best_epoch,
                "best_val": best_val,
                "best_state": best_state,
                "settings": asdict(settings),
            }
        )

    bar = tqdm(total=total_steps, desc="train", disable=not (settings.progress and main), dynamic_ncols=True)
    bar.update(step)
    for epoch in range(first_epoch, epochs + 1):
        model.train()
        term_modules.train()
        sampler.for_epoch(epoch)
        if epoch != first_epoch or not resume:
            sums, seen, skip = {}, 0, 0
        for index, batch in enumerate(train_loader):
            if index < skip:  # resumed mid-epoch: these batches were trained on before the interruption
                continue
            teacher_trace = source("train", batch)
            frozen = max((m.frozen_layers for m in freezers), default=0)  # before the forward moves the stage on
            with accelerator.accumulate(model, term_modules):
                with accelerator.autocast():
                    student_trace = model(batch["student"], output_attentions=needs_attentions)
                    loss, values = weighted_loss(terms, student_trace, teacher_trace, batch["labels"], task)
                # One all-reduce per step gives the logged means, and the stop signal: the mean is not finite on
                # every process as soon as one process's loss is not, so all stop (none waits in an all-reduce).
                logged = accelerator.reduce(torch.stack([loss, *values.values()]).detach().float(), "mean")
                if not bool(torch.isfinite(logged).all()):
                    bad = next((n for n, v in zip(values, logged[1:], strict=True) if not torch.isfinite(v)), "total")
                    kept = f"the best checkpoint so far is kept in {save_dir}" if best_state else "no checkpoint yet"
                    raise XKDError(
                        f"the loss is not finite at step {step + 1} (term '{bad}'); stopped before updating the "
                        f"weights ({kept}); lower --lr or check the data"
                    )
                accelerator.backward(loss)
                if frozen:
                    for layer in accelerator.unwrap_model(model).layer_modules()[: frozen + 1]:
                        for p in layer.parameters():
                            p.grad = None  # AdamW skips parameters without a gradient (no decay either)
                if settings.max_grad_norm and accelerator.sync_gradients:
                    params = [*model.parameters(), *term_modules.parameters()]
                    accelerator.clip_grad_norm_(params, settings.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)

            step += 1
            seen += 1
            trained += int(batch["labels"].shape[0])
            for name, value in zip(["loss", *values], logged.tolist(), strict=True):
                sums[name] = sums.get(name, 0.0) + value
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{sums['loss'] / seen:.4f}", best=f"{max(best_score, 0):.4f}")
            if step >= total_steps:
                break
            every = settings.checkpoint_every
            if every and step % every == 0 and step % settings.grad_accumulation == 0:
                checkpoint(epoch, index + 1)

        unwrapped = accelerator.unwrap_model(model)
        val = {n: evaluate(unwrapped, eval_loaders[n], task) for n in val_names}
        score = val[val_names[0]][task.main_metric]
        record = {
            "epoch": epoch,
            "step": step,
            "train": {k: v / max(seen, 1) for k, v in sums.items()},
            **{n: m for n, m in val.items()},
            "elapsed_s": round(time.perf_counter() - start, 2),
        }
        if main:
            with metrics_path.open("a") as f:
                f.write(json.dumps(record) + "\n")
        for term in projections:
            alpha = mean_attention(
                term.module, unwrapped, source, val_names[0], eval_loaders[val_names[0]], needs_attentions
            )
            if main:
                with attention_path.open("a") as f:
                    line = {"epoch": epoch, "term": term.name, "split": val_names[0], "alpha": alpha}
                    f.write(json.dumps(line) + "\n")
        if score > best_score:
            best_score, best_epoch, best_val = score, epoch, val
            best_state = {k: v.detach().cpu().clone() for k, v in unwrapped.state_dict().items()}
            if main:
                save_atomically(unwrapped, save_dir, {**(meta or {}), "validation": val, "epoch": epoch})
        bar.set_postfix(epoch=epoch, loss=f"{sums['loss'] / max(seen, 1):.4f}", best=f"{best_score:.4f}")
        sums, seen = {}, 0
        checkpoint(epoch + 1, 0)
        if step >= total_steps:
            break
    bar.close()
    train_seconds = time.perf_counter() - start

    unwrapped = accelerator.unwrap_model(model)
    if best_state is not None:
        unwrapped.load_state_dict(best_state)
    test = {n: evaluate(unwrapped, eval_loaders[n], task) for n in test_names}
    return {
        "task": task.name,
        "best_epoch": best_epoch,
        "best_score": best_score,
        "steps": step,
        "validation": best_val,
        "test": test,
        "train_seconds": round(train_seconds, 2),
        "steps_per_second": round(step / train_seconds, 3) if train_seconds else None,
        "device": str(accelerator.device),
        "processes": accelerator.num_processes,
        # Global counts for the compute columns (each process sees an equal share of every batch).
        "train_examples": trained * accelerator.num_processes,
        "teacher_forward_examples": source.forward_examples * accelerator.num_processes,
        "trainable_parameters": parameter_count(nn.ModuleList([model, term_modules]), trainable_only=True),
        "settings": asdict(settings),
    }
