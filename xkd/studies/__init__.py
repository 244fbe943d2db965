"""The study side: a grid of runs from one file (`plan`: parse, check, expand), running it (`runner`: shared
teachers, locks, resumption, ETA), its results tables with paired differences (`results`), and the Markdown reports
(`report`) with their plots (`plots`)."""

from xkd.studies.plan import PlannedRun, StudyPlan, load_plan
from xkd.studies.runner import run_lock, run_state, run_study

__all__ = ["PlannedRun", "StudyPlan", "load_plan", "run_lock", "run_state", "run_study"]
