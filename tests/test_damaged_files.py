"""Damaged files (truncated by a full disk or an interrupted copy, overwritten with garbage).

A model that cannot be loaded ends in one line naming the file and what to do; a cache (teacher outputs, pseudo
heads, a fine-tuned teacher) is rebuilt, the run says why in one line, and its results equal an undamaged run's.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from tiny import QUICK, distill, metrics_lines, run, save_tiny, write_task_dir

from xkd.config import DEFAULTS
from xkd.paths import cache_root
from xkd.teacher_cache import list_caches


def damage(path: Path, how: str) -> None:
    """Truncate `path` to half its size, or overwrite it with garbage bytes."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if how == "truncate" else b"\x00\xffnot what was saved\x93" * 8)


def history(run_dir: Path) -> list:
    """What a run learned, epoch by epoch: training losses (which read the teacher's outputs) and validation."""
    rows = metrics_lines(run_dir)
    return [(row["train"], row["validation"]) for row in rows]


def said(result, fragment: str) -> list[str]:
    return [line for line in result.output.splitlines() if fragment in line]


# -- models: one line, exit code 2 ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """A tiny teacher and three saved students (CNN, BiLSTM, BERT-k), built without training."""
    from xkd.students import build_student
    from xkd.tasks import get_task
    from xkd.teachers import load_teacher

    root = tmp_path_factory.mktemp("models")
    task = get_task("mr")
    teacher_dir = save_tiny(root / "teacher", layers=2)
    teacher = load_teacher(str(teacher_dir), task)
    texts = ["a good film", "a dull plot"]
    students = {
        "cnn": build_student("cnn", teacher, task, texts, layers=1, embedding_dim=8, channels=4),
        "bilstm": build_student("bilstm", teacher, task, texts, layers=1, embedding_dim=8, hidden_size=4),
        "bert-k": build_student("bert-k", teacher, task, texts, layers=1),
    }
    paths = {"teacher": teacher_dir, "data": write_task_dir(root / "data", sizes=(8, 8, 8))}
    for name, student in students.items():
        paths[name] = student.save(root / name, max_length=16)
    return paths


def command(name: str, model: Path, data: Path, out: Path) -> list[str]:
    if name == "eval":
        return ["eval", "--model", str(model), "--task", "mr", "--data-dir", str(data)]
    if name == "distill":
        return [*distill(model, data), *QUICK, "--output-dir", str(out / "run")]
    return ["export", str(model), "--onnx", str(out / "model.onnx")]


@pytest.mark.parametrize(
    "model, file, how, cmd, role",
    [
        ("teacher", "model.safetensors", "truncate", "distill", "teacher"),
        ("teacher", "model.safetensors", "garbage", "eval", "teacher"),
        ("teacher", "tokenizer.json", "truncate", "distill", "teacher"),
        ("teacher", "config.json", "garbage", "eval", "teacher"),
        ("teacher", "config.json", "truncate", "distill", "teacher"),
        ("teacher", "xkd.json", "garbage", "eval", "teacher"),
        ("cnn", "model.safetensors", "truncate", "eval", "student"),
        ("cnn", "student.json", "garbage", "eval", "student"),
        ("cnn", "tokenizer.json", "truncate", "export", "student"),
        ("bilstm", "model.safetensors", "garbage", "export", "student"),
        ("bert-k", "model.safetensors", "truncate", "export", "student"),
        ("bert-k", "tokenizer.json", "garbage", "export", "student"),
        ("bert-k", "config.json", "truncate", "export", "student"),
    ],
)
def test_a_damaged_model_ends_in_one_line_naming_the_file(tmp_path, models, model, file, how, cmd, role):
    copy = shutil.copytree(models[model], tmp_path / model)
    if not (copy / file).is_file():
        (copy / file).write_text("{}")  # (the tiny teacher has no xkd.json of its own)
    damage(copy / file, how)
    result = run(*command(cmd, copy, models["data"], tmp_path))
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.output.strip().splitlines() == [
        f"Error: cannot load {role} '{copy}': {file} is damaged or truncated ({_why(result)}); "
        + ("copy or download it again" if role == "teacher" else "copy it again or distill the student again")
    ]
    assert not (tmp_path / "run").exists()  # a damaged teacher is refused before a run directory is claimed


