"""The learning-rate schedule and the warning for a warm-up longer than the run."""

import math

from speechmoe.train.schedule import lr_lambda, warmup_warning


def test_lr_lambda_warms_up_linearly_then_decays_as_inverse_square_root():
    f = lr_lambda(100)
    assert f(0) == f(1) == 0.01  # step 0 counts as 1
    assert f(50) == 0.5 and f(100) == 1.0
    assert math.isclose(f(400), 0.5)  # sqrt(100 / 400)
    assert lr_lambda(0)(7) == 1.0


def test_warmup_longer_than_half_the_run_is_named():
    # the smoke run: 1000 warm-up steps against 179 updates
    msg = warmup_warning(1000, steps_per_epoch=18, num_epochs=10)
    assert msg is not None
    assert "about 180 updates: 18 per epoch x 10 epochs" in msg
    assert "reaches only 18% of --lr" in msg and "--warmup-steps about 18" in msg
    # --max-steps shortens the run
    assert "--max-steps 300" in warmup_warning(500, 100, 10, max_steps=300)
    # a warm-up within the first half: nothing to say
    assert warmup_warning(1000, 300, 10) is None
    assert warmup_warning(90, 18, 10) is None
    assert warmup_warning(0, 18, 10) is None
