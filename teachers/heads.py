"""Training the teacher's pseudo classifiers with its body frozen.

Efficient by construction: one frozen teacher pass stores every layer's sentence vector for the training and
validation splits, then all heads train together on those stored vectors for several epochs (cheap matrix
products, no transformer in the loop). Each head keeps its best epoch on validation, independently of the others.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from datasets import DatasetDict
from tqdm.auto import tqdm

from xkd.data import Collator, encode, make_loader
from xkd.losses import task_loss
from xkd.metrics import compute_metrics
from xkd.pseudo_heads import PseudoHeads
from xkd.tasks import Task

from .hf_encoder import HFEncoderClassifier


@torch.no_grad()
def layer_vectors(
    model: HFEncoderClassifier, split, collator: Collator, batch_size: int = 128, progress: bool = True, desc: str = ""
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every layer's sentence vector [N, L, D] (float32, CPU) and the labels [N], from one frozen pass."""
    device = next(model.parameters()).device
    model.eval()
    vectors, labels = [], []
    for batch in tqdm(make_loader(split, collator, batch_size, shuffle=False), desc=desc, disable=not progress):
        inputs = {k: v.to(device) for k, v in batch["teacher"].items()}
        vectors.append(model(inputs).layer_vectors.float().cpu())
        labels.append(batch["labels"])
    return torch.cat(vectors), torch.cat(labels)


def train_heads(
    teacher: HFEncoderClassifier,
    task: Task,
    raw_splits: DatasetDict,
    max_length: int,
    kind: str = "linear",
    epochs: int = 10,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 42,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> tuple[PseudoHeads, list[dict[str, float]]]:
    """Train one head per teacher layer on gold labels; returns the heads and each head's validation metrics."""
    tokenizers = {"teacher": teacher.tokenizer}
    collator = Collator(tokenizers)
    val_name = task.validation_splits[0]
    stored = {
        name: layer_vectors(
            teacher, encode(raw_splits[name], task, tokenizers, max_length), collator, progress=progress, desc=name
        )
        for name in ("train", val_name)
    }
    x_train, y_train = stored["train"]
    x_val, y_val = stored[val_name]
    torch.manual_seed(seed)
    heads = PseudoHeads(teacher.num_layers, teacher.layer_width, task.output_size, kind)
    optimizer = torch.optim.AdamW(heads.parameters(), lr=lr, weight_decay=0.01)
    generator = torch.Generator().manual_seed(seed)
    best = [-np.inf] * heads.layers
    best_metrics: list[dict[str, float]] = [{} for _ in range(heads.layers)]
    best_state = copy.deepcopy(heads.state_dict())
    for _ in tqdm(range(epochs), desc="heads", disable=not progress):
        heads.train()
        for idx in torch.randperm(len(x_train), generator=generator).split(batch_size):
            logits = heads(x_train[idx])  # [b, L, C]
            # The heads share nothing, so the sum of their losses trains each one on its own.
            loss = sum(task_loss(logits[:, layer], y_train[idx], task.regression) for layer in range(heads.layers))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        heads.eval()
        with torch.no_grad():
            val_logits = heads(x_val).numpy()
        for layer in range(heads.layers):
            metrics = compute_metrics(task, val_logits[:, layer], y_val.numpy())
            if metrics[task.main_metric] > best[layer]:
                best[layer], best_metrics[layer] = metrics[task.main_metric], metrics
                for name, value in heads.state_dict().items():
                    best_state[name][layer] = value[layer]
    heads.load_state_dict(best_state)
    for layer, metrics in enumerate(best_metrics, start=1):
        log(f"  layer {layer}: " + ", ".join(f"{k} {100 * v:.2f}" for k, v in metrics.items() if k != "score"))
    return heads, best_metrics


def heads_info(metrics: list[dict[str, float]], task: Task, **extra: Any) -> dict[str, Any]:
    return {"task": task.name, "main_metric": task.main_metric, "layer_metrics": metrics, **extra}