def _why(result) -> str:
    """The reason in the error line (the library's own words): checked to be one short, non-empty clause."""
    line = result.output.strip()
    why = line[line.index("truncated (") + len("truncated (") : line.rindex("); ")]
    assert why and "\n" not in why and len(why) <= 160
    return why


# -- caches: rebuilt, said in one line, same results -----------------------------------------------------------------


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> dict:
    """An undamaged kd run (its teacher cache built) whose cache directory each case copies, damages and reuses."""
    root = tmp_path_factory.mktemp("baseline")
    teacher, data = save_tiny(root / "teacher", layers=2), write_task_dir(root / "data")
    args = [*distill(teacher, data), "--method", "kd", "--student-layers", "1", *QUICK]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XKD_CACHE_DIR", str(root / "cache"))
        result = run(*args, "--output-dir", str(root / "run"))
    assert result.exit_code == 0, result.output
    return {"args": args, "cache": root / "cache", "history": history(root / "run")}


def truncate_array(cache: Path) -> str:
    damage(cache / "train" / "logits.npy", "truncate")
    return "train/logits.npy is damaged or truncated (mmap length is greater than file size)"


def garbage_array(cache: Path) -> str:
    damage(cache / "validation" / "layer_vectors.npy", "garbage")
    return "validation/layer_vectors.npy is damaged or truncated ("


def missing_array(cache: Path) -> str:
    (cache / "test" / "layer_vectors.npy").unlink()
    return "test/layer_vectors.npy is missing"


def garbage_meta(cache: Path) -> str:
    damage(cache / "meta.json", "garbage")
    return "meta.json is damaged or truncated ("


def truncated_meta(cache: Path) -> str:
    damage(cache / "meta.json", "truncate")
    return "meta.json is damaged or truncated ("


def interrupted(cache: Path, done: int) -> Path:
    """The cache turned back into an interrupted build (`.building`, progress.json) that has `done` batches of
    each split written."""
    meta = json.loads((cache / "meta.json").read_text())
    work = cache.rename(cache.with_name(cache.name + ".building"))
    (work / "meta.json").unlink()
    identity = {"fingerprint": meta["fingerprint"], "fields": meta["fields"], "dtype": meta["dtype"]}
    identity.update(batch=DEFAULTS.eval_batch_size, processes=1)
    record = {"identity": identity, "done": dict.fromkeys(meta["splits"], done), "seconds": 1.0}
    (work / "progress.json").write_text(json.dumps(record))
    return work


def garbage_progress(cache: Path) -> str:
    damage(interrupted(cache, done=1) / "progress.json", "garbage")
    return "progress.json is damaged or truncated ("


def truncated_progress(cache: Path) -> str:
    damage(interrupted(cache, done=1) / "progress.json", "truncate")
    return "progress.json is damaged or truncated ("


def truncated_work_array(cache: Path) -> str:
    damage(interrupted(cache, done=1) / "train" / "layer_vectors.npy", "truncate")
    return "train/layer_vectors.npy is damaged or truncated ("


