"""xkd's static student against model2vec's own pipeline, in one run: test accuracy and texts/s on one CPU thread.

    OMP_NUM_THREADS=1 python benchmarks/static_vs_model2vec.py --task mr
    OMP_NUM_THREADS=1 python benchmarks/static_vs_model2vec.py --variants model2vec-finetuned,xkd-kd --seeds 42
    OMP_NUM_THREADS=1 python benchmarks/static_vs_model2vec.py --retime   # the speeds again, on an idle machine

model2vec's side is model2vec's code end to end: `model2vec.distill` (one forward pass per vocabulary token, PCA to
256, its Zipf/SIF weights) from the fine-tuned teacher and from the base encoder, then
`StaticModelForClassification` fitted on the gold labels (its defaults, validation on the task's validation split),
then the `StaticModelPipeline` it makes. xkd's side is `xkd.distill` with the static student (its defaults:
teacher-distilled vectors, 2 x 256 dense layers): KD on gold, and KD or Universal-KD on gold + tang x20. Every run
and seed learns from the one teacher the first xkd run fine-tunes (a seed changes the student, not its teacher).

Speed is texts per second through each side's own inference path, tokenization included: model2vec's pipeline
`predict`, and xkd's `Predictor` (PyTorch); the xkd student is also timed exported to model2vec's runtime
(`xkd export --model2vec`, the same computation). Batches of 256 of the test texts repeated to `--speed-texts`,
one thread, the median of 3 passes.

model2vec's `distill` extra pins transformers < 5.4 (xkd needs newer); its distillation code runs on xkd's
transformers when its one missing dependency is installed without the pin:
`pip install 'model2vec>=0.10' 'skeletoken>=0.6,<0.7' pydantic protobuf`.

Writes `benchmarks/results/static-vs-model2vec.json` (the issue's headline keys: the teacher's test accuracy, the best
model2vec variant and the best xkd variant, in percent; then every run's row) and a Markdown table beside it.
Finished runs are kept in the JSON: a rerun skips them (`--fresh` starts over).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch

import xkd
from xkd.data import load_splits
from xkd.tasks import get_task, label_names

RESULTS = Path(__file__).resolve().parent / "results"
BASE = "sentence-transformers/all-MiniLM-L6-v2"
GLOVE = "glove/glove.6B.50d.top60k.txt"
M2V_DIMS = 256  # model2vec's default PCA width, and xkd's vectors_dim
XKD_VARIANTS = {  # name: xkd.distill options beyond the task, teacher, student and seed
    "xkd-kd": {"method": "kd", "epochs": 5, "augment": "none"},  # gold labels only, as model2vec's classifier
    "xkd-kd-tang20": {"method": "kd", "augment": "tang", "augment_factor": 20, "transfer_dtype": "float16"},
    "xkd-universal-tang20": {
        "method": "universal", "augment": "tang", "augment_factor": 20, "transfer_dtype": "float16",
    },
}  # fmt: skip
M2V_VARIANTS = {"model2vec-finetuned": "finetuned", "model2vec-base": "base"}
VARIANTS = (*M2V_VARIANTS, *XKD_VARIANTS)


def texts_per_second(predict, texts: list[str], batch_size: int = 256, passes: int = 3) -> float:
    """Texts/s of `predict(batch)` over `texts` in batches, the median of `passes` timed passes after a warm-up."""
    predict(texts[:batch_size])
    rates = []
    for _ in range(passes):
        start = time.perf_counter()
        for i in range(0, len(texts), batch_size):
            predict(texts[i : i + batch_size])
        rates.append(len(texts) / (time.perf_counter() - start))
    return statistics.median(rates)


def repeated(test_texts: list[str], count: int) -> list[str]:
    return (test_texts * (count // len(test_texts) + 1))[:count]


def split_texts(raw, spec, split: str) -> tuple[list[str], list[int]]:
    column = spec.text_columns[0]
    return list(raw[split][column]), [int(y) for y in raw[split]["labels"]]


def run_model2vec(source: str, spec, raw, seed: int, speed: list[str], out: Path) -> dict[str, Any]:
    """model2vec's pipeline: distill `source`, fit its classifier on the gold labels, score and time it; the
    pipeline is saved to `out` (`--retime` times it again)."""
    from model2vec.distill import distill
    from model2vec.train import StaticModelForClassification

    names = label_names(spec)
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = (
        split_texts(raw, spec, s) for s in ("train", "validation", "test")
    )
    start = time.perf_counter()
    static = distill(source, pca_dims=M2V_DIMS)
    distill_seconds = time.perf_counter() - start
    classifier = StaticModelForClassification.from_static_model(model=static)
    start = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):  # its trainer draws a bar per epoch: keep the log readable
        classifier.fit(
            x_train,
            [names[y] for y in y_train],
            X_val=x_val,
            y_val=[names[y] for y in y_val],
            random_seed=seed,
            device="cpu",
        )
    fit_seconds = time.perf_counter() - start
    pipeline = classifier.to_pipeline()
    pipeline.save_pretrained(str(out))

    def predict(batch: list[str]) -> np.ndarray:
        return pipeline.predict(batch, use_multiprocessing=False)

    def accuracy(texts: list[str], labels: list[int]) -> float:
        return float(np.mean([p == names[y] for p, y in zip(predict(texts), labels, strict=True)]))

    return {
        "validation_accuracy": 100 * accuracy(x_val, y_val),
        "test_accuracy": 100 * accuracy(x_test, y_test),
        **model2vec_speed(str(out), speed),  # timed as --retime times it: the saved pipeline, reloaded
        "distill_seconds": round(distill_seconds, 1),
        "train_seconds": round(fit_seconds, 1),
        "model_dir": str(out),
    }


def run_xkd(name: str, task: str, data_dir: str | None, teacher: str, seed: int, runs: Path, glove: str, speed):
    """xkd's static student with the variant's options; scored from its summary, timed through Predictor."""
    options = dict(XKD_VARIANTS[name])
    if options.get("augment") == "tang":
        options["augment_options"] = {"vectors": glove}
    data = {"data_dir": data_dir} if data_dir else {}
    out = runs / f"{name}-s{seed}"
    start = time.perf_counter()
    result = xkd.distill(
        task=task, teacher=teacher, student="static", seed=seed, output_dir=str(out), overwrite=True,
        progress=False, latency=False, log=None, **data, **options,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    row = {
        "validation_accuracy": 100 * result.summary["validation"]["validation"]["accuracy"],
        "test_accuracy": 100 * result.summary["test"]["test"]["accuracy"],
        "train_seconds": round(seconds, 1),
        "teacher": result.summary["teacher"],
        "model_dir": str(result.run_dir / "student"),
    }
    return {**row, **xkd_speeds(row["model_dir"], speed)}


def xkd_speeds(student_dir: str, speed: list[str]) -> dict[str, float]:
    """Texts/s of a saved xkd student through its Predictor and exported to model2vec's runtime."""
    from xkd.model2vec_export import export_model2vec
    from xkd.predict import Predictor

    predictor = Predictor(student_dir, batch_size=256, device="cpu")
    speeds = {"texts_per_second": texts_per_second(lambda batch: predictor(batch), speed)}
    with tempfile.TemporaryDirectory() as scratch:
        export_model2vec(student_dir, Path(scratch) / "m2v")
        exported = model2vec_speed(str(Path(scratch) / "m2v"), speed)["texts_per_second"]
    return {**speeds, "texts_per_second_model2vec_runtime": exported}


