"""The learning-rate schedule of training, and the check that it fits the run.

Linear warm-up to the peak (--lr) over --warmup-steps updates, then inverse square-root
decay (Noam). A warm-up sized for a real corpus (the recipes' 1000 steps) is longer than a
whole smoke run on a few dozen utterances: the rate never gets near its peak and the
model learns nothing, with no error anywhere. `warmup_warning` names that case after the
first epoch, when the run's length in updates is known.
"""

from __future__ import annotations

import math
from typing import Optional


def lr_lambda(warmup: int):
    """The factor of the peak rate at each update (a LambdaLR function)."""
    def f(step: int) -> float:
        step = max(step, 1)
        return min(step / warmup, math.sqrt(warmup / step)) if warmup > 0 else 1.0
    return f


def warmup_warning(warmup: int, steps_per_epoch: int, num_epochs: int,
                   max_steps: int = 0) -> Optional[str]:
    """A warning when the warm-up takes more than half of the run's updates, else None."""
    total = steps_per_epoch * num_epochs
    if max_steps:
        total = min(total, max_steps)
    if warmup <= 0 or total <= 0 or warmup <= total / 2:
        return None
    reached = lr_lambda(warmup)(total)
    suggest = max(1, round(total / 10))
    return (f"the warm-up ({warmup} updates) is longer than half of this run (about {total} "
            f"updates: {steps_per_epoch} per epoch x {num_epochs} epochs"
            f"{f', --max-steps {max_steps}' if max_steps else ''}): the learning rate reaches "
            f"only {reached:.0%} of --lr by its end; for a run this short use --warmup-steps "
            f"about {suggest} (a tenth of it)")
