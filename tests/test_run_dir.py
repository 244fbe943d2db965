"""A run's default directory: named after what it runs and when, never shared by two runs started in one second."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import xkd.run_dir as run_dir_module
from xkd.config import DistillConfig
from xkd.run_dir import claim_run_dir


class FrozenClock:
    @staticmethod
    def now() -> datetime:
        return datetime(2026, 12, 2, 19, 14, 31)


def test_two_runs_started_in_the_same_second_get_two_directories(monkeypatch):
    monkeypatch.setattr(run_dir_module, "datetime", FrozenClock)
    cfg = DistillConfig(task="mr", student="cnn", method="kd", augment="none")
    first, second, third = (claim_run_dir(cfg) for _ in range(3))
    assert first == Path("runs/mr-cnn2-kd-20261202-191431")
    assert (second.name, third.name) == (f"{first.name}-2", f"{first.name}-3")
    assert all((d / "config.json").is_file() for d in (first, second, third))