def model2vec_speed(pipeline_dir: str, speed: list[str]) -> dict[str, float]:
    """Texts/s of a saved model2vec pipeline through its own `predict`."""
    from model2vec.inference import StaticModelPipeline

    pipeline = StaticModelPipeline.from_pretrained(pipeline_dir)
    return {"texts_per_second": texts_per_second(lambda b: pipeline.predict(b, use_multiprocessing=False), speed)}


def retime_rows(rows: list[dict[str, Any]], speed: list[str]) -> None:
    """Time every saved model again, one after the other (e.g. on an idle machine once the runs are done)."""
    for row in rows:
        timed = model2vec_speed if row["variant"] in M2V_VARIANTS else xkd_speeds
        row.update(timed(row["model_dir"], speed))
        click.echo(f"{row['variant']} seed {row['seed']}: {row['texts_per_second']:,.0f} texts/s")


def summarise(name: str, group: list[dict[str, Any]]) -> dict[str, Any]:
    """One variant over its seeds: mean test accuracy, median speeds."""
    summary = {
        "variant": name,
        "seeds": [r["seed"] for r in group],
        "test_accuracy": round(statistics.mean(r["test_accuracy"] for r in group), 2),
    }
    for key in ("texts_per_second", "texts_per_second_model2vec_runtime"):
        values = [r[key] for r in group if key in r]
        if values:
            summary[key] = round(statistics.median(values))
    return summary


def headline(rows: list[dict[str, Any]], teacher_test: float | None) -> dict[str, Any]:
    """The issue's keys: each family's best variant by mean test accuracy over seeds."""
    by_variant: dict[str, list[dict]] = {}
    for row in rows:
        by_variant.setdefault(row["variant"], []).append(row)
    means = {name: summarise(name, group) for name, group in by_variant.items()}

    def best(prefix: str) -> dict[str, Any] | None:
        family = [m for name, m in means.items() if name.startswith(prefix)]
        return max(family, key=lambda m: m["test_accuracy"], default=None)

    return {
        "teacher_test_accuracy": teacher_test,
        "model2vec": best("model2vec"),
        "xkd_static": best("xkd"),
        "variants": means,
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# xkd static student vs model2vec ({result['task']}, one CPU thread)",
        "",
        f"Teacher (fine-tuned MiniLM-L6) test accuracy: {result['teacher_test_accuracy']}",
        "",
        "| variant | seeds | test accuracy (mean) | texts/s (batch 256, tokenization included) | texts/s, xkd's "
        "student in model2vec's runtime |",
        "|---|---|---|---|---|",
    ]
    for m in result["variants"].values():
        via = m.get("texts_per_second_model2vec_runtime")
        lines.append(
            f"| {m['variant']} | {len(m['seeds'])} | {m['test_accuracy']:.2f} | {m['texts_per_second']:,} | "
            f"{f'{via:,}' if via else '-'} |"
        )
    lines += [
        "",
        "| variant | seed | validation | test | texts/s | via model2vec runtime | train s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        via = r.get("texts_per_second_model2vec_runtime")
        lines.append(
            f"| {r['variant']} | {r['seed']} | {r['validation_accuracy']:.2f} | {r['test_accuracy']:.2f} | "
            f"{r['texts_per_second']:,.0f} | {f'{via:,.0f}' if via else '-'} | {r['train_seconds']} |"
        )
    return "\n".join(lines) + "\n"


def write(out_path: Path, result: dict[str, Any]) -> None:
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=2) + "\n")
    out_path.with_suffix(".md").write_text(markdown(result))