@pytest.mark.parametrize(
    "damage_it, rebuilt",
    [
        (truncate_array, "rebuilding it"),
        (garbage_array, "rebuilding it"),
        (missing_array, "rebuilding it"),
        (garbage_meta, "rebuilding it"),
        (truncated_meta, "rebuilding it"),
        (garbage_progress, "starting that build over"),
        (truncated_progress, "starting that build over"),
        (truncated_work_array, "starting that build over"),
    ],
)
def test_a_damaged_teacher_cache_is_rebuilt_and_the_run_says_why(tmp_path, baseline, damage_it, rebuilt):
    shutil.copytree(baseline["cache"], cache_root())
    (cache,) = [d for d in (cache_root() / "traces").iterdir() if d.is_dir()]
    expected = damage_it(cache)
    if rebuilt == "rebuilding it":  # `xkd cache info` shows it damaged (and `cache clear` could remove it)
        (listed,) = list_caches()
        assert listed["dir"] == str(cache) and expected.rstrip("(") in listed["damaged"]
    result = run(*baseline["args"], "--output-dir", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    (line,) = said(result, " is damaged (")
    assert expected in line and rebuilt in line and str(cache) in line, line
    assert history(tmp_path / "run") == baseline["history"]
    (listed,) = list_caches()
    assert "damaged" not in listed and not cache.with_name(cache.name + ".building").exists()


# -- pseudo heads and fine-tuned teachers: retrained, said, same results ---------------------------------------------


def test_damaged_pseudo_heads_are_retrained_when_needed_and_left_when_not(tmp_path):
    teacher, data = save_tiny(tmp_path / "teacher", layers=2), write_task_dir(tmp_path / "data")
    args = [*distill(teacher, data), "--student-layers", "1", "--heads-epochs", "1", *QUICK]
    first = run(*args, "--method", "universal", "--output-dir", str(tmp_path / "first"))
    assert first.exit_code == 0, first.output
    assert said(first, "teacher has no pseudo classifiers: training")
    damage(teacher / "pseudo_heads.safetensors", "truncate")
    why = f"teacher pseudo classifiers in {teacher} are damaged (pseudo_heads.safetensors is damaged or truncated ("
    # A method without heads loads the teacher without them, and says so once.
    kd = run(*args, "--method", "kd", "--output-dir", str(tmp_path / "kd"))
    assert kd.exit_code == 0, kd.output
    (line,) = said(kd, " are damaged (")
    assert why in line and "left as they are" in line
    # A method that needs them retrains them (same seed: the same heads, the same run).
    again = run(*args, "--method", "universal", "--output-dir", str(tmp_path / "again"))
    assert again.exit_code == 0, again.output
    (line,) = said(again, " are damaged (")
    assert why in line and line.endswith("retraining them")
    assert history(tmp_path / "again") == history(tmp_path / "first")
    from xkd.pseudo_heads import PseudoHeads

    assert PseudoHeads.load(teacher).layers == 2  # the retrained heads were saved over the damaged ones


@pytest.mark.parametrize("file, how", [("model.safetensors", "truncate"), ("metrics.json", "garbage")])
def test_a_damaged_cached_fine_tune_is_fine_tuned_again(tmp_path, file, how):
    bare, data = save_tiny(tmp_path / "bare", layers=2, bare=True), write_task_dir(tmp_path / "data", (32, 16, 16))
    args = [*distill(bare, data), "--method", "kd", "--student-layers", "1", "--teacher-epochs", "1", *QUICK]
    # The new classifier head of a bare encoder is drawn from the global generator before fine-tuning seeds it:
    # the same state before both runs makes the two fine-tunes alike.
    torch.manual_seed(0)
    first = run(*args, "--output-dir", str(tmp_path / "first"))
    assert first.exit_code == 0, first.output
    (finetuned,) = (cache_root() / "teachers").glob("mr--*")
    damage(finetuned / file, how)
    torch.manual_seed(0)
    again = run(*args, "--output-dir", str(tmp_path / "again"))
    assert again.exit_code == 0, again.output
    (line,) = said(again, " is damaged (")
    assert f"the cached fine-tune in {finetuned} is damaged ({file} is damaged or truncated (" in line, line
    assert line.endswith("fine-tuning again")
    assert history(tmp_path / "again") == history(tmp_path / "first")
    assert run(*args, "--output-dir", str(tmp_path / "third")).exit_code == 0
