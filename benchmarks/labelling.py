"""Teacher labelling throughput: xkd's labelling pass (the transfer cache) against plain batched inference.

Both passes run the same teacher over the same texts in the same length-bucketed batches, one after the other in
one process; the plain pass only computes (and keeps nothing), the labelling pass also writes the outputs to the
memory-mapped cache files and records its progress. The ratio says what storing and resumability cost.

    python benchmarks/labelling.py --teacher DIR --texts 20000 [--fields logits] [--dtype float16]
    python benchmarks/labelling.py --teacher DIR --texts-file SET.parquet --device cuda   # a saved transfer set

The teacher runs where `--device` says (default: the GPU when there is one, as `xkd cache build` does).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import click
import torch
from datasets import DatasetDict

from xkd.data import Collator, encode, load_splits, make_loader
from xkd.processes import process_device
from xkd.tasks import get_task
from xkd.teacher_cache import FIELDS, build_cache
from xkd.teachers import load_teacher
from xkd.transfer.augment import augment_texts, resolve_recipe
from xkd.transfer.sets import read_transfer_file, transfer_dataset


def texts_to_label(task_name: str, data_dir: str | None, count: int, texts_file: str | None = None):
    """`count` augmented MR-like texts (tang, from the training split): what a transfer set looks like; or the first
    `count` rows of a saved transfer set (`xkd augment --out`, the xkd cache's `augment/*.parquet`)."""
    if texts_file:
        task = get_task(task_name)
        return task, transfer_dataset(task, read_transfer_file(texts_file, task).head(count))
    task, raw = load_splits(get_task(task_name), data_dir)
    train = raw["train"].select_columns(list(task.text_columns)).to_pandas()
    factor = max(1, -(-count // len(train)))
    _, options = resolve_recipe("tang", {})
    frame = augment_texts(task, train, "tang", options, factor, progress=False).head(count)
    return task, transfer_dataset(task, frame)


@torch.no_grad()
def plain_pass(teacher, loader) -> float:
    device = next(teacher.parameters()).device
    start = time.perf_counter()
    for batch in loader:
        teacher({k: v.to(device) for k, v in batch["teacher"].items()})
    if device.type != "cpu":
        torch.accelerator.synchronize()  # the last batches' kernels count too
    return time.perf_counter() - start


def measure(
    teacher_dir: str,
    task: str,
    data_dir: str | None,
    texts: int,
    fields,
    dtype,
    batch_size: int,
    device: str | None = None,
    texts_file: str | None = None,
) -> dict:
    spec, split = texts_to_label(task, data_dir, texts, texts_file)
    device = torch.device(device) if device else process_device()  # as `xkd cache build` places its teacher
    teacher = load_teacher(teacher_dir, spec).to(device).eval()
    tokenizers = {"teacher": teacher.tokenizer}
    split = encode(split, spec, tokenizers, 64)
    collator = Collator(tokenizers)
    loader = make_loader(split, collator, batch_size, shuffle=False, buckets=True)
    plain_pass(teacher, [next(iter(loader))])  # warm-up
    plain = plain_pass(teacher, loader)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        cache = build_cache(teacher, DatasetDict({"transfer": split}), collator, Path(tmp) / "c", {}, batch_size,
                            progress=False, fields=fields, dtype=dtype)  # fmt: skip
        labelling = time.perf_counter() - start
        stored = cache.size_bytes
    return {
        "teacher": teacher_dir,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else device.type,
        "texts": len(split),
        "batch_size": batch_size,
        "fields": list(fields),
        "dtype": dtype,
        "threads": torch.get_num_threads(),
        "plain_texts_per_second": round(len(split) / plain, 1),
        "labelling_texts_per_second": round(len(split) / labelling, 1),
        "ratio": round(plain / labelling, 3),
        "stored_bytes_per_text": round(stored / len(split), 1),
    }


@click.command()
@click.option("--teacher", "teacher_dir", required=True)
@click.option("--task", default="mr")
@click.option("--data-dir", default=None)
@click.option("--texts", type=int, default=20000, help="How many texts (the first of --texts-file, if given).")
@click.option("--texts-file", type=click.Path(exists=True, dir_okay=False), default=None, help="A saved transfer set.")
@click.option("--device", default=None, help="cpu, cuda, cuda:1 ... [default: cuda when there is one]")
@click.option("--fields", default=",".join(FIELDS), help="Comma-separated outputs to store.")
@click.option("--dtype", type=click.Choice(["float32", "float16"]), default="float32")
@click.option("--batch-size", type=int, default=128)
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Also write the JSON here.")
def main(teacher_dir, task, data_dir, texts, texts_file, device, fields, dtype, batch_size, out) -> None:
    fields = tuple(fields.split(","))
    result = measure(teacher_dir, task, data_dir, texts, fields, dtype, batch_size, device, texts_file)
    click.echo(json.dumps(result, indent=2))
    if out:
        Path(out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
