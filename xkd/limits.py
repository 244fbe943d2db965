"""Limits on sizes: a value far outside sense is refused before anything loads or is built, in one line that names
the option as the CLI spells it, the limit and why.

Absolute caps (`DistillConfig.validate`, no data or model needed) sit well above every published recipe; they catch
typos and nonsense (an extra zero or three), not unusual experiments. Limits that depend on the teacher (its layers,
its position embeddings) are checked as soon as its `config.json` is read, and the batch size as soon as the data
is loaded, both before any model is built and before a run directory is claimed.

Why each value:

- `MAX_EPOCHS` (10,000): distillation recipes train 1-50 epochs (a few hundred on tiny sets); 10,000 epochs is a
  typo, and `--max-steps` bounds a run by steps where that is what is meant. Also caps `--teacher-epochs`,
  `--heads-epochs` and `--second-stage-epochs`.
- `MAX_AUGMENT_FACTOR` (1,000): Tang et al. and TinyBERT augment 20 copies per example; 1,000 already makes the
  transfer set a thousand times the training split, labelled by the teacher row by row.
- `MAX_LAYERS` (48): the deepest common encoders have 24 (BERT-large) to 48 (XLM-R XXL) layers, and a student is
  meant to be smaller than its teacher; CNN/BiLSTM stacks without residual connections stop training long before.
  Caps `--student-layers` (BERT-k, CNN blocks, BiLSTM layers, plug-ins) and `--assistant-layers`; students that
  copy the teacher's layers are held to its depth once its config is read.
- `MAX_WIDTH` (8,192): twice the widest common encoders (4,096 hidden units); caps the CNN/BiLSTM widths
  (`-S embedding_dim`, `-S channels`, `-S hidden_size`, a CNN block's channels x filter widths). One 8,192-wide
  BiLSTM layer already has over a billion weights.
- `MAX_VOCAB` (2,000,000): the largest common word-vector files (fastText Common Crawl) hold 2 million words;
  caps `-S max_vocab`.
- `MAX_SEQUENCE_LENGTH` (8,192): the longest position range of common encoders (ModernBERT; BERT and RoBERTa
  have 512). The teacher's own limit is checked once its config is read (`check_teacher_sizes`). A CNN filter
  cannot be wider than `--max-length`: it would only ever see padding.
- `MAX_BATCH_SIZE` (1,000,000): a batch is held in memory at once, and no split we know of is larger; once the
  data is loaded `--batch-size` must also fit the training rows (`check_batch_size`), since a larger batch is just
  the whole split, with a learning-rate schedule of one step per epoch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from xkd.errors import XKDError

if TYPE_CHECKING:
    from transformers import PretrainedConfig

MAX_EPOCHS = 10_000
MAX_AUGMENT_FACTOR = 1_000
MAX_LAYERS = 48
MAX_WIDTH = 8_192
MAX_VOCAB = 2_000_000
MAX_SEQUENCE_LENGTH = 8_192
MAX_BATCH_SIZE = 1_000_000

# CNN/BiLSTM/static student options (-S KEY=VALUE) that are sizes: option -> (limit, why).
STUDENT_SIZE_OPTIONS: dict[str, tuple[int, str]] = {
    "embedding_dim": (MAX_WIDTH, "twice the widest common encoders"),
    "channels": (MAX_WIDTH, "twice the widest common encoders"),
    "hidden_size": (MAX_WIDTH, "twice the widest common encoders"),
    "hidden": (MAX_WIDTH, "twice the widest common encoders"),
    "max_vocab": (MAX_VOCAB, "the largest common word-vector files hold 2 million words"),
}

# Model families whose position ids start after the padding index (RoBERTa's `create_position_ids_from_input_ids`):
# padding_idx + 1 of their position embeddings are never used for tokens.
OFFSET_POSITIONS = (
    "roberta",
    "xlm-roberta",
    "xlm-roberta-xl",
    "camembert",
    "roberta-prelayernorm",
    "data2vec-text",
    "xmod",
    "mpnet",
    "longformer",
    "ibert",
    "luke",
)
DISTILROBERTA_LAYERS = 6  # as `students.registry` builds it: every other layer of a 12-layer RoBERTa
RELATIVE_BOUNDED = ("relative_key", "relative_key_query")


def too_large(option: str, value: Any, limit: int, why: str) -> XKDError:
    """The one-line error for a size above its limit."""
    return XKDError(f"{option} is {value}, above the limit of {limit} ({why}); choose a smaller value")


def at_most(option: str, value: Any, limit: int, why: str) -> None:
    if value > limit:
        raise too_large(option, value, limit, why)


def _whole(option: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise XKDError(f"{option} must be a whole number, got {value!r}")
    return value


def check_student_options(options: Mapping[str, Any], max_length: int) -> None:
    """Sizes among a built-in student's resolved options (`-S KEY=VALUE`): whole, positive, below their caps; CNN
    filter widths at most `max_length` (wider filters see only padding)."""
    for name, (limit, why) in STUDENT_SIZE_OPTIONS.items():
        if name in options:
            value = _whole(f"-S {name}", options[name])
            if value < 1:
                raise XKDError(f"-S {name} must be at least 1, got {value}")
            at_most(f"-S {name}", value, limit, why)
    if "dropout" in options and not 0 <= options["dropout"] < 1:
        raise XKDError(f"-S dropout must lie in [0, 1), got {options['dropout']}")
    if "filter_widths" in options:
        text = str(options["filter_widths"])
        try:
            widths = [int(w) for w in text.split(",")]
        except ValueError:
            wrong = f"-S filter_widths must be whole numbers separated by commas (e.g. 3,4,5), got '{text}'"
            raise XKDError(wrong) from None
        if any(w < 1 for w in widths):
            raise XKDError(f"-S filter_widths must be at least 1, got '{text}'")
        why = "a filter wider than the longest sequence sees only padding"
        at_most("-S filter_widths", max(widths), max_length, f"--max-length: {why}")
        channels = options.get("channels", 1)
        if channels * len(widths) > MAX_WIDTH:
            value = f"{channels} x {len(widths)} = {channels * len(widths)}"
            why = "a CNN block's width; twice the widest common encoders"
            raise too_large("-S channels x filter widths", value, MAX_WIDTH, why)


def position_limit(config: PretrainedConfig) -> tuple[int, str] | None:
    """The most tokens a model's absolute position embeddings can place, and how that follows from its config; None
    when it has no absolute position embeddings (relative or rotary-only) or does not say."""
    size = getattr(config, "max_position_embeddings", None)
    if not isinstance(size, int) or size < 1:
        return None
    # BERT's relative position types index distances below max_position_embeddings, so the limit holds for them too.
    if getattr(config, "position_embedding_type", "absolute") not in (None, "absolute", *RELATIVE_BOUNDED):
        return None
    if getattr(config, "position_biased_input", True) is False:  # DeBERTa-v2/v3: relative positions only
        return None
    if config.model_type in OFFSET_POSITIONS:
        pad = config.pad_token_id if isinstance(config.pad_token_id, int) else 1
        offset = pad + 1
        return size - offset, f"{size} position embeddings and, like RoBERTa, skips the first {offset}"
    return size, f"position embeddings for {size} tokens"


def check_max_length(max_length: int, config: PretrainedConfig, what: str) -> None:
    limit = position_limit(config)
    if limit is not None:
        at_most("--max-length", max_length, limit[0], f"{what} has {limit[1]}")


def check_batch_size(batch_size: int, train_rows: int, transfer_rows: int = 0) -> None:
    """Once the data is loaded: a training batch no larger than the rows trained on."""
    rows = train_rows + transfer_rows
    where = f"the training split has {train_rows} rows" + (
        f" plus {transfer_rows} transfer rows" if transfer_rows else ""
    )
    at_most("--batch-size", batch_size, rows, f"{where}; a batch cannot hold more")
