"""The statistics of the tables, per system, test set and scoring method.

* mean and sample standard deviation (ddof=1) over seeds of the per-seed rate; a mean over zero
  seeds raises :class:`~speechmoe.tables.runs.NoRunsError`, a standard deviation over one seed
  is ``None`` ("n/a");
* the pooled rate: 100 * (errors summed over every seed and utterance) / (reference tokens summed
  the same way);
* against a reference system, the relative change of the pooled rates ``(rate_S - rate_ref) /
  rate_ref`` with a 95% paired-bootstrap interval: utterance indices are drawn with replacement
  (the same draw for both systems and every seed; utterances matched by id), both pooled rates and
  their relative change recomputed, and the 2.5 / 97.5 percentiles reported;
* the seed-noise criterion: a difference "exceeds seed noise" when ``|mean_S - mean_ref|`` is
  larger than ``max(std_S, std_ref)`` (the larger of the two seed standard deviations); it is
  ``None`` when either system has fewer than two seeds.

numpy is imported inside the functions that use it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from speechmoe.tables.runs import NoRunsError, TablesError, UtteranceMismatchError


def seed_stats(values: Sequence[float]) -> dict[str, Any]:
    """Mean, sample std (ddof=1; None for one value) and count of per-seed values.

    Raises :class:`NoRunsError` for zero values: a mean over nothing is not 0.
    """
    vals = [float(v) for v in values]
    n = len(vals)
    if n == 0:
        raise NoRunsError("mean over zero seeds")
    mean = sum(vals) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else None
    return {"mean": mean, "std": std, "n": n}


def _runs_with(runs: Mapping[str, Mapping[int, dict]], system: str, test_set: str,
               method: str) -> dict[int, dict]:
    by_seed = runs.get(system, {})
    if not by_seed:
        raise NoRunsError(f"{system}: no runs")
    have = {k: r for k, r in by_seed.items() if method in r["results"].get(test_set, {})}
    if not have:
        raise NoRunsError(f"{system}: no run has results for {test_set}/{method} "
                          f"(seeds present: {', '.join(map(str, by_seed))})")
    return have


def rate_stats(runs: Mapping[str, Mapping[int, dict]], system: str, test_set: str,
               method: str = "wfst") -> dict[str, Any]:
    """Per-seed rates of one system on one test set and method, their mean / std / n, the
    metric name and the pooled rate. Raises :class:`NoRunsError` when no seed has them."""
    have = _runs_with(runs, system, test_set, method)
    rates = {k: float(r["results"][test_set][method]["rate"]) for k, r in have.items()}
    metrics = sorted({str(r["results"][test_set][method]["metric"]) for r in have.values()})
    out = seed_stats(list(rates.values()))
    pooled = pooled_counts(runs, system, test_set, method)
    out.update({
        "seeds": list(rates), "rates_by_seed": {str(k): v for k, v in rates.items()},
        "metric": " / ".join(metrics),
        "pooled_rate": pooled["rate"], "errors": pooled["errors"], "ref_tokens": pooled["ref_tokens"],
        "utterances": len(pooled["ids"]),
    })
    return out


def pooled_counts(runs: Mapping[str, Mapping[int, dict]], system: str, test_set: str,
                  method: str = "wfst") -> dict[str, Any]:
    """Per-utterance errors and reference tokens summed over every seed of ``system``.

    Returns ``ids`` (sorted), ``errors_per_utt``, ``ref_per_utt`` (numpy arrays), the totals and
    the pooled rate in percent. Every seed must have the same utterance ids.
    """
    import numpy as np

    have = _runs_with(runs, system, test_set, method)
    ids = None
    err = ref = None
    first = None
    for seed, run in have.items():
        u = run["utts"][test_set][method]
        if ids is None:
            ids, first = u["ids"], seed
            err = np.zeros(len(ids), dtype=np.int64)
            ref = np.zeros(len(ids), dtype=np.int64)
        elif u["ids"] != ids:
            raise UtteranceMismatchError(
                f"{test_set}/{method}: {system} seed{seed} and seed{first} were scored on different "
                f"utterances ({_id_diff(u['ids'], ids, f'seed{seed}', f'seed{first}')})")
        err += u["errors"]
        ref += u["ref"]
    e_tot, r_tot = int(err.sum()), int(ref.sum())
    return {"ids": ids, "errors_per_utt": err, "ref_per_utt": ref, "errors": e_tot,
            "ref_tokens": r_tot, "rate": 100.0 * e_tot / r_tot, "seeds": list(have)}


def _id_diff(a: Sequence[str], b: Sequence[str], name_a: str, name_b: str) -> str:
    sa, sb = set(a), set(b)
    only_a, only_b = sorted(sa - sb), sorted(sb - sa)
    parts = [f"{len(only_a)} only in {name_a}" + (f", e.g. {only_a[0]!r}" if only_a else ""),
             f"{len(only_b)} only in {name_b}" + (f", e.g. {only_b[0]!r}" if only_b else "")]
    if not only_a and not only_b:
        parts.append("same ids in a different order or with repeats")
    return "; ".join(parts)


def _resampled_rel_change(e_s, r_s, e_r, r_r, n_boot: int, seed: int):
    """``n_boot`` paired resamples of the relative change (nan where the reference's resampled
    rate is 0 or undefined)."""
    import numpy as np

    n = len(e_s)
    rng = np.random.default_rng(seed)
    rel = np.empty(n_boot, dtype=np.float64)
    chunk = max(1, min(n_boot, 4_000_000 // n))  # bound memory: chunk x n indices at a time
    for start in range(0, n_boot, chunk):
        k = min(chunk, n_boot - start)
        idx = rng.integers(0, n, size=(k, n))
        with np.errstate(divide="ignore", invalid="ignore"):
            bs = e_s[idx].sum(axis=1) / r_s[idx].sum(axis=1)  # nan / inf where no ref tokens drawn
            br = e_r[idx].sum(axis=1) / r_r[idx].sum(axis=1)
            rel[start:start + k] = np.where(br > 0, (bs - br) / br, np.nan)
    return rel


def paired_bootstrap(errors: Sequence[int], ref: Sequence[int], errors_ref: Sequence[int],
                     ref_ref: Sequence[int], n_boot: int = 1000, seed: int = 0,
                     level: float = 0.95) -> dict[str, Any]:
    """Relative change of pooled rates, system vs reference, with a paired-bootstrap interval.

    The four arrays are per-utterance counts aligned on the same utterances (already summed over
    seeds). Each resample draws utterance indices with replacement (``numpy.random.default_rng(
    seed)``), applies the same indices to both systems and recomputes ``(rate - rate_ref) /
    rate_ref``. Returns ``rel_change`` (a fraction), ``ci_low`` / ``ci_high`` (percentiles
    (1-level)/2 and (1+level)/2), ``ci_excludes_zero`` and ``n_valid`` (resamples with a
    non-zero reference rate). ``rel_change`` is None when the reference has no errors at all.
    """
    import numpy as np

    e_s, r_s = np.asarray(errors, dtype=np.int64), np.asarray(ref, dtype=np.int64)
    e_r, r_r = np.asarray(errors_ref, dtype=np.int64), np.asarray(ref_ref, dtype=np.int64)
    n = len(e_s)
    if not (len(r_s) == len(e_r) == len(r_r) == n):
        raise ValueError("paired_bootstrap: the four per-utterance arrays must have one length")
    if n == 0:
        raise NoRunsError("paired bootstrap over zero utterances")
    if n_boot < 1:
        raise ValueError("paired_bootstrap: n_boot must be >= 1")
    if r_s.sum() == 0 or r_r.sum() == 0:
        raise TablesError("paired bootstrap: no reference tokens")
    rate_s = e_s.sum() / r_s.sum()
    rate_r = e_r.sum() / r_r.sum()
    out: dict[str, Any] = {"n_bootstrap": int(n_boot), "bootstrap_seed": int(seed),
                           "level": level}
    if e_r.sum() == 0:
        out.update(rel_change=None, ci_low=None, ci_high=None, ci_excludes_zero=None, n_valid=0)
        return out
    rel = _resampled_rel_change(e_s, r_s, e_r, r_r, n_boot, seed)
    valid = rel[np.isfinite(rel)]
    lo_q, hi_q = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    if len(valid):
        lo, hi = (float(x) for x in np.percentile(valid, [lo_q, hi_q]))
    else:
        lo = hi = None
    out.update(rel_change=float((rate_s - rate_r) / rate_r), ci_low=lo, ci_high=hi,
               ci_excludes_zero=None if lo is None else bool(lo > 0 or hi < 0),
               n_valid=len(valid))
    return out


def exceeds_seed_noise(stats: Mapping[str, Any], stats_ref: Mapping[str, Any]) -> bool | None:
    """Whether ``|mean - mean_ref| > max(std, std_ref)``; None if either std is None (one seed)."""
    if stats.get("std") is None or stats_ref.get("std") is None:
        return None
    return bool(abs(stats["mean"] - stats_ref["mean"]) > max(stats["std"], stats_ref["std"]))


def compare(runs: Mapping[str, Mapping[int, dict]], system: str, ref: str, test_set: str,
            method: str = "wfst", n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """System vs reference on one test set and method: pooled rates, their relative change with
    a paired-bootstrap 95% interval, the seed means / stds and the seed-noise criterion.

    Utterances are matched by id; :class:`UtteranceMismatchError` if the id lists differ,
    :class:`NoRunsError` if either system has no runs for this test set and method.
    """
    st_s = rate_stats(runs, system, test_set, method)
    st_r = rate_stats(runs, ref, test_set, method)
    pc_s = pooled_counts(runs, system, test_set, method)
    pc_r = pooled_counts(runs, ref, test_set, method)
    if pc_s["ids"] != pc_r["ids"]:
        raise UtteranceMismatchError(
            f"{test_set}/{method}: {system} and {ref} were scored on different utterances "
            f"({_id_diff(pc_s['ids'], pc_r['ids'], system, ref)})")
    boot = paired_bootstrap(pc_s["errors_per_utt"], pc_s["ref_per_utt"], pc_r["errors_per_utt"],
                            pc_r["ref_per_utt"], n_boot=n_boot, seed=seed)
    return {
        "system": system, "ref": ref, "test_set": test_set, "method": method,
        "seeds": pc_s["seeds"], "seeds_ref": pc_r["seeds"], "utterances": len(pc_s["ids"]),
        "pooled_rate": pc_s["rate"], "pooled_rate_ref": pc_r["rate"],
        **{k: boot[k] for k in ("rel_change", "ci_low", "ci_high", "ci_excludes_zero", "n_valid",
                                "n_bootstrap", "bootstrap_seed")},
        "mean": st_s["mean"], "mean_ref": st_r["mean"], "std": st_s["std"], "std_ref": st_r["std"],
        "mean_diff": st_s["mean"] - st_r["mean"],
        "noise_threshold": (None if st_s["std"] is None or st_r["std"] is None
                            else max(st_s["std"], st_r["std"])),
        "exceeds_seed_noise": exceeds_seed_noise(st_s, st_r),
    }
