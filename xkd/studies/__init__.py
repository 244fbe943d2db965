"""The study side: a grid of runs from one file (`grid`), their results tables with paired differences
(`results`), and the Markdown reports (`report`) with their plots (`plots`)."""

from xkd.studies.grid import PlannedRun, StudyPlan, load_plan, run_lock, run_state, run_study

__all__ = ["PlannedRun", "StudyPlan", "load_plan", "run_lock", "run_state", "run_study"]
