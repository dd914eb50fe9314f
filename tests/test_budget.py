"""The convergence budget of issue 36's comparison (speechmoe.tables.budget), on curves whose
answer is worked out by hand."""

import json

import pytest

from speechmoe.tables.budget import CurveError, convergence_budget, main, ter_at


def curve(fn, cap=8000, every=200):
    return [{"step": s, "dev_greedy_ter": fn(s)} for s in range(every, cap + 1, every)]


def test_ter_at_is_the_mean_of_the_last_three_measurements():
    c = curve(lambda s: s / 100)  # 2, 4, 6, ...
    assert ter_at(c, 1000) == pytest.approx((6 + 8 + 10) / 3)
    with pytest.raises(CurveError, match="no dev measurement there"):
        ter_at(c, 1100)
    with pytest.raises(CurveError, match="2 dev measurements"):
        ter_at(c, 400)


def test_the_first_budget_whose_last_fifth_gains_under_3_percent():
    # TER = 10 until update 4000, then flat at 5: every window ending at or after 4400 is 5.
    # N=2000..4000: TER(0.8N) = TER(N) = 10 -> gain 0: converged at 2000 already.
    flat_then_drop = convergence_budget(curve(lambda s: 10.0 if s <= 4000 else 5.0))
    assert flat_then_drop["budget"] == 2000 and flat_then_drop["converged"]
    # TER = 1000 / sqrt(s): gain over the last fifth = 1 - sqrt(0.8) = 10.6% everywhere,
    # up to the window's smoothing: never converged, the cap is the budget.
    slow = convergence_budget(curve(lambda s: 1000 / s ** 0.5))
    assert slow["budget"] == 8000 and not slow["converged"]
    assert all(not c["converged"] for c in slow["candidates"])
    assert [c["budget"] for c in slow["candidates"]] == list(range(2000, 8001, 1000))
    # linear decline to update 5000, flat after: N=6000 compares 4800 with 6000.
    def f(s):
        return 20 - 3 * s / 1000 if s <= 5000 else 5.0
    result = convergence_budget(curve(f))
    by_n = {c["budget"]: c for c in result["candidates"]}
    # at 5000: TER(4000) mean of 3600, 3800, 4000 = 20 - 11.4 = 8.6; TER(5000) = 5.6
    assert by_n[5000]["ter_at_0.8n"] == pytest.approx(8.6)
    assert by_n[5000]["ter_at_n"] == pytest.approx(5.6)
    # at 6000: TER(4800) = mean(6.8, 6.2, 5.6) = 6.2, TER(6000) = 5: gain 19% -> not yet
    assert by_n[6000]["relative_improvement"] == pytest.approx((6.2 - 5) / 6.2, abs=1e-4)
    assert result["budget"] == 7000  # TER(5600) = TER(7000) = 5


def test_an_epoch_end_between_two_measurements_is_left_out():
    def f(s):
        return 20 - 3 * s / 1000 if s <= 5000 else 5.0
    with_epoch_end = curve(f) + [{"step": 4317, "dev_greedy_ter": 99.0}]
    assert convergence_budget(with_epoch_end) == convergence_budget(curve(f))


def test_a_curve_short_of_the_cap_is_refused():
    with pytest.raises(CurveError, match="before the cap 8000"):
        convergence_budget(curve(lambda s: 5.0, cap=6000))
    with pytest.raises(CurveError, match="no dev measurement"):
        convergence_budget(curve(lambda s: 5.0, every=300, cap=8100), grid=300)


def test_cli_writes_the_budget_and_names_a_bad_file(tmp_path, capsys):
    run = tmp_path / "seed1.json"
    run.write_text(json.dumps({"dev_curve": curve(lambda s: 1000 / s ** 0.5)}))
    out = tmp_path / "budget.json"
    assert main([str(run), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["budget"] == 8000
    assert "not converged" in capsys.readouterr().err
    run.write_text(json.dumps({"dev_curve": curve(lambda s: 5.0, cap=4000)}))
    assert main([str(run)]) == 1
    assert str(run) in capsys.readouterr().err
