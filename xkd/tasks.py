"""The task registry: what each task's data looks like and how it is scored.

A task says which columns hold the text (one for single-sentence tasks, two for pairs), how many labels it has,
whether it is regression, which metrics score it and where its data comes from on the hub. Custom tasks from
local files are built with `custom_task`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from xkd.errors import XKDError
from xkd.registry import Registry

if TYPE_CHECKING:
    from xkd.config import DistillConfig


@dataclass(frozen=True)
class Task:
    """A classification or regression task over one sentence or a sentence pair.

    `main_metric` picks the best checkpoint; `score` (the mean of the task's metrics, GLUE's convention for
    MRPC, QQP and STS-B) is the default. A `multi_label` task gives each row a set of labels (possibly empty):
    its outputs are `num_labels` independent sigmoids, its labels multi-hot rows, and `label_separator` splits a
    label cell of a .tsv/.csv file into names.
    """

    name: str
    text_columns: tuple[str, ...]
    num_labels: int
    label_column: str = "label"
    regression: bool = False
    metrics: tuple[str, ...] = ("accuracy",)
    main_metric: str = "score"
    validation_splits: tuple[str, ...] = ("validation",)
    test_splits: tuple[str, ...] = ("test",)
    hub_path: str | None = None
    hub_config: str | None = None
    label_names: tuple[str, ...] | None = None
    label_range: tuple[float, float] | None = None  # regression targets must lie in it
    description: str = ""
    multi_label: bool = False
    label_separator: str = ","

    @property
    def is_pair(self) -> bool:
        return len(self.text_columns) == 2

    @property
    def splits(self) -> tuple[str, ...]:
        return ("train", *self.validation_splits, *self.test_splits)

    @property
    def output_size(self) -> int:
        """Width of the classifier output: 1 for regression, else the label count."""
        return 1 if self.regression else self.num_labels


TASKS: Registry[Task] = Registry("task")


def _add(task: Task) -> None:
    TASKS.add(task.name, task)


_add(
    Task(
        "cola",
        ("sentence",),
        2,
        metrics=("matthews",),
        hub_path="nyu-mll/glue",
        hub_config="cola",
        description="CoLA: grammatical acceptability (Matthews correlation)",
    )
)
_add(
    Task(
        "sst2",
        ("sentence",),
        2,
        hub_path="nyu-mll/glue",
        hub_config="sst2",
        description="SST-2: sentence sentiment",
    )
)
_add(
    Task(
        "mrpc",
        ("sentence1", "sentence2"),
        2,
        metrics=("accuracy", "f1"),
        hub_path="nyu-mll/glue",
        hub_config="mrpc",
        description="MRPC: paraphrase (accuracy and F1)",
    )
)
_add(
    Task(
        "stsb",
        ("sentence1", "sentence2"),
        1,
        regression=True,
        metrics=("pearson", "spearman"),
        hub_path="nyu-mll/glue",
        hub_config="stsb",
        label_range=(0.0, 5.0),
        description="STS-B: sentence similarity 0..5 (Pearson and Spearman)",
    )
)
_add(
    Task(
        "qqp",
        ("question1", "question2"),
        2,
        metrics=("accuracy", "f1"),
        hub_path="nyu-mll/glue",
        hub_config="qqp",
        description="QQP: duplicate questions (accuracy and F1)",
    )
)
_add(
    Task(
        "mnli",
        ("premise", "hypothesis"),
        3,
        hub_path="nyu-mll/glue",
        hub_config="mnli",
        validation_splits=("validation_matched", "validation_mismatched"),
        test_splits=("test_matched", "test_mismatched"),
        label_names=("entailment", "neutral", "contradiction"),
        description="MNLI: entailment, matched and mismatched validation",
    )
)
_add(
    Task(
        "qnli",
        ("question", "sentence"),
        2,
        hub_path="nyu-mll/glue",
        hub_config="qnli",
        description="QNLI: does the sentence answer the question",
    )
)
_add(
    Task(
        "rte",
        ("sentence1", "sentence2"),
        2,
        hub_path="nyu-mll/glue",
        hub_config="rte",
        description="RTE: textual entailment",
    )
)
_add(
    Task(
        "mr",
        ("sentence",),
        2,
        hub_path="cornell-movie-review-data/rotten_tomatoes",
        label_names=("negative", "positive"),
        description="MR: movie-review polarity (rt-polarity sentences)",
    )
)


def get_task(name: str) -> Task:
    """A built-in task; an unknown name also says how to declare one's own data (a name alone does not)."""
    try:
        return TASKS.get(name)
    except XKDError as error:
        own = "for your own data, also name its columns: --data-dir DIR --text-column COLUMN [--label-column COLUMN]"
        raise XKDError(f"{error}; or, {own}") from None


def label_names(task: Task) -> tuple[str, ...]:
    """The names of a classification task's labels (their indices as text when the task has none); () for
    regression."""
    if task.regression:
        return ()
    return tuple(task.label_names or (str(i) for i in range(task.num_labels)))


