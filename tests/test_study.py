"""`xkd study` and `xkd report` on a tiny grid: sharing, resuming, statistics, cost columns, errors."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from click.testing import Result
from scipy import stats
from tiny import run, save_tiny, write_task_dir

from xkd.pseudo_heads import PseudoHeads
from xkd.studies import run_lock
from xkd.studies.results import confidence_interval
from xkd.training import Checkpoints


def study_file(tmp_path: Path, teacher: Path, data: Path, extra: str = "", top: str = "") -> Path:
    path = tmp_path / "study.toml"
    path.write_text(
        f"""
name = "tiny"
seeds = [1, 2]
{top}

[base]
task = "mr"
teacher = "{teacher}"
data_dir = "{data}"
epochs = 2
batch_size = 16
max_length = 16
teacher_epochs = 1
heads_epochs = 2
latency = false
augment = "none"

[students.bert1]
student = "bert-k"
student_layers = 1

[students.cnn]
student = "cnn"
student_layers = 1
student_options = {{ embedding_dim = 16, channels = 8 }}

[methods.none]
method = "none"

[methods.takd]
method = "kd"
assistant_layers = [2]

[methods.cg]
method = "universal"
method_options = {{ mode = "cg" }}
{extra}
"""
    )
    return path


def test_ci_is_students_t():
    mean, sd, half = confidence_interval([78.0, 79.0, 80.5])
    assert mean == pytest.approx(79.1666666)
    assert sd == pytest.approx(1.2583057)
    assert half == pytest.approx(stats.t.ppf(0.975, 2) * 1.2583057 / math.sqrt(3))
    assert math.isnan(confidence_interval([1.0])[2])


@dataclass
class FinishedStudy:
    """The tiny grid run once for the tests below: 12 runs and 2 TAKD assistants, finished, every run's
    checkpoints kept (so one can be turned back into an interrupted run), and what the commands said on the way."""

    config: Path
    out: Path
    cache: Path
    root: Path
    outputs: dict[str, Result]
    part_report: str

    def run(self, monkeypatch, *args: str) -> Result:
        """`xkd study` on this study again, with its teacher cache."""
        monkeypatch.setenv("XKD_CACHE_DIR", str(self.cache))
        return run("study", str(self.config), "--output-dir", str(self.out), "--no-progress", *args)

    def rows(self) -> list[dict[str, str]]:
        return list(csv.DictReader((self.out / "results" / "runs.csv").open()))


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory) -> FinishedStudy:
    root = tmp_path_factory.mktemp("finished-study")
    outputs = {}
    with pytest.MonkeyPatch.context() as mp:
        cache = root / "xkd-cache"
        mp.setenv("XKD_CACHE_DIR", str(cache))
        mp.chdir(root)
        mp.setattr(Checkpoints, "discard", classmethod(lambda cls, run_dir: None))
        teacher = save_tiny(root / "encoder", layers=4, bare=True)  # needs the shared fine-tune
        config, out = study_file(root, teacher, write_task_dir(root / "data")), root / "study"
        outputs["dry"] = run("study", str(config), "--output-dir", str(out), "--dry-run")
        outputs["part"] = run("study", str(config), "--output-dir", str(out), "--no-progress", "--only",
                              "student=cnn", "--only", "method=takd", "--only", "seed=1")  # fmt: skip
        part_report = (out / "report.md").read_text() if (out / "report.md").is_file() else ""
        outputs["bad"] = run("study", str(config), "--output-dir", str(out), "--only", "student=lstm")
        outputs["first"] = run("study", str(config), "--output-dir", str(out), "--no-progress")
    assert outputs["first"].exit_code == 0, outputs["first"].output
    return FinishedStudy(config, out, cache, root, outputs, part_report)


def test_a_dry_run_lists_every_run_and_assistant_as_pending(finished_study):
    dry = finished_study.outputs["dry"]
    assert dry.exit_code == 0, dry.output
    assert "12 runs, 2 assistants" in dry.output and dry.output.count("pending") == 14


def test_only_runs_part_of_the_grid_and_names_what_the_study_has(finished_study):
    part, bad, out = finished_study.outputs["part"], finished_study.outputs["bad"], finished_study.out
    assert part.exit_code == 0, part.output
    assert "(selected: 2)" in part.output and (out / "runs" / "assistants" / "ta2--s1" / "summary.json").is_file()
    assert "| takd | 1/2 |" in finished_study.part_report  # the report covers the whole plan
    assert bad.exit_code == 2 and "no such student in the study; it has bert1, cnn" in bad.output


def test_one_teacher_fine_tune_serves_the_grid_and_every_run_names_it(finished_study):
    out = finished_study.out
    study = json.loads((out / "study.json").read_text())
    assert [a["id"] for a in study["assistants"]] == ["ta2--s1", "ta2--s2"]
    finetuned = study["teachers"][""]["path"]
    assert len([p for p in (finished_study.cache / "teachers").iterdir() if p.is_dir()]) == 1  # (and its lock)
    for entry in study["runs"]:
        config_json = json.loads((Path(entry["dir"]) / "config.json").read_text())
        if entry["group"]["method"] == "takd":
            assert config_json["teacher"] == str(out / "runs" / "assistants" / f"ta2--s{entry['seed']}" / "student")
        else:
            assert config_json["teacher"] == finetuned and config_json["finetune_teacher"] == "never"
        assert config_json["seed"] == entry["seed"]


def test_an_assistant_is_shared_by_the_students_and_charged_to_each_takd_run(finished_study):
    out, rows = finished_study.out, finished_study.rows()
    assert len(rows) == 12 and all(r["status"] == "finished" for r in rows)
    ta = json.loads((out / "runs" / "assistants" / "ta2--s1" / "summary.json").read_text())
    takd = next(r for r in rows if r["student"] == "cnn" and r["method"] == "takd" and r["seed"] == "1")
    own = json.loads((out / "runs" / takd["id"] / "summary.json").read_text())
    assert float(takd["total_flops"]) == pytest.approx(own["compute"]["total_flops"] + ta["compute"]["total_flops"])
    assert float(takd["wall_seconds"]) == pytest.approx(own["wall_seconds"] + ta["wall_seconds"])
    none = next(r for r in rows if r["student"] == "cnn" and r["method"] == "none")
    assert float(none["teacher_forward_examples"]) == 0


def test_groups_are_the_seeds_mean_and_interval_with_differences_paired_by_seed(finished_study):
    out, rows = finished_study.out, finished_study.rows()
    groups = json.loads((out / "results" / "groups.json").read_text())
    assert len(groups) == 6 and all(g["n"] == 2 for g in groups)
    group = next(g for g in groups if g["student"] == "bert1" and g["method"] == "cg")
    values = [float(r["test accuracy"]) for r in rows if r["student"] == "bert1" and r["method"] == "cg"]
    assert group["test accuracy"]["values"] == pytest.approx(values)
    assert group["test accuracy"]["ci95"] == pytest.approx(confidence_interval(values)[2], nan_ok=True)
    by_seed = {(r["method"], r["seed"]): float(r["test accuracy"]) for r in rows if r["student"] == "bert1"}
    paired = [by_seed[("cg", s)] - by_seed[("none", s)] for s in ("1", "2")]
    assert group["test accuracy"]["delta"]["values"] == pytest.approx(paired)
    assert "delta" not in next(g for g in groups if g["method"] == "none")["test accuracy"]


def test_the_study_report_has_its_tables_and_plots(finished_study):
    out = finished_study.out
    report = (out / "report.md").read_text()
    assert "difference to none, paired by seed" in report
    assert "## bert1" in report and "## cnn" in report and "| takd | 2 |" in report
    for plot in ("accuracy_test_accuracy.png", "accuracy_vs_compute.png", "learning_curves.png", "teacher_heads.png"):
        assert (out / "plots" / plot).stat().st_size > 1000
    assert list((out / "plots").glob("attention_bert1*cg*universal.png"))


def test_a_rerun_skips_finished_runs_resumes_interrupted_ones_and_restarts_failed_ones(finished_study, monkeypatch):
    out = finished_study.out
    summaries = {p: p.stat().st_mtime_ns for p in out.glob("runs/**/summary.json")}
    interrupted = out / "runs" / "bert1--none--s2"
    (interrupted / "summary.json").unlink()
    checkpoints = sorted((interrupted / "checkpoints").glob("step-*.pt"), key=lambda p: int(p.stem[5:]))
    checkpoints[-1].unlink()  # the last epoch's checkpoint: the run now stops after epoch 1
    (interrupted / "metrics.jsonl").write_text((interrupted / "metrics.jsonl").read_text().splitlines()[0] + "\n")
    failed = out / "runs" / "cnn--none--s1"
    shutil.rmtree(failed)
    again = finished_study.run(monkeypatch)
    assert again.exit_code == 0, again.output
    assert "12 finished, 1 to resume" in again.output
    assert "bert1--none--s2: resuming" in again.output and "cnn--none--s1: starting" in again.output
    unchanged = [p for p, t in summaries.items() if p.exists() and p.stat().st_mtime_ns == t]
    assert len(unchanged) == len(summaries) - 2
    assert len((interrupted / "metrics.jsonl").read_text().splitlines()) == 2


def test_a_second_study_sharing_the_runs_directory_trains_nothing(finished_study, monkeypatch):
    out, root = finished_study.out, finished_study.root
    other = root / "other.toml"
    text = finished_study.config.read_text()
    other.write_text(text.replace('name = "tiny"', f'name = "other"\nruns_dir = "{out / "runs"}"'))
    monkeypatch.setenv("XKD_CACHE_DIR", str(finished_study.cache))
    shared = run("study", str(other), "--output-dir", str(root / "other"), "--no-progress")
    assert shared.exit_code == 0, shared.output
    assert "14 finished" in shared.output and "starting" not in shared.output
    assert (root / "other" / "report.md").is_file()


def test_runs_that_read_pseudo_heads_retrained_since_are_refused(finished_study, monkeypatch):
    cg_run = json.loads((finished_study.out / "runs" / "bert1--cg--s1" / "summary.json").read_text())
    weights = Path(cg_run["teacher"]["heads"]) / "pseudo_heads.safetensors"
    assert cg_run["teacher"]["heads_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    original = weights.read_bytes()
    heads = PseudoHeads.load(weights.parent)
    with torch.no_grad():
        heads.bias.add_(1.0)
    heads.save(weights.parent, **PseudoHeads.info(weights.parent))
    try:
        retrained = finished_study.run(monkeypatch)
    finally:
        weights.write_bytes(original)
    assert retrained.exit_code == 2 and "pseudo heads were retrained since" in retrained.output
    assert "--cg--" in retrained.output and "--none--" not in retrained.output


def test_runs_recorded_before_a_config_key_existed_count_it_at_its_default(finished_study, monkeypatch):
    for saved in (finished_study.out / "runs").rglob("config.json"):
        if (saved.parent / "summary.json").is_file():
            values = json.loads(saved.read_text())
            values.pop("eval_batch_size", None), values.pop("heads_lr", None)
            saved.write_text(json.dumps(values))
    older = finished_study.run(monkeypatch)
    assert older.exit_code == 0 and "starting" not in older.output, older.output


def test_a_finished_run_is_never_reused_for_another_config(finished_study, monkeypatch):
    config = finished_study.config
    original = config.read_text()
    config.write_text(original.replace("epochs = 2", "epochs = 3"))
    try:
        changed = finished_study.run(monkeypatch)
    finally:
        config.write_text(original)
    assert changed.exit_code == 2 and "another config" in changed.output and "epochs: 2 -> 3" in changed.output


def test_the_report_regenerates_from_the_files_alone(finished_study):
    (finished_study.out / "report.md").unlink()
    again = run("report", str(finished_study.out))
    assert again.exit_code == 0 and (finished_study.out / "report.md").is_file()


def test_run_report_markdown(tmp_path, task_dir):
    teacher = save_tiny(tmp_path / "teacher", layers=2)
    out = tmp_path / "run"
    args = ["distill", "--teacher", str(teacher), "--data-dir", str(task_dir), "--method", "kd"]
    result = run(
        *args, "--epochs", "1", "--max-length", "16", "--no-progress", "--no-latency", "--output-dir", str(out)
    )
    assert result.exit_code == 0, result.output
    report = run("report", str(out))
    assert report.exit_code == 0, report.output
    text = (out / "report.md").read_text()
    assert "validation accuracy (%)" in text and "## Per epoch" in text and "FLOPs" in text


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("[extra]\nseed = 3", "unknown study key 'extra'"),
        ("[grid]\nlr = 0.1", "must be a non-empty list"),
        ("[grid]\nepochz = [1, 2]", "unknown config key 'epochz'"),
        ("[methods.bad]\nmethod = 'kd'\nseed = 4", "decides per run"),
        ("[methods.bad]\nmethod = 'kdd'", "run bert1 / bad"),
        ("[methods.bad]\nmethod = 'kd'\nalpha = 2.0", "alpha must lie in [0, 1]"),
        ("[students.bad]\nstudent = 'cnn'\nstudent_options = { vectors = '${XKD_UNSET_FOR_TEST}' }", "not set"),
    ],
)
def test_study_file_errors(tmp_path, task_dir, extra, message):
    teacher = save_tiny(tmp_path / "teacher", layers=2)
    config = study_file(tmp_path, teacher, task_dir, extra)
    result = run("study", str(config), "--output-dir", str(tmp_path / "out"))
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()  # nothing started


def test_failed_run_does_not_stop_the_study(tmp_path, task_dir):
    teacher = save_tiny(tmp_path / "teacher", layers=2)
    config = tmp_path / "s.json"
    config.write_text(
        json.dumps(
            {
                "seeds": [1],
                "base": {
                    "teacher": str(teacher),
                    "data_dir": str(task_dir),
                    "epochs": 1,
                    "max_length": 16,
                    "latency": False,
                    "student": "bert-k",
                    "augment": "none",
                },
                "students": {"ok": {"student_layers": 1}, "deep": {"student_layers": 5}},
                "methods": {"kd": {"method": "kd"}},
            }
        )
    )
    # A run another process holds (its lock) is left to that process.
    with run_lock(tmp_path / "out" / "runs" / "ok--kd--s1") as locked:
        assert locked
        result = run("study", str(config), "--output-dir", str(tmp_path / "out"), "--no-progress")
    assert "ok--kd--s1: skipped, another process is running it" in result.output
    assert "1 run(s) are still running in other processes" in result.output
    assert not (tmp_path / "out" / "runs" / "ok--kd--s1" / "summary.json").exists()
    result = run("study", str(config), "--output-dir", str(tmp_path / "out"), "--no-progress")
    assert result.exit_code == 1
    assert "1 of 2 runs failed (first: deep--kd--s1" in result.output
    assert (tmp_path / "out" / "runs" / "ok--kd--s1" / "summary.json").is_file()
    error = (tmp_path / "out" / "runs" / "deep--kd--s1" / "error.txt").read_text()
    assert error.startswith("--student-layers is 5, above the limit of 2 (BERT-k copies its layers from the teacher")


RECIPES = Path(__file__).resolve().parents[1] / "recipes"
# recipe -> (runs, one run directory the dry run lists)
RECIPE_RUNS = {
    "mr-ta-study.toml": (45, "studies/mr-runs/bert2--none--s42"),
    "mr-methods.toml": (66, "studies/mr-runs/bert2--none--s42"),
    "mr-head-norm.toml": (9, "studies/mr-runs/bert2--none--s42"),
    "mr-transfer.toml": (81, "studies/mr-runs/bert2--universal-tang5-e1--s2"),
    "mr-transfer-cnn.toml": (48, "studies/mr-runs/cnn--universal-tang5-lr5e-4--s2"),
    "mr-mpnet.toml": (30, "studies/mr-mpnet-runs/cnn--universal-tang5-lr5e-4--s2"),
    "mr-ensemble.toml": (12, "studies/mr-ensemble-runs/bilstm--universal--s2"),
    "static.toml": (30, "studies/static-runs/static--universal-tang--s2"),
    "static-amazon.toml": (30, "studies/static-amazon-runs/bilstm-teacher--universal-tang--s2"),
    "vectors.toml": (30, "studies/vectors-runs/static-base-teacher--kd--s2"),
    "vectors-amazon.toml": (30, "studies/vectors-amazon-runs/cnn-frozen--kd--s1"),
}


def test_every_recipe_is_checked():
    assert sorted(p.name for p in RECIPES.glob("*.toml")) == sorted(RECIPE_RUNS)


@pytest.mark.parametrize("recipe", sorted(RECIPE_RUNS))
def test_recipes_are_valid_studies(recipe, monkeypatch, tmp_path):
    monkeypatch.setenv("XKD_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MPNET_DIR", str(save_tiny(tmp_path / "mpnet", kind="mpnet", bare=True)))
    monkeypatch.setenv("MINILM_MR", str(save_tiny(tmp_path / "minilm-mr")))  # fine-tuned teachers (the ensemble)
    monkeypatch.setenv("MPNET_MR", str(save_tiny(tmp_path / "mpnet-mr", kind="mpnet")))
    (tmp_path / "glove").mkdir()
    (tmp_path / "glove" / "glove.6B.50d.top60k.txt").write_text("good 0.1 0.2\n")  # transfer recipes check it
    result = run("study", str(RECIPES / recipe), "--dry-run")
    assert result.exit_code == 0, result.output
    runs, listed = RECIPE_RUNS[recipe]
    assert f"{runs} runs" in result.output and listed in result.output


def test_unknown_baseline(tmp_path, task_dir):
    teacher = save_tiny(tmp_path / "teacher", layers=2)
    config = study_file(tmp_path, teacher, task_dir, top='baseline = "nokd"')
    result = run("study", str(config), "--dry-run")
    assert result.exit_code == 2 and "baseline 'nokd'" in result.output and "[methods.NAME]" in result.output


def test_method_limited_to_some_students(tmp_path, task_dir):
    teacher = save_tiny(tmp_path / "teacher", layers=2)
    extra = '[methods.attention]\nmethod = "aguilar"\nstudents = ["bert1"]'
    result = run("study", str(study_file(tmp_path, teacher, task_dir, extra)), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "14 runs" in result.output  # 2 students x 3 methods x 2 seeds, + aguilar for bert1 only
    assert "bert1--attention--s1" in result.output and "cnn--attention" not in result.output
    bad = extra.replace('"bert1"', '"bert"')
    result = run("study", str(study_file(tmp_path, teacher, task_dir, bad)), "--dry-run")
    assert result.exit_code == 2 and "names 'bert', which is not a [students.NAME] section" in result.output


def test_a_transfer_set_shared_by_runs_is_labelled_once_for_all_their_methods(tmp_path, task_dir):
    teacher = save_tiny(tmp_path / "teacher", layers=2)
    extra = tmp_path / "extra.txt"
    extra.write_text(
        "\n".join(f"the film {'really ' * (i % 5)}was {'good' if i % 2 else 'dull'} {i}" for i in range(30))
    )
    config = tmp_path / "transfer.toml"
    config.write_text(
        f"""
