"""Transfer sets: unlabelled and augmented text the teacher labels once (`sets`: reading and cleaning;
`augment`: the augmentation recipes and their cache)."""

from xkd.transfer.augment import RECIPES, augment_texts, augmented_set, resolve_recipe
from xkd.transfer.sets import SPLIT, clean_transfer, no_labels, read_transfer_file, transfer_dataset

__all__ = [
    "RECIPES",
    "SPLIT",
    "augment_texts",
    "augmented_set",
    "clean_transfer",
    "no_labels",
    "read_transfer_file",
    "resolve_recipe",
    "transfer_dataset",
]
