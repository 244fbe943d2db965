"""Student vocabularies independent of the teacher: a word-level vocabulary built from the training split.

Built with the `tokenizers` library and wrapped as a `PreTrainedTokenizerFast`, so the data pipeline pads and
saves it like any Hugging Face tokenizer. Lower-cased with accents stripped, split on whitespace and punctuation
(BERT's pre-tokenizer), which matches how GloVe 6B was built.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from xkd.errors import XKDError

PAD, UNK = "[PAD]", "[UNK]"


def build_word_tokenizer(
    texts: Iterable[str], min_frequency: int = 1, max_size: int = 30000, lowercase: bool = True
) -> PreTrainedTokenizerFast:
    """A word-level tokenizer whose vocabulary is the training words seen at least `min_frequency` times.

    Ids 0 and 1 are [PAD] and [UNK]; the rest are the most frequent words, at most `max_size` in all.
    """
    if min_frequency < 1 or max_size < 3:
        raise XKDError("word vocabularies need min_frequency >= 1 and max_size >= 3")
    tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
    steps = [normalizers.NFD(), normalizers.StripAccents()]
    if lowercase:
        steps.insert(0, normalizers.Lowercase())
    tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordLevelTrainer(vocab_size=max_size, min_frequency=min_frequency, special_tokens=[PAD, UNK])
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token=PAD, unk_token=UNK)
