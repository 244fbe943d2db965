"""Teachers: adapters that expose any Hugging Face encoder classifier through the `xkd.Trace` contract."""

from .finetune import cached_finetune, finetune
from .heads import train_heads
from .heads_store import heads_dir
from .hf_encoder import HFEncoderClassifier, freeze, is_sequence_classifier
from .loading import check_teacher, load_teacher

__all__ = [
    "HFEncoderClassifier",
    "cached_finetune",
    "check_teacher",
    "finetune",
    "freeze",
    "heads_dir",
    "train_heads",
    "is_sequence_classifier",
    "load_teacher",
]
