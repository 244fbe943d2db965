"""One source of every default: `DistillConfig`. The CLI, the teacher commands and the training settings derive
theirs from it, so the same teacher trains the same way whichever command trains it."""

from __future__ import annotations

import re
from dataclasses import MISSING, fields

import click
import pytest

from xkd.cli.main import cli
from xkd.cli.options import given
from xkd.config import DEFAULTS, DistillConfig
from xkd.students import STUDENTS
from xkd.students.configured import student_settings
from xkd.students.registry import student_lr
from xkd.tasks import get_task
from xkd.teachers.finetune import finetune_config, finetune_key
from xkd.training import TrainSettings

# Config fields whose option has another parameter name: --resume takes the run directory to continue.
PARAMETER = {"resume": "resume_dir"}


def command(*path: str) -> click.Command:
    group = cli
    for name in path:
        group = group.commands[name]
    return group


def received(path: tuple[str, ...], args: list[str]) -> dict:
    """The values a command's function receives for `args` (options not given: their defaults)."""
    return command(*path).make_context(" ".join(path), list(args)).params


def shown_default(option: click.Option) -> str | None:
    match = re.search(r"\[default: ([^\]]*)\]", option.help or "")
    return match.group(1) if match else None


@pytest.mark.parametrize("field", [f.name for f in fields(DistillConfig)])
def test_each_config_field_has_one_distill_option_showing_its_default(field):
    params = [p for p in command("distill").params if p.name == PARAMETER.get(field, field)]
    assert len(params) == 1, f"{field}: {len(params)} options"
    option = params[0]
    value = received(("distill",), [])[option.name]
    assert value in (None, ()), f"{field}: the option must not override the config file"
    default = getattr(DEFAULTS, field)
    if default not in (None, [], {}) and field != "resume":
        expected = ("on" if default else "off") if isinstance(default, bool) else str(default)
        assert shown_default(option) == expected, f"{field}: help shows {shown_default(option)}, not {expected}"


def test_a_distill_command_line_without_options_is_the_dataclass_default():
    from xkd.cli.distill_options import config_from

    given = {k: v for k, v in received(("distill",), []).items() if k not in ("config_file", "student_config")}
    given.pop("resume_dir")
    assert config_from(None, None, given) == DistillConfig().validate()


def test_teacher_finetune_defaults_are_those_of_distill():
    """`xkd teacher finetune` with its defaults trains the very teacher `xkd distill` fine-tunes (same settings,
    same cache key)."""
    options = received(("teacher", "finetune"), ["--model", "m", "--task", "mr"])
    options = {k: v for k, v in options.items() if k not in ("model_name", "task", "output_dir", "data_dir")}
    from_finetune = finetune_config("m", "mr", None, given(options))
    from_distill = DistillConfig(task="mr", teacher="m").validate()
    assert TrainSettings.from_config(from_finetune, teacher=True) == TrainSettings.from_config(
        from_distill, teacher=True
    )
    assert from_finetune.max_length == from_distill.max_length
    keys = [finetune_key("m", get_task("mr"), "d", TrainSettings.from_config(c, teacher=True), c.max_length)
            for c in (from_finetune, from_distill)]  # fmt: skip
    assert keys[0] == keys[1]
    assert TrainSettings.from_config(from_distill, teacher=True).epochs == DEFAULTS.teacher_epochs


def test_teacher_heads_and_eval_defaults_are_the_configs():
    heads = received(("teacher", "heads"), ["--teacher", "t", "--task", "mr"])
    assert (heads["kind"], heads["epochs"], heads["lr"], heads["seed"]) == (
        DEFAULTS.teacher_heads, DEFAULTS.heads_epochs, DEFAULTS.heads_lr, DEFAULTS.seed,
    )  # fmt: skip
    evaluation = received(("eval",), ["--model", "m", "--task", "mr"])
    assert evaluation["batch_size"] == DEFAULTS.eval_batch_size


def test_train_settings_have_no_defaults_of_their_own():
    """Every setting a run can choose comes from the config; only the fixed clipping norm has a default."""
    defaulted = [f.name for f in fields(TrainSettings) if f.default is not MISSING]
    assert defaulted == ["max_grad_norm"]
    settings = student_settings(DistillConfig(batch_size=8, eval_batch_size=16, seed=3))
    assert (settings.batch_size, settings.eval_batch_size, settings.seed) == (8, 16, 3)


def test_word_students_rate_follows_the_run_length():
    """Up to lr_steps the student's own rate; beyond, lr * sqrt(lr_steps / steps); transformers keep theirs."""
    steps = STUDENTS.get("cnn").lr_steps
    assert student_lr("cnn") == student_lr("cnn", steps) == 2e-3
    assert student_lr("cnn", 4 * steps) == pytest.approx(1e-3)  # 4x as long: half the rate
    assert student_lr("bilstm", 16 * steps) == student_lr("static", 16 * steps) == pytest.approx(5e-4)
    assert student_lr("bert-k", 100 * steps) == student_lr("bert-k") == 1e-4
    assert student_lr("mypkg.students:Gru", 100 * steps) == 1e-4  # a plug-in: the transformer default


def test_train_settings_scale_the_default_rate_not_a_given_one():
    cfg = DistillConfig(student="cnn", epochs=3, batch_size=32)
    gold, transfer = student_settings(cfg, rows=8483), student_settings(cfg, rows=161376)
    assert gold.lr == 2e-3  # 3 x 266 steps: the student's rate
    assert transfer.lr == pytest.approx(2e-3 * (STUDENTS.get("cnn").lr_steps / (3 * 5043)) ** 0.5)
    assert student_settings(DistillConfig(student="cnn", lr=2e-3), rows=161376).lr == 2e-3
    capped = DistillConfig(student="cnn", epochs=3, batch_size=32, max_steps=100)
    assert student_settings(capped, rows=161376).lr == 2e-3  # --max-steps bounds the run's length


def test_the_default_transfer_set_is_tang_where_the_run_can_use_it():
    """augment="auto" becomes tang x10 (AUTO_AUGMENT) on a plain run, and none, with the reason, where rows without
    labels cannot help: a gold-only method, saved outputs (no model labels new rows), --transfer text of one's own.
    A recipe that is given stays as it is, and a fitted config is fitted once."""
    from xkd.config import AUTO_AUGMENT
    from xkd.transfer.sets import fit_augment

    assert (DEFAULTS.augment, DEFAULTS.augment_factor, DEFAULTS.student) == ("auto", 10, "cnn")
    plain, line = fit_augment(DistillConfig())
    assert (plain.augment, line) == (AUTO_AUGMENT, None)
    assert fit_augment(plain) == (plain, None)
    off = {
        "gold labels only": DistillConfig(method="none"),
        "saved outputs": DistillConfig(teacher_outputs="outputs.parquet"),
        "--transfer text of its own": DistillConfig(transfer=["unlabelled.txt"]),
    }
    for reason, cfg in off.items():
        fitted, line = fit_augment(cfg)
        assert fitted.augment == "none" and reason in line, (reason, line)
        assert fitted == DistillConfig(**{**cfg.__dict__, "augment": "none"})
    for recipe in ("none", "tang", "tinybert"):
        assert fit_augment(DistillConfig(augment=recipe, transfer=["t.txt"])) == (
            DistillConfig(augment=recipe, transfer=["t.txt"]),
            None,
        )
