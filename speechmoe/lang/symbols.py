"""The text files of a lang dir: tokens.txt, words.txt, lexicon.txt; disambiguation.

    tokens.txt   "<token> <id>" per line; the CTC blank <blk> has id 0, ids 0..N-1.
                 Lines for disambiguation symbols (#0, #1, ...) are allowed and ignored.
    lexicon.txt  "word tok1 tok2 ..." per line; a word may have several lines.
    words.txt    <eps> 0, the lexicon's words, then #0, <s>, </s> (make_words_table).

Every writer is atomic (a temporary file, then a rename). Disambiguation symbols for
homophones and prefixes are added as Kaldi's add_lex_disambig.pl does
(``add_disambig_symbols``). The FSTs built from these files are in
``speechmoe.lang.graph``.

Importing this module loads only the standard library.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Mapping, Sequence, Union

from speechmoe.utils import atomic_write_text

BLANK = "<blk>"
EPS = "<eps>"
BOS = "<s>"
EOS = "</s>"
WORD_DISAMBIG = "#0"
RESERVED_WORDS = (EPS, WORD_DISAMBIG, BOS, EOS)
_DISAMBIG = re.compile(r"^#\d+$")

Lexicon = list[tuple[str, list[str]]]
LexiconLike = Union[Lexicon, Mapping[str, Sequence[str]], Iterable[tuple[str, Sequence[str]]]]


# --------------------------------------------------------------------------- text files


def _read_lines(path: Union[str, Path], what: str) -> list[tuple[int, list[str]]]:
    """Non-empty lines of a text file as (line number, fields); a missing file names itself."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            fields = line.split()
            if fields:
                out.append((n, fields))
    return out


def is_disambig(symbol: str) -> bool:
    """True for disambiguation symbols #0, #1, ..."""
    return bool(_DISAMBIG.match(symbol))


def _read_symbol_table(path: Union[str, Path], what: str) -> dict[str, int]:
    table: dict[str, int] = {}
    ids: dict[int, str] = {}
    for n, fields in _read_lines(path, what):
        if len(fields) != 2 or not fields[1].lstrip("-").isdigit():
            raise ValueError(f"{path}:{n}: expected '<symbol> <id>', got {' '.join(fields)!r}")
        sym, i = fields[0], int(fields[1])
        if sym in table:
            raise ValueError(f"{path}:{n}: symbol {sym!r} appears twice")
        if i in ids:
            raise ValueError(f"{path}:{n}: id {i} is used by {ids[i]!r} and {sym!r}")
        table[sym] = i
        ids[i] = sym
    if not table:
        raise ValueError(f"{path}: {what} is empty")
    return table


def _write_symbol_table(table: Mapping[str, int], path: Union[str, Path]) -> None:
    lines = [f"{sym} {i}\n" for sym, i in sorted(table.items(), key=lambda kv: kv[1])]
    atomic_write_text(path, "".join(lines))


def read_tokens(path: Union[str, Path]) -> dict[str, int]:
    """tokens.txt -> {token: id}. Every line is "<token> <id>"; the blank has id 0."""
    tokens = _read_symbol_table(path, "tokens file (tokens.txt)")
    real = {t: i for t, i in tokens.items() if not is_disambig(t)}
    ids = sorted(real.values())
    if ids != list(range(len(ids))):
        raise ValueError(f"{path}: token ids must be 0..{len(ids) - 1} without gaps "
                         f"(disambiguation symbols #k aside)")
    if BLANK in real and real[BLANK] != 0:
        raise ValueError(f"{path}: the blank {BLANK} must have id 0, not {real[BLANK]}")
    return tokens


def write_tokens(tokens: Union[Mapping[str, int], Sequence[str]], path: Union[str, Path]) -> None:
    """Write tokens.txt from {token: id} or from a list in id order (blank first)."""
    if not isinstance(tokens, Mapping):
        tokens = {t: i for i, t in enumerate(tokens)}
    _write_symbol_table(tokens, path)


def read_words(path: Union[str, Path]) -> dict[str, int]:
    """words.txt -> {word: id}."""
    return _read_symbol_table(path, "words file (words.txt)")


def write_words(words: Mapping[str, int], path: Union[str, Path]) -> None:
    _write_symbol_table(words, path)


