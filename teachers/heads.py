"""Training the teacher's pseudo classifiers with its body frozen.

Multi-label teachers' heads train with BCE, one sigmoid per label, as their teacher did (`task_loss`).
Efficient by construction: one frozen teacher pass stores every layer's sentence vector for the training and
validation splits, then all heads train together on those stored vectors for several epochs (cheap matrix
products, no transformer in the loop). Each head keeps its epoch of lowest validation loss, independently of the
others.
The heads standardise each layer's vectors with the training split's statistics (saved with them): without that,
the nearly constant [CLS] vectors of shallow layers leave their heads at chance confidence.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from datasets import DatasetDict
from tqdm.auto import tqdm

from xkd.config import DEFAULTS
from xkd.data import Collator, encode, make_loader
from xkd.methods.losses import task_loss
from xkd.metrics import compute_metrics
from xkd.pseudo_heads import PseudoHeads
from xkd.tasks import Task, check_label_names, label_names

from .hf_encoder import HFEncoderClassifier
from .loading import LABELS_FIX, model_label_names


@torch.no_grad()
def layer_vectors(
    model: HFEncoderClassifier,
    split,
    collator: Collator,
    batch_size: int = DEFAULTS.eval_batch_size,
    progress: bool = True,
    desc: str = "",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every layer's sentence vector [N, L, D] (float32, CPU) and the labels [N], from one frozen pass, in the
    split's row order. Batches group texts of similar length, as the teacher cache's pass does: less padding,
    about half the time of a pass in row order on MR."""
    device = next(model.parameters()).device
    model.eval()
    rows, vectors, labels = [], [], []
    loader = make_loader(split, collator, batch_size, shuffle=False, buckets=True)
    for batch in tqdm(loader, desc=desc, disable=not progress):
        inputs = {k: v.to(device) for k, v in batch["teacher"].items()}
        vectors.append(model(inputs).layer_vectors.float().cpu())
        labels.append(batch["labels"])
        rows.append(batch["index"])
    order = torch.cat(rows).argsort()
    return torch.cat(vectors)[order], torch.cat(labels)[order]


def train_heads(
    teacher: HFEncoderClassifier, task: Task, raw_splits: DatasetDict, max_length: int, **fit_options: Any
) -> tuple[PseudoHeads, list[dict[str, float]]]:
    """Train one head per teacher layer on gold labels; returns the heads and each head's validation metrics.
    `fit_options` (kind, epochs, lr, batch_size, seed, progress, log) are `fit_heads`'s. A teacher whose label
    names are not the task's is refused (`xkd.tasks.check_label_names`): its heads would learn another order."""
    names = model_label_names(teacher.config, teacher.meta)
    check_label_names(f"teacher '{teacher.meta.get('source', 'given')}'", names, task, LABELS_FIX)
    tokenizers = {"teacher": teacher.tokenizer}
    collator = Collator(tokenizers)
    val_name = task.validation_splits[0]
    progress = fit_options.get("progress", True)
    stored = {
        name: layer_vectors(
            teacher, encode(raw_splits[name], task, tokenizers, max_length), collator, progress=progress, desc=name
        )
        for name in ("train", val_name)
    }
    return fit_heads(*stored["train"], *stored[val_name], task, **fit_options)


def fit_heads(
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    task: Task,
    kind: str = DEFAULTS.teacher_heads,
    epochs: int = DEFAULTS.heads_epochs,
    lr: float = DEFAULTS.heads_lr,
    batch_size: int = 64,
    seed: int = DEFAULTS.seed,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> tuple[PseudoHeads, list[dict[str, float]]]:
    """Heads for stored [N, L, D] layer vectors, each keeping its lowest-validation-loss epoch; the heads standardise
    their inputs with the training split's statistics."""
    torch.manual_seed(seed)
    heads = PseudoHeads(x_train.shape[1], x_train.shape[2], task.output_size, kind)
    heads.set_input_statistics(x_train.mean(0), x_train.std(0).clamp_min(1e-6))
    optimizer = torch.optim.AdamW(heads.parameters(), lr=lr, weight_decay=0.01)
    generator = torch.Generator().manual_seed(seed)
    best = [np.inf] * heads.layers
    best_metrics: list[dict[str, float]] = [{} for _ in range(heads.layers)]
    best_state = copy.deepcopy(heads.state_dict())
    for _ in tqdm(range(epochs), desc="heads", disable=not progress):
        heads.train()
        for idx in torch.randperm(len(x_train), generator=generator).split(batch_size):
            logits = heads(x_train[idx])  # [b, L, C]
            # The heads share nothing, so the sum of their losses trains each one on its own.
            loss = sum(
                task_loss(logits[:, layer], y_train[idx], task.regression, task.multi_label)
                for layer in range(heads.layers)
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        heads.eval()
        with torch.no_grad():
            val_logits = heads(x_val)
        for layer in range(heads.layers):
            # Kept by validation loss, not accuracy: the heads' distributions are distillation targets, so their
            # confidence matters, and accuracy ties would keep the earliest, least confident epoch.
            val_loss = task_loss(val_logits[:, layer], y_val, task.regression, task.multi_label).item()
            if val_loss < best[layer]:
                best[layer] = val_loss
                best_metrics[layer] = compute_metrics(task, val_logits[:, layer].numpy(), y_val.numpy())
                for name, value in heads.state_dict().items():
                    best_state[name][layer] = value[layer]
    heads.load_state_dict(best_state)
    for layer, metrics in enumerate(best_metrics, start=1):
        log(f"  layer {layer}: " + ", ".join(f"{k} {100 * v:.2f}" for k, v in metrics.items() if k != "score"))
    return heads, best_metrics


# Heads saved without this mark were trained on raw vectors (before standardisation) and are retrained on use.
STANDARDIZED = "inputs_standardized"


def heads_info(metrics: list[dict[str, float]], task: Task, **extra: Any) -> dict[str, Any]:
    """What `pseudo_heads.json` records beside the heads: the task and its label names in output order (checked
    when the heads load with their teacher), each head's validation metrics."""
    return {
        "task": task.name,
        "labels": list(label_names(task)),
        "main_metric": task.main_metric,
        "layer_metrics": metrics,
        STANDARDIZED: True,
        **extra,
    }
