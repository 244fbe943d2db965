"""Fixtures: tiny models and data in each test's own directory; fine-tune caches isolated per test."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny import save_tiny, write_task_dir


@pytest.fixture
def task_dir(tmp_path: Path) -> Path:
    return write_task_dir(tmp_path / "data")


@pytest.fixture
def bert_teacher_dir(tmp_path: Path) -> Path:
    return save_tiny(tmp_path / "bert-teacher")


@pytest.fixture
def roberta_teacher_dir(tmp_path: Path) -> Path:
    return save_tiny(tmp_path / "roberta-teacher", kind="roberta")


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Fine-tuned teacher caches and default run dirs go to the test's own directory, never the user's."""
    cache = tmp_path / "xkd-cache"
    monkeypatch.setenv("XKD_CACHE_DIR", str(cache))
    monkeypatch.chdir(tmp_path)
    return cache


@pytest.fixture
def on_cpu(monkeypatch: pytest.MonkeyPatch):
    """Run on the CPU even on a GPU machine, for what is a CPU fact: pinned float values, gloo process groups.
    accelerate's process-wide state is reset so that the next run builds it for the CPU, and again afterwards."""
    from accelerate.state import AcceleratorState

    monkeypatch.setenv("ACCELERATE_USE_CPU", "1")  # read by xkd.processes.use_cpu and by launched processes
    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)
