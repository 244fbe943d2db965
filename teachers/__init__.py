"""Teachers: adapters that expose any Hugging Face encoder classifier through the `xkd.Trace` contract.

Fine-tuning (`xkd.teachers.finetune`) and resolution for a run (`xkd.teachers.resolve`) run the training loop and
are imported from their modules, so a student built on a teacher's layers (BERT-k) does not load the loop."""

from .heads import train_heads
from .heads_store import heads_dir
from .hf_encoder import HFEncoderClassifier, freeze, is_sequence_classifier
from .loading import check_teacher, load_teacher

__all__ = [
    "HFEncoderClassifier",
    "check_teacher",
    "freeze",
    "heads_dir",
    "train_heads",
    "is_sequence_classifier",
    "load_teacher",
]