seeds = [1]
[base]
task = "mr"
teacher = "{teacher}"
data_dir = "{task_dir}"
epochs = 1
batch_size = 16
max_length = 16
latency = false
student = "bert-k"
student_layers = 1
transfer = ["{extra}"]
[methods.kd]
method = "kd"
[methods.pkd]
method = "pkd"
"""
    )
    result = run("study", str(config), "--output-dir", str(tmp_path / "out"), "--no-progress")
    assert result.exit_code == 0, result.output
    assert "transfer set for 2 run(s): labelled once for kd, pkd" in result.output
    assert result.output.count("teacher cache: one teacher pass over transfer") == 1
    assert "building it again" not in result.output
    for name in ("kd", "pkd"):
        summary = json.loads((tmp_path / "out" / "runs" / f"{name}--s1" / "summary.json").read_text())
        assert summary["data"]["transfer"] == 30


def test_report_intervals_stay_within_what_a_metric_can_be_and_csv_has_no_float_noise(tmp_path):
    from xkd.studies.report import _cell
    from xkd.studies.results import _csv

    wide = {"mean": 54.5, "sd": 14.5, "ci95": 36.02, "values": [40.0, 54.5, 69.0]}
    assert _cell(wide, metric="validation accuracy") == "54.50 ± 14.50 [18.48, 90.52]"
    assert _cell({**wide, "mean": 80.0}, metric="validation accuracy").endswith("[43.98, 100.00]")
    assert _cell({**wide, "mean": 10.0}, metric="validation accuracy").endswith("[0.00, 46.02]")
    assert _cell({**wide, "mean": 10.0}, metric="validation matthews").endswith("[-26.02, 46.02]")
    assert _cell({**wide, "mean": -80.0}, "+").endswith("[-100.00, -43.98]")
    assert _csv([{"a": 100 * 0.545, "b": "x"}], ["a", "b"]).splitlines()[1] == "54.5,x"
