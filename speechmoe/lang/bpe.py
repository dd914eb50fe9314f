"""BPE units (sentencepiece) for corpora that are not Mandarin.

The paper's units are Mandarin syllables; a corpus in another language uses
subword pieces instead, and everything downstream stays the same: a lang dir
with ``tokens.txt`` and ``lexicon.txt``, the same TLG build and WFST decoder.

    tokens.txt   <blk> 0, then the pieces in sentencepiece id order. The model's
                 <unk> (sentencepiece id 0) is never a target, so its id is the
                 blank's: token id == sentencepiece id for every piece.
    lexicon.txt  every word of the LM text -> its pieces (``hello -> ▁he llo``).
    bpe.model    the sentencepiece model, which also segments words that are not
                 in the lexicon (a dev or test transcript), exactly as it segments
                 the lexicon's words: sentencepiece splits at whitespace first, so a
                 word's pieces do not depend on its neighbours.

A word with a character the model never saw (its pieces contain <unk>) has no
segmentation: it is out of vocabulary, like a word without a pronunciation.

Open vocabulary (the BPE counterpart of the Mandarin lang dir's one-character words):
every piece is also a *fragment* word of the lexicon and the LM, so that a word the LM
text never had can still be decoded, spelled from pieces. A fragment's word symbol is
the piece itself when it starts a word (``▁he``) and ``▁+`` then the piece when it
continues one (``llo`` -> ``▁+llo``); no word of normalised text starts with ``▁``.
`join_fragments` turns decoded words back into words: ``▁he ▁+llo`` -> ``hello``, and a
continuation after a whole word extends it (``cat ▁+s`` -> ``cats``).

sentencepiece is imported inside the functions that need it.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Iterable, Optional, Sequence

from speechmoe.lang.symbols import BLANK, RESERVED_WORDS, is_disambig
from speechmoe.utils import atomic_write_bytes

MODEL_NAME = "bpe.model"
WORD_START = "\u2581"  # sentencepiece's word-boundary mark "▁"
CONTINUATION = WORD_START + "+"  # the word symbol of a piece inside a word: "▁+llo"


def train_bpe(sentences: Iterable[str], model_path: str | Path, vocab_size: int = 500,
              model_type: str = "bpe", character_coverage: float = 1.0,
              max_sentences: int = 10_000_000) -> Path:
    """Train a sentencepiece model on sentences (words separated by spaces).

    ``vocab_size`` is an upper bound (a small text may give fewer pieces; it is not an
    error). ``character_coverage`` 1.0 keeps every character of the text, so every word
    of the training text has a segmentation.
    """
    import sentencepiece as spm

    model_path = Path(model_path)
    model_path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=(s for s in sentences if s.strip()), model_writer=buf,
        vocab_size=vocab_size, model_type=model_type, character_coverage=character_coverage,
        hard_vocab_limit=False, unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1,
        input_sentence_size=max_sentences, shuffle_input_sentence=True, minloglevel=2)
    atomic_write_bytes(model_path, buf.getvalue())
    return model_path


class BpeModel:
    """A trained sentencepiece model: words -> pieces, pieces -> words."""

    def __init__(self, model_path: str | Path):
        import sentencepiece as spm

        model_path = Path(model_path)
        if not model_path.is_file():
            raise FileNotFoundError(f"{model_path}: sentencepiece model not found (the lang "
                                    "stage writes it for --unit-type bpe)")
        self.path = model_path
        self.sp = spm.SentencePieceProcessor(model_file=str(model_path))
        self.unk_id = self.sp.unk_id()

    def pieces(self) -> list[str]:
        """Every piece in id order (id 0 is <unk>)."""
        return [self.sp.id_to_piece(i) for i in range(self.sp.get_piece_size())]

    def segment(self, word: str) -> Optional[list[str]]:
        """One word -> its pieces; None if the model cannot express it (<unk>) or it is empty."""
        if not word or any(c.isspace() for c in word):
            return None
        ids = self.sp.encode(word)
        if not ids or self.unk_id in ids:
            return None
        return [self.sp.id_to_piece(i) for i in ids]

    __call__ = segment  # a `pronounce` function for LexiconTokenizer


def pieces_to_words(pieces: Sequence[str]) -> list[str]:
    """A piece sequence (e.g. CTC greedy output) -> words, split at the word-start marks."""
    return "".join(pieces).replace(WORD_START, " ").split()


def bpe_tokens(model: BpeModel) -> list[str]:
    """The token inventory in id order: <blk> in place of <unk>, then the pieces."""
    pieces = model.pieces()
    bad = [p for p in pieces[1:] if is_disambig(p) or p in RESERVED_WORDS or p == BLANK]
    if bad:
        raise ValueError(f"{model.path}: pieces clash with reserved symbols: {bad[:10]}; "
                         "normalise such characters out of the text")
    return [BLANK] + pieces[1:]


def bpe_lexicon(model: BpeModel, words: Iterable[str]) -> tuple[dict[str, list[str]], list[str]]:
    """Segment every word; return (lexicon, words without a segmentation)."""
    lexicon: dict[str, list[str]] = {}
    missing = []
    for w in sorted(set(words)):
        pieces = model.segment(w)
        if pieces is None:
            missing.append(w)
        else:
            lexicon[w] = pieces
    return lexicon, missing


def fragment_word(piece: str) -> str:
    """A piece's word symbol in an open-vocabulary lexicon: ``▁he`` -> ``▁he`` (it starts a
    word), ``llo`` -> ``▁+llo`` (it continues one)."""
    return piece if piece.startswith(WORD_START) else CONTINUATION + piece


def is_fragment(word: str) -> bool:
    return word.startswith(WORD_START)


def fragment_lexicon(model: BpeModel, words: Iterable[str] = ()) -> list[tuple[str, list[str]]]:
    """(fragment word, [piece]) for every piece of the model but <unk>, leaving out any
    whose symbol is already one of ``words`` (a word of the text starting with ``▁``)."""
    taken = set(words)
    out = []
    for piece in model.pieces()[1:]:
        word = fragment_word(piece)
        if word not in taken:
            out.append((word, [piece]))
    return out


def join_fragments(words: Sequence[str]) -> list[str]:
    """Decoded words with fragments (``▁he ▁+llo``) -> words (``hello``); words without
    fragments come back as they are. A continuation extends the word before it, whatever
    it is; a lone ``▁`` piece starts an empty word that is dropped if nothing extends it."""
    if not any(w.startswith(WORD_START) for w in words):
        return list(words)
    out: list[str] = []
    for w in words:
        if w.startswith(CONTINUATION):
            if out:
                out[-1] += w[len(CONTINUATION):]
            else:
                out.append(w[len(CONTINUATION):])
        elif w.startswith(WORD_START):
            out.append(w[len(WORD_START):])
        else:
            out.append(w)
    return [w for w in out if w]
