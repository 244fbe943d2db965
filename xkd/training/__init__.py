"""Training: the loop (`loop`), what a checkpoint holds (`state`), the files it writes (`checkpoints`), its
settings, and where the teacher's outputs come from."""

from xkd.training.checkpoints import Checkpoints, save_atomically
from xkd.training.loop import TrainJob, parameter_count, train
from xkd.training.settings import TrainSettings
from xkd.training.state import TrainState
from xkd.training.teacher_source import TeacherSource

__all__ = [
    "Checkpoints",
    "TeacherSource",
    "TrainJob",
    "TrainSettings",
    "TrainState",
    "parameter_count",
    "save_atomically",
    "train",
]