def positional(names: Sequence[str]) -> bool:
    """Names that say only a position: Hugging Face's defaults (LABEL_0, LABEL_1, ...) or the indices themselves
    (a task without label names)."""
    return all(str(name).strip() in (f"LABEL_{i}", str(i)) for i, name in enumerate(names))


def check_label_names(
    what: str, names: Sequence[str] | None, task: Task, fix: str = "", log: Callable[[str], None] | None = None
) -> None:
    """Refuse a model (`what`, e.g. "teacher 'DIR'") whose label names, in output order, are not the task's.

    Outputs are matched to labels by position, so a model whose names are the task's in another order, or other
    names, would train a student and be scored silently wrong. Names compare without case or surrounding space.
    When either side names only positions (LABEL_0, ... or a task whose labels are numbers) there is nothing to
    compare: accepted, and when the other side has real names `log` (if given) says the order is assumed.
    `fix` ends the error message. Regression tasks, unknown names and another label count (refused elsewhere, by
    the output-size checks) pass."""
    ours = label_names(task)
    if names is None or task.regression or len(names) != len(ours):
        return
    theirs = tuple(str(name) for name in names)
    if positional(theirs) or positional(ours):
        if log is not None and not (positional(theirs) and positional(ours)):
            defaults = ", Hugging Face's defaults," if positional(theirs) else ""
            has = f"names no labels ({', '.join(ours)})" if positional(ours) else f"has ({', '.join(ours)})"
            log(
                f"label names: {what} calls its outputs ({', '.join(theirs)}){defaults} and task '{task.name}' {has}; "
                "the order is assumed to be the task's"
            )
        return
    theirs_key, ours_key = [n.strip().casefold() for n in theirs], [n.strip().casefold() for n in ours]
    if theirs_key == ours_key:
        return
    how = "the same names in another order" if sorted(theirs_key) == sorted(ours_key) else "other names"
    raise XKDError(
        f"{what} labels its outputs ({', '.join(theirs)}) but task '{task.name}' has ({', '.join(ours)}): {how}, "
        f"and outputs are matched to labels by position{'; ' + fix if fix else ''}"
    )


def task_record(task: Task) -> dict[str, Any]:
    """What a saved model records about its task, so it can be used on new text without the training data: the
    label names in output order, regression or not, and the text columns (two for pairs)."""
    record = {
        "task": task.name,
        "labels": list(label_names(task)),
        "regression": task.regression,
        "text_columns": list(task.text_columns),
    }
    if task.multi_label:  # only then: the records of single-label models stay as they were
        record["multi_label"] = True
    return record


# Micro F1 first: the main metric of multi-label tasks (see `custom_task`).
MULTI_LABEL_METRICS = ("micro_f1", "macro_f1", "subset_accuracy")


def custom_task(
    name: str,
    text_columns: tuple[str, ...],
    label_column: str = "label",
    num_labels: int | None = None,
    regression: bool = False,
    label_names: tuple[str, ...] | None = None,
    multi_label: bool = False,
    label_separator: str = ",",
) -> Task:
    """A task over local files with the given columns; its data must come from `--data-dir`.

    `num_labels` may be left out: the data module then counts the training labels (see `xkd.data`). A
    `multi_label` task is scored by micro F1 (its main metric: every (row, label) decision counts alike, so rare
    labels do not swing it), macro F1 and subset accuracy (exact match of the whole label set).
    """
    if not 1 <= len(text_columns) <= 2:
        raise XKDError(
            f"a custom task needs one or two text columns, got {len(text_columns)}: pass --text-column once "
            "for single sentences or twice for pairs"
        )
    if regression and multi_label:
        raise XKDError("a task is either --regression or --multi-label, not both; drop one of the two")
    if multi_label and not label_separator:
        raise XKDError("--label-separator must not be empty; pass the string between label names, e.g. ','")
    if regression:
        num_labels = 1
    metrics = ("pearson", "spearman") if regression else ("accuracy",)
    return Task(
        name=name,
        text_columns=tuple(text_columns),
        num_labels=num_labels or 0,
        label_column=label_column,
        regression=regression,
        metrics=MULTI_LABEL_METRICS if multi_label else metrics,
        main_metric="micro_f1" if multi_label else "score",
        label_names=label_names,
        description="custom multi-label task from local files" if multi_label else "custom task from local files",
        multi_label=multi_label,
        label_separator=label_separator,
    )


def resolve_task(cfg: DistillConfig) -> Task:
    """The config's task: a registered one, or a custom one when `text_columns` are given."""
    if cfg.text_columns:
        return custom_task(
            cfg.task,
            tuple(cfg.text_columns),
            cfg.label_column,
            cfg.num_labels,
            cfg.regression,
            multi_label=cfg.multi_label,
            label_separator=cfg.label_separator,
        )
    if cfg.multi_label:
        raise XKDError(f"--multi-label declares a custom task; pass its --text-column (task '{cfg.task}' is built in)")
    return get_task(cfg.task)
