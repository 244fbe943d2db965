"""Student vocabularies independent of the teacher, built from the training split.

- word level (the `tokenizers` library): lower-cased, accents stripped, split on whitespace and punctuation
  (BERT's pre-tokenizer), which matches how GloVe 6B was built;
- subword (a `sentencepiece` unigram model), for students without word vectors that should not meet [UNK].
Both come back as a `PreTrainedTokenizerFast`, so the data pipeline pads and saves them like any HF tokenizer.
"""

from __future__ import annotations

import io
from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
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


def build_sentencepiece_tokenizer(
    texts: Iterable[str], vocab_size: int = 8000, lowercase: bool = True
) -> PreTrainedTokenizerFast:
    """A sentencepiece unigram vocabulary trained on `texts`, as a fast tokenizer.

    The pieces and their scores move into a `tokenizers` Unigram model with sentencepiece's NFKC normalisation and
    '▁' word marker, so encoding needs no sentencepiece at run time and saves with `save_pretrained`. Ids 0 and 1
    are <pad> and <unk>; `vocab_size` is an upper bound (small corpora yield fewer pieces).
    """
    import sentencepiece as spm

    if vocab_size < 8:
        raise XKDError("a sentencepiece vocabulary needs vocab_size >= 8")
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="unigram",
        pad_id=0,
        unk_id=1,
        bos_id=-1,
        eos_id=-1,
        normalization_rule_name="nmt_nfkc_cf" if lowercase else "nmt_nfkc",
        hard_vocab_limit=False,
        minloglevel=2,
    )
    sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
    pieces = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
    tokenizer = Tokenizer(models.Unigram(pieces, unk_id=1))
    steps = [normalizers.NFKC(), normalizers.Replace(r"\s+", " ")]
    if lowercase:
        steps.append(normalizers.Lowercase())
    tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", unk_token="<unk>")
