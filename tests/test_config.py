import pytest

from xkd.config import DistillConfig, build_config, read_config_file
from xkd.errors import XKDError


def test_toml_and_yaml_mirror_the_options(tmp_path):
    (tmp_path / "a.toml").write_text('task = "sst2"\nstudent-layers = 4\ntemperature = 3\n')
    (tmp_path / "a.yaml").write_text("task: sst2\nstudent_layers: 4\ntemperature: 3.0\n")
    assert (
        read_config_file(tmp_path / "a.toml")
        == read_config_file(tmp_path / "a.yaml")
        == {
            "task": "sst2",
            "student_layers": 4,
            "temperature": 3.0,
        }
    )


def test_command_line_overrides_file_and_file_overrides_defaults(tmp_path):
    cfg = build_config({"epochs": 5, "lr": 3e-5}, {"lr": 2e-5})
    assert (cfg.epochs, cfg.lr, cfg.batch_size) == (5, 2e-5, DistillConfig().batch_size)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("temprature = 2\n", "unknown config key 'temprature'.*did you mean 'temperature'"),
        ('epochs = "three"\n', "'epochs' should be int"),
        ("task = [\n", "cannot parse config file"),
    ],
)
def test_bad_config_files(tmp_path, text, message):
    (tmp_path / "c.toml").write_text(text)
    with pytest.raises(XKDError, match=message):
        read_config_file(tmp_path / "c.toml")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"temperature": 0.0}, "temperature must be > 0"),
        ({"alpha": 1.5}, r"alpha must lie in \[0, 1\]"),
        ({"lr": -1.0}, "lr must be > 0"),
        ({"student_layers": 0}, "student-layers must be at least 1"),
        ({"finetune_teacher": "sometimes"}, "finetune-teacher must be one of"),
    ],
)
def test_values_are_range_checked(values, message):
    with pytest.raises(XKDError, match=message):
        build_config({}, values)


def test_missing_and_unsupported_files(tmp_path):
    with pytest.raises(XKDError, match="does not exist"):
        read_config_file(tmp_path / "none.toml")
    (tmp_path / "c.ini").write_text("x")
    with pytest.raises(XKDError, match="must end in .toml"):
        read_config_file(tmp_path / "c.ini")
