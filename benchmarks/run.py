"""All speed benchmarks in one run, as ratios against the targets; prints (and writes) JSON and a Markdown table.

    python benchmarks/run.py --teacher TEACHER_DIR --students RUN/student CNN_RUN/student \\
        --cnn-vectors ../shared/data/glove/glove.6B.50d.top60k.txt --out benchmarks/results

1. teacher-cached distillation epoch / student-only epoch (2-layer BERT and CNN students);
2. Universal-KD step / vanilla-KD step, online teacher;
3. xkd / TextBrewer wall time and peak memory on the same job (see `textbrewer_job.py`), each in its own process;
4. student / teacher CPU latency at batch 1 and 32, PyTorch and ONNX Runtime.
Run it on an otherwise idle machine: every figure is a ratio of two timings taken in this one run. `--quick`
shortens every part (a check that the benchmark works, not a measurement).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import click
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cache_ratio import epoch_ratio  # noqa: E402
from latency import latency_rows, markdown  # noqa: E402
from step_time import time_methods  # noqa: E402

TARGETS = {
    "cached_over_student_only": ("<=", 1.10),
    "universal_over_kd": ("<=", 1.05),
    "xkd_over_textbrewer_wall": ("<=", 0.5),
    "cnn_over_teacher_latency_batch_1": ("<=", 1 / 20),
}


def textbrewer_comparison(teacher: str, data_dir: str | None, epochs: int, max_steps: int | None) -> dict:
    out = {}
    for framework in ("xkd", "xkd-plain", "textbrewer"):
        command = [sys.executable, str(Path(__file__).with_name("textbrewer_job.py")), "--framework", framework]
        command += ["--teacher", teacher, "--epochs", str(epochs)]
        command += ["--data-dir", data_dir] if data_dir else []
        command += ["--max-steps", str(max_steps)] if max_steps else []
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode:
            raise click.ClickException(f"{framework} job failed:\n{done.stderr[-2000:]}")
        out[framework] = json.loads(done.stdout.strip().splitlines()[-1])
    out["ratio_wall_xkd_over_textbrewer"] = round(out["xkd"]["wall_seconds"] / out["textbrewer"]["wall_seconds"], 3)
    out["ratio_wall_xkd_plain_over_textbrewer"] = round(
        out["xkd-plain"]["wall_seconds"] / out["textbrewer"]["wall_seconds"], 3
    )
    out["ratio_peak_rss_xkd_over_textbrewer"] = round(out["xkd"]["peak_rss_mib"] / out["textbrewer"]["peak_rss_mib"], 3)
    return out


@click.command()
@click.option("--teacher", required=True, help="Fine-tuned teacher directory with pseudo heads (for universal).")
@click.option("--task", default="mr", show_default=True)
@click.option("--data-dir", default=None, help="Task data directory [default: $XKD_DATA_DIR/<task>].")
@click.option("--students", multiple=True, help="Saved student directories to time for latency (repeatable).")
@click.option("--cnn-vectors", default=None, help="Word vectors for the CNN student of the epoch ratio.")
@click.option("--epochs", default=3, show_default=True, help="Epochs of the TextBrewer comparison job.")
@click.option("--quick", is_flag=True, help="Shorten everything: checks the benchmark runs, measures nothing.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None, help="Also write JSON and MD here.")
def main(teacher, task, data_dir, students, cnn_vectors, epochs, quick, out_dir) -> None:
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    steps = 5 if quick else None
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    result: dict = {"started": started, "threads": torch.get_num_threads(), "quick": quick, "teacher": teacher}

    click.echo("1/4 cached epoch vs student-only epoch", err=True)
    cnn_options = {"vectors": cnn_vectors} if cnn_vectors else {}
    result["epoch"] = {
        "bert-k2": epoch_ratio(teacher, task, data_dir, "bert-k", 2, max_steps=steps),
        "cnn": epoch_ratio(teacher, task, data_dir, "cnn", 2, cnn_options, lr=2e-3, max_steps=steps),
    }
    click.echo("2/4 universal vs vanilla KD step", err=True)
    result["step"] = time_methods(teacher, task, data_dir, ("kd", "universal"), steps=5 if quick else 30)
    click.echo("3/4 xkd vs TextBrewer", err=True)
    result["textbrewer"] = textbrewer_comparison(teacher, data_dir, 1 if quick else epochs, 3 if quick else None)
    click.echo("4/4 latency", err=True)
    result["latency"] = latency_rows(teacher, list(students), task, data_dir, repeats=3 if quick else 20)

    cnn_name = next((n for n in result["latency"]["models"] if "cnn" in n), None)
    measured = {
        "cached_over_student_only": max(r["ratio_cached_to_student_only"] for r in result["epoch"].values()),
        "universal_over_kd": result["step"]["ratio_to_kd"]["universal"],
        "xkd_over_textbrewer_wall": result["textbrewer"]["ratio_wall_xkd_over_textbrewer"],
    }
    if cnn_name:
        models = result["latency"]["models"]
        measured["cnn_over_teacher_latency_batch_1"] = round(
            models[cnn_name]["batch_1_ms"] / models["teacher"]["batch_1_ms"], 4
        )
    result["targets"] = {
        name: {
            "measured": value,
            "target": f"{TARGETS[name][0]} {TARGETS[name][1]:.3g}",
            "met": value <= TARGETS[name][1],
        }
        for name, value in measured.items()
    }
    text = report(result)
    click.echo(json.dumps(result, indent=2))
    click.echo("\n" + text)
    if out_dir:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "benchmarks.json").write_text(json.dumps(result, indent=2) + "\n")
        (Path(out_dir) / "benchmarks.md").write_text(text + "\n")


def report(result: dict) -> str:
    lines = [
        f"# xkd benchmarks ({result['started']}, {result['threads']} threads{', QUICK' if result['quick'] else ''})",
        "",
    ]
    lines += ["| figure | measured | target | met |", "|---|---|---|---|"]
    for name, t in result["targets"].items():
        lines.append(f"| {name.replace('_', ' ')} | {t['measured']} | {t['target']} | {'yes' if t['met'] else 'no'} |")
    lines += [
        "",
        "## Epochs (s)",
        "",
        "| student | student only | cached KD | ratio | cache build (once) |",
        "|---|---|---|---|---|",
    ]
    for name, r in result["epoch"].items():
        e = r["epoch_seconds"]
        lines.append(
            f"| {name} | {e['student_only']:.1f} | {e['cached_kd']:.1f} | {r['ratio_cached_to_student_only']} | "
            f"{r['cache_build_seconds']:.1f} |"
        )
    s = result["step"]["seconds_per_step"]
    lines += ["", f"Step, online teacher: KD {s['kd']:.4f} s, Universal-KD {s['universal']:.4f} s.", ""]
    tb = result["textbrewer"]
    lines += [
        "## Same job in xkd and TextBrewer",
        "",
        "| run | wall (s) | peak RSS (MiB) | best val acc |",
        "|---|---|---|---|",
    ]
    for name in ("xkd", "xkd-plain", "textbrewer"):
        r = tb[name]
        lines.append(f"| {name} | {r['wall_seconds']:.1f} | {r['peak_rss_mib']:.0f} | {r['validation_accuracy']:.4f} |")
    lines += ["", "## Latency", "", markdown(result["latency"])]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
