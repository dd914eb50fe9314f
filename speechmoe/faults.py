"""Fault injection for the kill-and-resume tests (never active unless asked for).

SPEECHMOE_KILL_AT names a point at which the process SIGKILLs itself, as a
scheduler or the OOM killer would:
  step:N         right after optimizer step N
  save:NAME      while saving the checkpoint file NAME, after its temporary file is
                 written and before the rename that publishes it
"""

from __future__ import annotations

import os
import signal


def maybe_kill(point: str, value) -> None:
    want = os.environ.get("SPEECHMOE_KILL_AT")
    if want and want == f"{point}:{value}":
        os.kill(os.getpid(), signal.SIGKILL)
