"""What the stage scripts (local/*.py) share: their parser built from their docstring, the
logger (console + a log file under the experiment dir), and main() run with known errors
as one line."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from speechmoe.config import ConfigError
from speechmoe.errors import NonFiniteLossError


def script_parser(doc: str, epilog: bool = True, show_defaults: bool = False,
                  prog: str | None = None) -> argparse.ArgumentParser:
    """A script's parser from its docstring: the first paragraph is the description, the
    rest the epilog as written (epilog=False: none); show_defaults: each option's default
    added to its help, and no epilog."""
    description, _, rest = doc.partition("\n\n")
    if show_defaults:
        return argparse.ArgumentParser(prog=prog, description=description,
                                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    return argparse.ArgumentParser(prog=prog, description=description,
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog=rest if epilog else None)


def setup_logger(log_file: str | Path | None = None, name: str = "speechmoe",
                 level: int = logging.INFO) -> logging.Logger:
    """Log to stderr and, if given, append to `log_file` (its directory is created)."""
    logger = logging.getLogger(name)
    logger.setLevel(level)
    logger.propagate = False
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()
    fmt = logging.Formatter("%(asctime)s %(levelname)s [%(filename)s:%(lineno)d] %(message)s")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    for h in handlers:
        h.setFormatter(fmt)
        logger.addHandler(h)
    return logger


def cli_main(main, argv=None) -> int:
    """Run a stage script's main(); a known error becomes one line on stderr and exit code 2.

    Known errors are the ones whose message says what to fix: bad configs, missing
    files, unusable data, a training run that cannot go on. Anything else keeps its
    traceback (a bug); SPEECHMOE_DEBUG=1 keeps it for every error.
    """
    import os

    known: tuple = (ConfigError, FileNotFoundError, ValueError, NonFiniteLossError)
    try:
        return main(argv)
    except known as exc:
        if os.environ.get("SPEECHMOE_DEBUG"):
            raise
        prog = os.path.basename(sys.argv[0])
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
