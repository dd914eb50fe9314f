"""Mandarin text normalisation: what a transcript or LM sentence may contain.

A normalised sentence is a list of words, each a run of CJK characters.
Numbers are spoken out (cn2an: "1998年" -> "一九九八年", "70%" -> "百分之七十");
full-width forms are folded (NFKC); anything else that cannot be spoken as
Mandarin (Latin letters, symbols) makes the word unusable, and the caller
drops the sentence.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Iterable, Iterator, Optional

CJK = "\u4e00-\u9fff"
_CJK_WORD = re.compile(f"[{CJK}]+")
_HAS_DIGIT = re.compile(r"\d")
# Characters that may stay inside a segment before numbers are spoken out.
_SEGMENT = re.compile(rf"[{CJK}0-9.%]+")


def normalize_word(word: str) -> Optional[str]:
    """One word -> its spoken CJK form, or None if it cannot be spoken."""
    w = unicodedata.normalize("NFKC", word).strip()
    if _HAS_DIGIT.search(w):
        w = numbers_to_chinese(w)
        if w is None:
            return None
    return w if _CJK_WORD.fullmatch(w) else None


def numbers_to_chinese(text: str) -> Optional[str]:
    import cn2an

    try:
        return cn2an.transform(text, "an2cn")
    except Exception:  # cn2an raises bare ValueError / KeyError on odd input
        return None


def normalize_words(words: Iterable[str]) -> Optional[list[str]]:
    """A pre-segmented sentence -> normalised words, or None if any word cannot be spoken."""
    out = []
    for word in words:
        w = normalize_word(word)
        if w is None:
            return None
        out.append(w)
    return out or None


def split_segments(text: str) -> Iterator[str]:
    """Raw text -> runs between punctuation (commas, full stops, spaces, symbols).

    A run keeps digits, '.' and '%' so that numbers survive until they are
    spoken out; a run that touches Latin letters is split there and the
    letters are dropped with the punctuation.
    """
    text = unicodedata.normalize("NFKC", text)
    # Latin letters glued to Chinese make the whole run unspeakable for a
    # Mandarin voice: mark the run so that the caller drops it.
    for piece in re.split(r"[^\w.%]+|_", text):
        if not piece:
            continue
        if re.search(r"[A-Za-z]", piece):
            yield ""  # an unspeakable run: dropped by the caller, never merged
            continue
        for seg in _SEGMENT.findall(piece):
            yield seg.strip(".")


def segment_words(text: str) -> list[str]:
    """Unsegmented Chinese -> words (jieba)."""
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)
    return [w for w in jieba.lcut(text, HMM=True) if w.strip()]


def normalize_sentence(text: str) -> Optional[list[str]]:
    """An unsegmented segment (no punctuation) -> normalised words, or None."""
    if not text:
        return None
    if _HAS_DIGIT.search(text):
        text = numbers_to_chinese(text)
        if text is None:
            return None
    if not _CJK_WORD.fullmatch(text):
        return None
    return segment_words(text)


def characters(words: Iterable[str]) -> str:
    """Words -> the character string scored by CER (no spaces)."""
    return "".join(words)