@click.command()
@click.option("--task", default="mr", show_default=True)
@click.option("--data-dir", type=click.Path(), help="The task's split files (a custom task).")
@click.option("--teacher", default=BASE, show_default=True, help="xkd fine-tunes it on the task (cached).")
@click.option("--variants", default=",".join(VARIANTS), show_default=True)
@click.option("--seeds", default="42,1,2", show_default=True)
@click.option("--glove", default=lambda: str(Path(os.environ.get("XKD_DATA_DIR", "data")) / GLOVE),
              help=f"Word vectors for tang's substitutions [default: $XKD_DATA_DIR/{GLOVE}].")  # fmt: skip
@click.option("--speed-texts", type=int, default=10240, show_default=True)
@click.option(
    "--runs-dir", type=click.Path(file_okay=False), default="benchmarks/runs/static-vs-model2vec", show_default=True
)
@click.option(
    "--out", type=click.Path(dir_okay=False), default=str(RESULTS / "static-vs-model2vec.json"), show_default=True
)
@click.option("--fresh", is_flag=True, help="Forget the runs already in --out.")
@click.option("--retime", is_flag=True, help="Train nothing: time every saved model in --out again.")
def main(task, data_dir, teacher, variants, seeds, glove, speed_texts, runs_dir, out, fresh, retime) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread, as the figures say; given back after (a test calls main in-process)
    try:
        benchmark(task, data_dir, teacher, variants, seeds, speed_texts, runs_dir, out, fresh, retime, glove)
    finally:
        torch.set_num_threads(threads)


def benchmark(task, data_dir, teacher, variants, seeds, speed_texts, runs_dir, out, fresh, retime, glove) -> None:
    chosen = [v.strip() for v in variants.split(",") if v.strip()]
    unknown = sorted(set(chosen) - set(VARIANTS))
    if unknown:
        raise click.UsageError(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    spec, raw = load_splits(get_task(task), data_dir)
    speed = repeated(list(raw["test"][spec.text_columns[0]]), speed_texts)
    out_path, runs = Path(out), Path(runs_dir)
    saved = json.loads(out_path.read_text()) if out_path.is_file() and not fresh else {}
    rows: list[dict] = [r for r in saved.get("rows", []) if r.get("task") == task]
    teacher_test, finetuned = saved.get("teacher_test_accuracy"), saved.get("finetuned_teacher")
    if retime:
        retime_rows(rows, speed)
        write(out_path, {"task": task, "finetuned_teacher": finetuned, **headline(rows, teacher_test), "rows": rows})
        return
    # xkd first: its first run fine-tunes (or finds cached) the teacher that model2vec then distils.
    for name in sorted(chosen, key=lambda n: n.startswith("model2vec")):
        for seed in (int(s) for s in seeds.split(",")):
            if any(r["variant"] == name and r["seed"] == seed for r in rows):
                continue
            if name in XKD_VARIANTS:
                # One teacher for every run and seed (the first run's fine-tune, as a study's teacher_seed): a seed
                # changes the student, not the teacher it learns from or model2vec distils.
                row = run_xkd(name, task, data_dir, finetuned or teacher, seed, runs, glove, speed)
                info = row.pop("teacher")
                finetuned = info.get("finetuned_dir") or info.get("path")
                teacher_test = round(100 * info["metrics"]["test"]["accuracy"], 2)
            else:
                if M2V_VARIANTS[name] == "finetuned" and not finetuned:
                    raise click.UsageError("model2vec-finetuned needs the fine-tuned teacher: include an xkd variant")
                source = finetuned if M2V_VARIANTS[name] == "finetuned" else teacher
                row = run_model2vec(source, spec, raw, seed, speed, runs / f"{name}-s{seed}")
            rows.append({"variant": name, "seed": seed, "task": task, **row})
            write(
                out_path, {"task": task, "finetuned_teacher": finetuned, **headline(rows, teacher_test), "rows": rows}
            )
            click.echo(f"{name} seed {seed}: test {row['test_accuracy']:.2f}, {row['texts_per_second']:,.0f} texts/s")
    click.echo(out_path.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
