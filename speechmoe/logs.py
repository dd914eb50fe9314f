"""Logging set-up shared by the stage scripts: console + a log file under the experiment dir."""

from __future__ import annotations

import logging
import sys
from pathlib import Path


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
