import pytest
import torch
from tiny import save_tiny

from xkd.errors import XKDError
from xkd.students import STUDENTS, build_student, teacher_layers
from xkd.tasks import get_task
from xkd.teachers import load_teacher


@pytest.mark.parametrize(
    ("n", "k", "init", "expected"),
    [
        (6, 2, "uniform", [2, 5]),
        (12, 4, "uniform", [2, 5, 8, 11]),
        (12, 6, "uniform", [1, 3, 5, 7, 9, 11]),
        (6, 2, "first", [0, 1]),
        (6, 2, "last", [4, 5]),
        (6, 6, "uniform", [0, 1, 2, 3, 4, 5]),
    ],
)
def test_teacher_layer_choice(n, k, init, expected):
    assert teacher_layers(n, k, init) == expected


def test_bad_layer_counts_and_inits():
    with pytest.raises(XKDError, match="cannot be initialised"):
        teacher_layers(6, 7, "uniform")
    with pytest.raises(XKDError, match="unknown init"):
        teacher_layers(6, 2, "middle")


@pytest.mark.parametrize("kind", ["bert", "roberta"])
def test_student_copies_the_chosen_teacher_layers(tmp_path, kind):
    teacher = load_teacher(str(save_tiny(tmp_path / kind, kind=kind, layers=4)), get_task("mr"))
    student = build_student("bert-k", teacher, get_task("mr"), layers=2, init="uniform")
    assert student.num_layers == 2 and student.layer_width == teacher.layer_width
    t_layers = teacher.model.base_model.encoder.layer
    s_layers = student.model.base_model.encoder.layer
    for j, i in enumerate([1, 3]):
        for (name, s), (_, t) in zip(s_layers[j].named_parameters(), t_layers[i].named_parameters(), strict=True):
            assert torch.equal(s, t), name
    assert torch.equal(
        student.model.classifier.dense.weight if kind == "roberta" else student.model.classifier.weight,
        teacher.model.classifier.dense.weight if kind == "roberta" else teacher.model.classifier.weight,
    )
    # The student trains; the teacher it came from stays frozen and unchanged.
    assert all(p.requires_grad for p in student.parameters())
    inputs = dict(teacher.tokenizer(["good film"], return_tensors="pt"))
    student(inputs).logits.sum().backward()
    assert student.model.base_model.encoder.layer[0].attention.self.query.weight.grad is not None
    assert all(p.grad is None for p in teacher.parameters())


def test_random_init_differs_from_teacher(bert_teacher_dir):
    teacher = load_teacher(str(bert_teacher_dir), get_task("mr"))
    student = build_student("bert-k", teacher, get_task("mr"), layers=2, init="random")
    assert not torch.equal(
        student.model.base_model.encoder.layer[1].output.dense.weight,
        teacher.model.base_model.encoder.layer[3].output.dense.weight,
    )


def test_registry():
    assert "bert-k" in STUDENTS.names()
    with pytest.raises(XKDError, match="unknown student 'bert'.*did you mean 'bert-k'"):
        STUDENTS.get("bert")
