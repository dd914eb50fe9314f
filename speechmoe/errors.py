"""Errors whose message says what to fix (stage scripts print them as one line)."""


class NonFiniteLossError(RuntimeError):
    """Training stopped after too many steps in a row with a non-finite loss or gradient."""


class CorpusLayoutError(FileNotFoundError):
    """A corpus is missing or incomplete; the message names what, where, and where to get it."""