def lexicon_entries(lexicon: LexiconLike) -> Lexicon:
    """Accept [(word, [tokens])] or {word: [tokens]}; return a list of (word, list)."""
    items = lexicon.items() if isinstance(lexicon, Mapping) else lexicon
    return [(w, list(p)) for w, p in items]


def read_lexicon(path: Union[str, Path]) -> Lexicon:
    """lexicon.txt -> [(word, [tok1, tok2, ...])], one entry per line, in file order."""
    out: Lexicon = []
    for n, fields in _read_lines(path, "lexicon file (lexicon.txt)"):
        if len(fields) < 2:
            raise ValueError(f"{path}:{n}: word {fields[0]!r} has no pronunciation")
        out.append((fields[0], fields[1:]))
    if not out:
        raise ValueError(f"{path}: lexicon file (lexicon.txt) is empty")
    return out


def write_lexicon(lexicon: LexiconLike, path: Union[str, Path]) -> None:
    """Write lexicon.txt ("word tok1 tok2 ..." per line)."""
    lines = []
    for w, pron in lexicon_entries(lexicon):
        if not pron:
            raise ValueError(f"word {w!r} has an empty pronunciation")
        lines.append(" ".join([w, *pron]) + "\n")
    atomic_write_text(path, "".join(lines))


# --------------------------------------------------------------------------- disambiguation


def add_disambig_symbols(lexicon: LexiconLike) -> tuple[Lexicon, int]:
    """Append #1, #2, ... to pronunciations that need them, as Kaldi's add_lex_disambig.pl.

    A pronunciation needs one if several entries share it (homophones: they get #1, #2, ...
    in lexicon order) or if it is a proper prefix of another pronunciation (it gets #1,
    or the next free number for its sequence). Exact duplicate (word, pronunciation)
    entries are dropped. #0 is reserved for the grammar's back-off arcs and is never
    used here.

    Returns (lexicon with the symbols appended, the largest k used; 0 when none).
    """
    entries: Lexicon = []
    seen = set()
    for w, pron in lexicon_entries(lexicon):
        if not pron:
            raise ValueError(f"word {w!r} has an empty pronunciation")
        if any(is_disambig(t) for t in pron):
            raise ValueError(f"word {w!r}: pronunciation already has a disambiguation symbol")
        key = (w, tuple(pron))
        if key not in seen:
            seen.add(key)
            entries.append((w, list(pron)))

    count: dict[tuple[str, ...], int] = {}
    prefixes: set[tuple[str, ...]] = set()
    for _, pron in entries:
        p = tuple(pron)
        count[p] = count.get(p, 0) + 1
        for i in range(1, len(p)):
            prefixes.add(p[:i])

    last: dict[tuple[str, ...], int] = {}
    max_disambig = 0
    out: Lexicon = []
    for w, pron in entries:
        p = tuple(pron)
        if count[p] > 1 or p in prefixes:
            k = last.get(p, 0) + 1
            last[p] = k
            max_disambig = max(max_disambig, k)
            out.append((w, [*pron, f"#{k}"]))
        else:
            out.append((w, list(pron)))
    return out, max_disambig


def num_real_tokens(tokens: Mapping[str, int]) -> int:
    """N: the number of tokens that are model outputs (disambiguation symbols aside)."""
    return 1 + max(i for t, i in tokens.items() if not is_disambig(t))


def with_disambig_tokens(tokens: Mapping[str, int], max_disambig: int) -> dict[str, int]:
    """tokens plus #0..#max_disambig at ids N, N+1, ... (N = number of real tokens)."""
    n = num_real_tokens(tokens)
    out = {t: i for t, i in tokens.items() if not is_disambig(t)}
    for k in range(max_disambig + 1):
        out[f"#{k}"] = n + k
    return out


def make_words_table(lexicon: LexiconLike) -> dict[str, int]:
    """<eps> 0, the lexicon's words in sorted order, then #0, <s>, </s>."""
    vocab = sorted({w for w, _ in lexicon_entries(lexicon)})
    bad = [w for w in vocab if w in RESERVED_WORDS or is_disambig(w)]
    if bad:
        raise ValueError(f"reserved symbols used as words in the lexicon: {bad}")
    table = {EPS: 0}
    for w in vocab:
        table[w] = len(table)
    for w in (WORD_DISAMBIG, BOS, EOS):
        table[w] = len(table)
    return table
