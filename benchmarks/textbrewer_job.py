"""The same distillation job in xkd and in TextBrewer, each in its own process: wall time and peak memory.

Job: a fine-tuned teacher, a 3-layer BERT student initialised from teacher layers (xkd's uniform init for both),
loss = 0.5 CE + 0.5 KD (τ = 2) + MSE between the [CLS] vectors of mapped layers (student layers 1, 2 <-> teacher
layers 2, 4 of 6: PKD's skip map, unnormalised), AdamW lr 1e-4 with linear warm-up/decay, batch 32, max length 64,
validation every epoch. xkd runs as users run it (`xkd distill`, teacher cache and length buckets on) and also with
both off. TextBrewer (installed by this benchmark into a private directory, never an xkd dependency) runs its
`GeneralDistiller` with an adaptor returning the same [CLS] vectors.

    python benchmarks/textbrewer_job.py --framework textbrewer --teacher DIR --epochs 3
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

DEPS_DIR = Path(__file__).resolve().parent / ".deps"


def ensure_textbrewer() -> None:
    """TextBrewer 0.2.1 and the TensorBoard writer it imports, in benchmarks/.deps (not in xkd's environment)."""
    if not (DEPS_DIR / "textbrewer").is_dir():
        command = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(DEPS_DIR)]
        subprocess.run([*command, "textbrewer==0.2.1.post1", "tensorboardX"], check=True)
    sys.path.insert(0, str(DEPS_DIR))


def peak_rss_mib() -> float:
    """This process's peak resident memory. VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork and exec, so
    a job launched by a large parent would report the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # not Linux: KiB on most systems


def run_xkd(teacher: str, data_dir: str | None, epochs: int, max_steps: int | None, fast: bool, out: Path) -> dict:
    from xkd.config import DistillConfig
    from xkd.distillation import run_distill

    cfg = DistillConfig(
        teacher=teacher,
        finetune_teacher="never",
        student_layers=3,
        method="pkd",
        method_options={"normalize": False, "beta": 1.0},
        epochs=epochs,
        max_steps=max_steps,
        data_dir=data_dir,
        output_dir=str(out),
        overwrite=True,
        latency=False,
        progress=False,
        teacher_cache="auto" if fast else "off",
        length_buckets=fast,
    )
    summary = run_distill(cfg, log=lambda m: None)
    return {"validation_accuracy": summary["validation"]["validation"]["accuracy"], "steps": summary["steps"]}


def run_textbrewer(teacher: str, data_dir: str | None, epochs: int, max_steps: int | None, out: Path) -> dict:
    ensure_textbrewer()
    import torch
    from textbrewer import DistillationConfig, GeneralDistiller, TrainingConfig
    from transformers import get_linear_schedule_with_warmup

    from xkd.data import load_splits
    from xkd.evaluation import evaluate
    from xkd.students import build_student
    from xkd.tasks import get_task
    from xkd.teachers import load_teacher

    spec, raw = load_splits(get_task("mr"), data_dir)
    t_model = load_teacher(teacher, spec)
    s_model = build_student("bert-k", t_model, spec, layers=3)
    tokenizer = t_model.tokenizer

    def collate(rows):
        enc = tokenizer(
            [r["sentence"] for r in rows], truncation=True, max_length=64, padding=True, return_tensors="pt"
        )
        return {**enc, "labels": torch.tensor([r["label"] for r in rows])}

    train = raw["train"].rename_column("labels", "label") if "labels" in raw["train"].column_names else raw["train"]
    loader = torch.utils.data.DataLoader(list(train), batch_size=32, shuffle=True, collate_fn=collate)

    def adaptor(batch, outputs):
        return {
            "logits": outputs.logits,
            "hidden": [h[:, 0] for h in outputs.hidden_states],  # [CLS] of embeddings, layer 1, ...
            "losses": outputs.loss,
        }

    class HF(torch.nn.Module):  # the HF model with hidden states on, as TextBrewer users write it
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, **batch):
            return self.model(**batch, output_hidden_states=True)

    distill_config = DistillationConfig(
        temperature=2.0,
        hard_label_weight=0.5,
        kd_loss_type="ce",
        kd_loss_weight=0.5,
        intermediate_matches=[
            {"layer_T": 2, "layer_S": 1, "feature": "hidden", "loss": "hidden_mse", "weight": 1},
            {"layer_T": 4, "layer_S": 2, "feature": "hidden", "loss": "hidden_mse", "weight": 1},
        ],
    )
    train_config = TrainingConfig(
        device="cpu", output_dir=str(out), log_dir=None, ckpt_frequency=1, ckpt_steps=max_steps
    )
    student, teacher_model = HF(s_model.model), HF(t_model.model).eval()
    distiller = GeneralDistiller(train_config, distill_config, teacher_model, student, adaptor, adaptor)
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-4)
    steps = max_steps or epochs * len(loader)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(0.1 * steps), steps)
    val_loader = _eval_loader(spec, raw, tokenizer)
    scores = []

    def callback(model, step):
        scores.append(evaluate(s_model, val_loader, spec)["accuracy"])

    with distiller:
        distiller.train(
            optimizer, loader, num_epochs=epochs, num_steps=max_steps, scheduler=scheduler, callback=callback,
            max_grad_norm=1.0,
        )  # fmt: skip
    return {"validation_accuracy": max(scores) if scores else None, "steps": steps}


def _eval_loader(spec, raw, tokenizer):
    from xkd.data import Collator, encode, make_loader

    split = encode(raw["validation"], spec, {"student": tokenizer}, 64)
    return make_loader(split, Collator({"student": tokenizer}), 128, shuffle=False)


@click.command()
@click.option("--framework", type=click.Choice(["xkd", "xkd-plain", "textbrewer"]), required=True)
@click.option("--teacher", required=True, help="Fine-tuned teacher directory.")
@click.option("--data-dir", default=None)
@click.option("--epochs", default=3, show_default=True)
@click.option("--max-steps", type=int, default=None, help="Stop early (quick check of the benchmark itself).")
def main(framework: str, teacher: str, data_dir: str | None, epochs: int, max_steps: int | None) -> None:
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        if framework == "textbrewer":
            result = run_textbrewer(teacher, data_dir, epochs, max_steps, Path(tmp))
        else:
            os.environ["XKD_CACHE_DIR"] = str(Path(tmp) / "cache")  # the teacher cache is built inside the timing
            result = run_xkd(teacher, data_dir, epochs, max_steps, framework == "xkd", Path(tmp) / "run")
        result.update(
            framework=framework, wall_seconds=round(time.perf_counter() - start, 2), peak_rss_mib=peak_rss_mib()
        )
    click.echo(json.dumps(result))


if __name__ == "__main__":
    main()
