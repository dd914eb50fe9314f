"""The paper's Tables 1-3 and Figure 2 from per-run result files, with seeds and error bars.

Input (written by the training / decoding stages, only read here)::

    <tables_dir>/runs/<system>/seed<k>.json           run summary (params, MACs, epochs, routing, rates)
    <tables_dir>/runs/<system>/seed<k>.utts.json.gz   per-utterance error and reference counts

Numbers computed, per system, test set and scoring method ("wfst" = CER after WFST decoding,
"ctc_greedy" = toned-syllable error rate of greedy CTC):

* mean and sample standard deviation (ddof=1) over seeds of the per-seed rate; a mean over zero
  seeds raises :class:`NoRunsError`, a standard deviation over one seed is ``None`` ("n/a");
* the pooled rate: 100 * (errors summed over every seed and utterance) / (reference tokens summed
  the same way);
* against a reference system, the relative change of the pooled rates ``(rate_S - rate_ref) /
  rate_ref`` with a 95% paired-bootstrap interval: utterance indices are drawn with replacement
  (the same draw for both systems and every seed; utterances matched by id), both pooled rates and
  their relative change recomputed, and the 2.5 / 97.5 percentiles reported;
* the seed-noise criterion: a difference "exceeds seed noise" when ``|mean_S - mean_ref|`` is
  larger than ``max(std_S, std_ref)`` (the larger of the two seed standard deviations); it is
  ``None`` when either system has fewer than two seeds.

``python -m speechmoe.tables --tables-dir DIR`` writes ``TABLES.md``, ``tables.json``,
``fig2_dev_loss.png`` and ``routing_moe_8e.png`` into DIR.

numpy and matplotlib are imported inside the functions that use them.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

# --------------------------------------------------------------------------------------------
# Constants: systems, the paper's numbers, the tables and the claims.

SYSTEMS: tuple[str, ...] = ("b1", "b2", "moe_l1", "moe_emb", "moe_4e", "moe_2e", "moe_8e")

#: Our system name -> the paper's row name.
PAPER_NAMES: dict[str, str] = {
    "b1": "B1",
    "b2": "B2",
    "moe_l1": "MoE-L1",
    "moe_emb": "+emb",
    "moe_4e": "+imp loss / MoE-4e",
    "moe_2e": "MoE-2e",
    "moe_8e": "MoE-8e",
}

#: The paper's four test-set columns.
PAPER_COLUMNS: tuple[str, ...] = ("Read", "Chat", "Spon", "AISHELL")

#: Our test set -> the paper's column (an AISHELL-2 recipe passes e.g. {"test_ios": "AISHELL"}).
DEFAULT_SET_NAMES: dict[str, str] = {"test_read": "Read", "test_chat": "Chat", "test_spon": "Spon"}

#: Tables 1-3 of the paper: params, FLOPs of a 1 s input, CER (%) per test-set column.
PAPER_RESULTS: dict[str, dict[str, Any]] = {
    "b1": {"params": 71e6, "flops": 2.3e9,
           "cer": {"Read": 2.0, "Chat": 22.92, "Spon": 24.95, "AISHELL": 4.52}},
    "b2": {"params": 134e6, "flops": 2.3e9,
           "cer": {"Read": 1.81, "Chat": 22.49, "Spon": 24.90, "AISHELL": 4.50}},
    "moe_l1": {"params": 134e6, "flops": 2.3e9,
               "cer": {"Read": 1.69, "Chat": 22.47, "Spon": 24.70, "AISHELL": 4.25}},
    "moe_emb": {"params": 170e6, "flops": 2.3e9,
                "cer": {"Read": 1.63, "Chat": 22.15, "Spon": 24.15, "AISHELL": 4.16}},
    "moe_4e": {"params": 170e6, "flops": 2.3e9,
               "cer": {"Read": 1.58, "Chat": 21.57, "Spon": 23.31, "AISHELL": 4.00}},
    "moe_2e": {"params": 105e6, "flops": 2.3e9,
               "cer": {"Read": 1.62, "Chat": 21.82, "Spon": 23.52, "AISHELL": 4.08}},
    "moe_8e": {"params": 297e6, "flops": 2.3e9,
               "cer": {"Read": 1.54, "Chat": 21.31, "Spon": 22.97, "AISHELL": 3.98}},
}

#: The relative changes the paper prints itself (Table 3, MoE-8e against B1), in percent.
PAPER_PRINTED_REL_CHANGE: dict[str, dict[str, float]] = {
    "moe_8e": {"Read": -23.0, "Chat": -7.0, "Spon": -7.9, "AISHELL": -11.9},
}

#: The tables as the paper groups them; ``names`` overrides the row name inside that table.
TABLE_SPECS: dict[str, dict[str, Any]] = {
    "table1": {"title": "Table 1: adding the sparsity L1 loss",
               "systems": ("b1", "b2", "moe_l1"), "refs": ("b1", "b2"), "names": {}},
    "table2": {"title": "Table 2: shared embedding network and mean importance loss",
               "systems": ("moe_l1", "moe_emb", "moe_4e"), "refs": ("b1",),
               "names": {"moe_4e": "+imp loss"}},
    "table3": {"title": "Table 3: increasing the number of experts",
               "systems": ("b1", "moe_2e", "moe_4e", "moe_8e"), "refs": ("b1",),
               "names": {"moe_4e": "MoE-4e"}},
}

#: The paper's orderings: (better, worse) means "better has the lower CER".
CLAIMS: tuple[tuple[str, str], ...] = (
    ("b2", "b1"),
    ("moe_l1", "b2"),
    ("moe_emb", "moe_l1"),
    ("moe_4e", "moe_emb"),
    ("moe_8e", "moe_4e"),
    ("moe_4e", "moe_2e"),
    ("moe_2e", "b1"),
)

#: Figure 2's systems.
DEV_LOSS_SYSTEMS: tuple[str, ...] = ("b1", "moe_2e", "moe_4e", "moe_8e")

METHODS: tuple[str, ...] = ("wfst", "ctc_greedy")

_RUN_FILE = re.compile(r"^seed(\d+)\.json$")
_REQUIRED_KEYS = ("system", "seed", "params", "macs_per_second", "normalization", "epochs",
                  "routing", "decode", "results")
_RESULT_KEYS = ("metric", "rate", "utterances", "ref_tokens")
_RATE_TOLERANCE = 0.02  # rate in seed<k>.json vs 100*sum(errors)/sum(ref): absolute, in percent


# --------------------------------------------------------------------------------------------
# Errors.

# Why a convention is used (speechmoe/losses.py defines both); the choice is made before
# any run and written here, never picked by which one favours a system.
NORMALIZATION_WHY = {
    "utterance": "The authors' own (their released toolkit, tencent-ailab/3m-asr: CTC summed "
                 "over each utterance and averaged over the batch, the MoE layers' auxiliary "
                 "losses summed over layers): the paper's alpha = beta = 0.1 and gamma = 0.01 "
                 "were set under it, so it is the faithful reading of eq. 12. Chosen before "
                 "any run.",
    "frame": "The toolkit's default (CTC per output frame, auxiliary losses averaged over "
             "layers), under which its recipes' learning rates were set; the auxiliary "
             "losses weigh more against CTC than in the authors' code.",
}


class TablesError(ValueError):
    """Something about the run files that prevents a table; the message says what and where."""


class RunFileError(TablesError):
    """A run file is missing, unreadable or lacks a key (the message names the file)."""


class NoRunsError(TablesError):
    """A statistic was asked of zero seeds (never reported as 0)."""


class UtteranceMismatchError(TablesError):
    """Two runs that must be paired by utterance do not have the same utterance ids."""


# --------------------------------------------------------------------------------------------
# Loading.

def paper_name(system: str, table: str | None = None) -> str:
    """The paper's row name for ``system`` (inside ``table`` where it differs), else the name."""
    if table is not None:
        names = TABLE_SPECS.get(table, {}).get("names", {})
        if system in names:
            return names[system]
    return PAPER_NAMES.get(system, system)


def run_paths(tables_dir: str | Path, system: str, seed: int) -> tuple[Path, Path]:
    """The (summary, per-utterance) file paths of one run."""
    d = Path(tables_dir) / "runs" / system
    return d / f"seed{seed}.json", d / f"seed{seed}.utts.json.gz"


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _need(cond: bool, path: Path, what: str) -> None:
    if not cond:
        raise RunFileError(f"{path}: {what}")


def _validate_summary(run: Any, path: Path, system: str | None, seed: int | None) -> None:
    _need(isinstance(run, dict), path, "expected a JSON object at the top level")
    missing = [k for k in _REQUIRED_KEYS if k not in run]
    _need(not missing, path, f"missing key(s) {', '.join(repr(k) for k in missing)}")
    if system is not None:
        _need(run["system"] == system, path,
              f"'system' is {run['system']!r} but the file lies under runs/{system}/")
    if seed is not None:
        _need(run["seed"] == seed, path, f"'seed' is {run['seed']!r} but the file is seed{seed}.json")
    for key in ("params", "macs_per_second"):
        _need(_is_number(run[key]) and run[key] >= 0, path, f"{key!r} must be a non-negative number")
    _need(run["normalization"] in ("frame", "utterance"), path,
          f"'normalization' must be 'frame' or 'utterance', not {run['normalization']!r}")
    _need(isinstance(run["epochs"], list), path, "'epochs' must be a list")
    for i, ep in enumerate(run["epochs"]):
        _need(isinstance(ep, dict) and all(k in ep for k in ("epoch", "train_seconds", "dev_ctc")),
              path, f"epochs[{i}] needs 'epoch', 'train_seconds' and 'dev_ctc'")
        _need(all(_is_number(ep[k]) for k in ("epoch", "train_seconds", "dev_ctc")), path,
              f"epochs[{i}]: 'epoch', 'train_seconds' and 'dev_ctc' must be finite numbers")
        _need(ep.get("resumed") in (None, "carried", "partial"), path,
              f"epochs[{i}]: 'resumed' must be 'carried' or 'partial', not {ep.get('resumed')!r}")
    _need(isinstance(run["routing"], list), path, "'routing' must be a list ([] for a static model)")
    for i, rec in enumerate(run["routing"]):
        _need(isinstance(rec, dict) and "step" in rec and isinstance(rec.get("layers"), list), path,
              f"routing[{i}] needs 'step' and a list 'layers'")
        for j, lay in enumerate(rec["layers"]):
            _need(isinstance(lay, dict) and "layer" in lay and "entropy" in lay
                  and isinstance(lay.get("fraction"), list) and len(lay["fraction"]) > 0, path,
                  f"routing[{i}].layers[{j}] needs 'layer', a non-empty list 'fraction' and 'entropy'")
    _need(isinstance(run["decode"], dict), path, "'decode' must be an object")
    for key in ("network_rtf", "wfst_rtf", "decode_rtf"):
        v = run["decode"].get(key)
        _need(v is None or (_is_number(v) and v >= 0), path,
              f"decode[{key!r}] must be a non-negative number or null")
    res = run["results"]
    _need(isinstance(res, dict), path, "'results' must be an object {test_set: {method: {...}}}")
    for test_set, methods in res.items():
        _need(isinstance(methods, dict), path, f"results[{test_set!r}] must be an object")
        for method, r in methods.items():
            where = f"results[{test_set!r}][{method!r}]"
            _need(isinstance(r, dict), path, f"{where} must be an object")
            miss = [k for k in _RESULT_KEYS if k not in r]
            _need(not miss, path, f"{where} is missing key(s) {', '.join(repr(k) for k in miss)}")
            _need(_is_number(r["rate"]), path, f"{where}['rate'] must be a finite number")


def _load_utts(run: dict, path: Path, summary: Path) -> dict:
    import numpy as np

    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            raw = json.load(f)
    except FileNotFoundError:
        raise RunFileError(f"{path}: missing (every seed<k>.json needs its seed<k>.utts.json.gz)") \
            from None
    except (OSError, EOFError, ValueError) as e:
        raise RunFileError(f"{path}: not a gzip JSON file ({e})") from None
    _need(isinstance(raw, dict), path, "expected a JSON object {test_set: {method: {...}}}")
    utts: dict[str, dict[str, dict]] = {}
    for test_set, methods in run["results"].items():
        for method, r in methods.items():
            where = f"[{test_set!r}][{method!r}]"
            entry = raw.get(test_set, {}).get(method) if isinstance(raw.get(test_set), dict) else None
            _need(isinstance(entry, dict), path, f"no per-utterance arrays for {where}")
            miss = [k for k in ("ids", "errors", "ref") if k not in entry]
            _need(not miss, path, f"{where} is missing key(s) {', '.join(repr(k) for k in miss)}")
            ids, errors, ref = entry["ids"], entry["errors"], entry["ref"]
            _need(len(ids) == len(errors) == len(ref), path,
                  f"{where}: 'ids', 'errors' and 'ref' differ in length "
                  f"({len(ids)}, {len(errors)}, {len(ref)})")
            _need(len(set(ids)) == len(ids), path, f"{where}: duplicate utterance ids")
            try:
                err_a = np.asarray(errors, dtype=np.int64)
                ref_a = np.asarray(ref, dtype=np.int64)
            except (TypeError, ValueError):
                raise RunFileError(f"{path}: {where}: 'errors' and 'ref' must be integers") from None
            _need(bool((err_a >= 0).all() and (ref_a >= 0).all()), path,
                  f"{where}: negative error or reference counts")
            _need(len(ids) == r["utterances"], path,
                  f"{where}: {len(ids)} utterances but {summary.name} says {r['utterances']}")
            _need(int(ref_a.sum()) == r["ref_tokens"], path,
                  f"{where}: {int(ref_a.sum())} reference tokens but {summary.name} says "
                  f"{r['ref_tokens']}")
            _need(ref_a.sum() > 0, path, f"{where}: no reference tokens, the rate is undefined")
            rate = 100.0 * err_a.sum() / ref_a.sum()
            _need(abs(rate - r["rate"]) <= _RATE_TOLERANCE, path,
                  f"{where}: 100*sum(errors)/sum(ref) = {rate:.4f} but {summary.name} says rate "
                  f"{r['rate']}")
            order = sorted(range(len(ids)), key=ids.__getitem__)
            utts.setdefault(test_set, {})[method] = {
                "ids": [ids[i] for i in order],
                "errors": err_a[order],
                "ref": ref_a[order],
            }
    return utts


def load_run(json_path: str | Path, system: str | None = None, seed: int | None = None) -> dict:
    """Load and check one ``seed<k>.json`` and its ``seed<k>.utts.json.gz``.

    The returned dict is the summary plus ``"utts"`` ({test_set: {method: {"ids", "errors",
    "ref"}}}, arrays sorted by utterance id) and ``"path"``. Raises :class:`RunFileError` naming
    the file for anything missing or malformed.
    """
    path = Path(json_path)
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunFileError(f"{path}: missing") from None
    except (OSError, ValueError) as e:
        raise RunFileError(f"{path}: not a readable JSON file ({e})") from None
    _validate_summary(run, path, system, seed)
    utts_path = path.with_name(path.name[: -len(".json")] + ".utts.json.gz")
    run["utts"] = _load_utts(run, utts_path, path)
    run["path"] = str(path)
    return run


def load_runs(tables_dir: str | Path, systems: Iterable[str] | None = None,
              seeds: Iterable[int] | None = None) -> dict[str, dict[int, dict]]:
    """All runs under ``<tables_dir>/runs``: ``{system: {seed: run}}`` (see :func:`load_run`).

    ``systems`` / ``seeds`` restrict what is read (None: everything present). Systems with no
    run files are left out of the result; :func:`missing_runs` lists what a grid lacks.
    """
    root = Path(tables_dir) / "runs"
    if not root.is_dir():
        raise TablesError(f"{root}: no such directory (expected runs/<system>/seed<k>.json)")
    want_systems = None if systems is None else set(systems)
    want_seeds = None if seeds is None else {int(s) for s in seeds}
    runs: dict[str, dict[int, dict]] = {}
    for sdir in sorted(p for p in root.iterdir() if p.is_dir()):
        if want_systems is not None and sdir.name not in want_systems:
            continue
        for f in sorted(sdir.iterdir()):
            m = _RUN_FILE.match(f.name)
            if not m:
                continue
            seed = int(m.group(1))
            if want_seeds is not None and seed not in want_seeds:
                continue
            runs.setdefault(sdir.name, {})[seed] = load_run(f, sdir.name, seed)
    return {s: dict(sorted(v.items())) for s, v in runs.items()}


def missing_runs(runs: Mapping[str, Mapping[int, Any]], systems: Iterable[str],
                 seeds: Iterable[int]) -> list[tuple[str, int]]:
    """The (system, seed) pairs of the ``systems`` x ``seeds`` grid that ``runs`` lacks."""
    return [(s, k) for s in systems for k in seeds if k not in runs.get(s, {})]


def select_runs(runs: Mapping[str, Mapping[int, dict]], systems: Iterable[str] | None = None,
                seeds: Iterable[int] | None = None) -> dict[str, dict[int, dict]]:
    """The runs of ``systems`` x ``seeds`` that exist (None: all)."""
    systems = list(runs) if systems is None else list(systems)
    seeds_set = None if seeds is None else {int(k) for k in seeds}
    out = {}
    for s in systems:
        sel = {k: r for k, r in runs.get(s, {}).items() if seeds_set is None or k in seeds_set}
        if sel:
            out[s] = dict(sorted(sel.items()))
    return out


def normalization(runs: Mapping[str, Mapping[int, dict]]) -> str:
    """The loss normalisation convention shared by every run; raises if they disagree or none."""
    seen: dict[str, list[str]] = {}
    for system, by_seed in runs.items():
        for seed, run in by_seed.items():
            seen.setdefault(run["normalization"], []).append(f"{system}/seed{seed}")
    if not seen:
        raise NoRunsError("no runs, so no loss normalisation convention to report")
    if len(seen) > 1:
        detail = "; ".join(f"{k!r}: {', '.join(v)}" for k, v in sorted(seen.items()))
        raise TablesError(f"runs disagree on the loss normalisation convention ({detail})")
    return next(iter(seen))


# --------------------------------------------------------------------------------------------
# Statistics.

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


def paper_relative_change(system: str, ref: str, column: str | None) -> float | None:
    """(CER_S - CER_ref) / CER_ref from the paper's numbers (a fraction), None without them."""
    if column is None:
        return None
    a = PAPER_RESULTS.get(system, {}).get("cer", {}).get(column)
    b = PAPER_RESULTS.get(ref, {}).get("cer", {}).get(column)
    if a is None or b is None:
        return None
    return (a - b) / b


def _mean_or_none(values: Iterable[Any]) -> float | None:
    vals = [float(v) for v in values if _is_number(v)]
    return sum(vals) / len(vals) if vals else None


def _median_or_none(values: Iterable[Any]) -> float | None:
    import statistics

    vals = [float(v) for v in values if v is not None]
    return statistics.median(vals) if vals else None


def _same_or_range(values: Sequence[float]) -> dict[str, Any]:
    vals = [float(v) for v in values]
    return {"value": vals[0] if len(set(vals)) == 1 else None, "min": min(vals), "max": max(vals)}


def _wfst_rtf(decode: Mapping[str, Any]) -> float | None:
    """The WFST search's real-time factor: ``wfst_rtf``, else ``decode_rtf`` (local/tables.py
    writes the latter), else None."""
    v = decode.get("wfst_rtf")
    return v if v is not None else decode.get("decode_rtf")


def system_costs(runs_of_system: Mapping[int, dict]) -> dict[str, Any]:
    """Params, MACs per second of audio, the median training seconds per epoch (over every
    epoch of every seed: one epoch slowed by something else on the machine does not move
    it; an epoch resumed from a checkpoint that did not carry its time, ``"resumed":
    "partial"``, is left out: its seconds cover only the part after the resume) and mean
    network / WFST real-time factors (over seeds) of one system."""
    if not runs_of_system:
        raise NoRunsError("no runs")
    rs = list(runs_of_system.values())
    return {
        "params": _same_or_range([r["params"] for r in rs]),
        "macs_per_second": _same_or_range([r["macs_per_second"] for r in rs]),
        "train_seconds_per_epoch": _median_or_none(
            ep["train_seconds"] for r in rs for ep in r["epochs"]
            if ep.get("resumed") != "partial"),
        "epochs": [len(r["epochs"]) for r in rs],
        "network_rtf": _mean_or_none(r["decode"].get("network_rtf") for r in rs),
        "wfst_rtf": _mean_or_none(_wfst_rtf(r["decode"]) for r in rs),
    }


# --------------------------------------------------------------------------------------------
# The report (every number) and its Markdown rendering.

def _normalise_set_names(set_names: Mapping[str, str | None] | Sequence[str] | None
                         ) -> dict[str, str | None]:
    if set_names is None:
        return dict(DEFAULT_SET_NAMES)
    if isinstance(set_names, Mapping):
        return {k: v for k, v in set_names.items()}
    return {s: DEFAULT_SET_NAMES.get(s) for s in set_names}


def build_report(runs: Mapping[str, Mapping[int, dict]], systems: Sequence[str] = SYSTEMS,
                 seeds: Sequence[int] | None = None,
                 set_names: Mapping[str, str | None] | Sequence[str] | None = None,
                 n_bootstrap: int = 1000, bootstrap_seed: int = 0) -> dict[str, Any]:
    """Every number of the tables as a JSON-able dict (see :func:`write_tables`)."""
    sets = _normalise_set_names(set_names)
    if seeds is None:
        seeds = sorted({k for s in systems for k in runs.get(s, {})})
    seeds = [int(k) for k in seeds]
    sel = select_runs(runs, systems, seeds)
    if not sel:
        raise NoRunsError(f"none of the systems {', '.join(systems)} has a run for seeds "
                          f"{', '.join(map(str, seeds))}")
    norm = normalization(sel)
    missing = missing_runs(sel, systems, seeds)

    cache: dict[tuple[str, str, str, str], dict] = {}

    def cmp(system: str, ref: str, test_set: str, method: str) -> dict:
        key = (system, ref, test_set, method)
        if key not in cache:
            try:
                cache[key] = {"status": "ok", **compare(sel, system, ref, test_set, method,
                                                        n_boot=n_bootstrap, seed=bootstrap_seed)}
            except NoRunsError as e:
                cache[key] = {"status": "n/a", "reason": str(e), "system": system, "ref": ref,
                              "test_set": test_set, "method": method}
        return cache[key]

    # Per system: costs and rate statistics.
    per_system: dict[str, Any] = {}
    for s in systems:
        entry: dict[str, Any] = {"paper_name": paper_name(s), "seeds": list(sel.get(s, {})),
                                 "missing_seeds": [k for (x, k) in missing if x == s]}
        if s not in sel:
            entry["status"] = "no runs"
            per_system[s] = entry
            continue
        entry["status"] = "ok"
        entry.update(system_costs(sel[s]))
        entry["results"] = {}
        for t in sets:
            entry["results"][t] = {}
            for m in METHODS:
                try:
                    entry["results"][t][m] = {"status": "ok", **rate_stats(sel, s, t, m)}
                except NoRunsError as e:
                    entry["results"][t][m] = {"status": "n/a", "reason": str(e)}
        per_system[s] = entry

    # Utterance counts per test set (from the WFST arrays of every run that has them).
    utt_counts: dict[str, Any] = {}
    for t in sets:
        counts = sorted({len(r["utts"][t][m]["ids"]) for by in sel.values() for r in by.values()
                         for m in METHODS if m in r["utts"].get(t, {})})
        tokens = sorted({int(r["utts"][t]["wfst"]["ref"].sum()) for by in sel.values()
                         for r in by.values() if "wfst" in r["utts"].get(t, {})})
        utt_counts[t] = {"utterances": counts, "ref_tokens_wfst": tokens}

    # The three tables.
    tables: dict[str, Any] = {}
    for tid, spec in TABLE_SPECS.items():
        rows = []
        for s in spec["systems"]:
            row: dict[str, Any] = {"system": s, "name": paper_name(s, tid),
                                   "status": per_system.get(s, {}).get("status", "not requested"),
                                   "seeds": per_system.get(s, {}).get("seeds", []),
                                   "missing_seeds": per_system.get(s, {}).get("missing_seeds", []),
                                   "paper": {"params": PAPER_RESULTS.get(s, {}).get("params"),
                                             "flops": PAPER_RESULTS.get(s, {}).get("flops")},
                                   "sets": {}}
            if row["status"] == "ok":
                for k in ("params", "macs_per_second", "train_seconds_per_epoch", "network_rtf",
                          "wfst_rtf"):
                    row[k] = per_system[s][k]
            for t, col in sets.items():
                cell: dict[str, Any] = {
                    "paper_column": col,
                    "paper_cer": PAPER_RESULTS.get(s, {}).get("cer", {}).get(col) if col else None,
                    "paper_rel_change": {r: paper_relative_change(s, r, col) for r in spec["refs"]
                                         if r != s},
                    "wfst": (per_system[s].get("results", {}).get(t, {}).get(
                        "wfst", {"status": "n/a", "reason": f"{s}: no runs"})
                        if s in per_system else {"status": "not requested"}),
                    "vs": {},
                }
                for r in spec["refs"]:
                    if r != s:
                        cell["vs"][r] = cmp(s, r, t, "wfst")
                row["sets"][t] = cell
            rows.append(row)
        tables[tid] = {"title": spec["title"], "systems": list(spec["systems"]),
                       "refs": list(spec["refs"]), "rows": rows}

    # Greedy CTC (a different metric): per test set, every system against B1.
    greedy: dict[str, Any] = {}
    for t in sets:
        rows = []
        for s in systems:
            st = per_system[s].get("results", {}).get(t, {}).get(
                "ctc_greedy", {"status": "n/a", "reason": f"{s}: no runs"})
            rows.append({"system": s, "name": paper_name(s), "stats": st,
                         "vs_b1": None if s == "b1" else cmp(s, "b1", t, "ctc_greedy")})
        greedy[t] = rows

    # The paper's orderings.
    orderings = []
    for better, worse in CLAIMS:
        for t, col in sets.items():
            c = cmp(better, worse, t, "wfst")
            item: dict[str, Any] = {"better": better, "worse": worse, "test_set": t,
                                    "paper_column": col}
            if c["status"] == "ok":
                item.update(status="ok", mean_better=c["mean"], mean_worse=c["mean_ref"],
                            holds=bool(c["mean"] < c["mean_ref"]),
                            exceeds_seed_noise=c["exceeds_seed_noise"],
                            ci_low=c["ci_low"], ci_high=c["ci_high"],
                            ci_excludes_zero=c["ci_excludes_zero"], rel_change=c["rel_change"])
            else:
                item.update(status="n/a", reason=c["reason"], holds=None)
            pb = PAPER_RESULTS.get(better, {}).get("cer", {}).get(col) if col else None
            pw = PAPER_RESULTS.get(worse, {}).get("cer", {}).get(col) if col else None
            item["paper_better"], item["paper_worse"] = pb, pw
            item["holds_in_paper"] = None if pb is None or pw is None else bool(pb < pw)
            orderings.append(item)

    paper_rel = {ref: {s: {c: paper_relative_change(s, ref, c) for c in PAPER_COLUMNS}
                       for s in PAPER_RESULTS if s != ref} for ref in ("b1", "b2")}
    return {
        "meta": {
            "systems": list(systems), "seeds": seeds, "set_names": sets,
            "seeds_found": {s: per_system[s]["seeds"] for s in systems},
            "missing_runs": [[s, k] for s, k in missing],
            "systems_without_runs": [s for s in systems if per_system[s]["status"] != "ok"],
            "normalization": norm, "utterance_counts": utt_counts,
            "n_bootstrap": n_bootstrap, "bootstrap_seed": bootstrap_seed, "ci_level": 0.95,
            "relative_change": "(pooled_rate_S - pooled_rate_ref) / pooled_rate_ref; pooled rate = "
                               "100 * sum of errors / sum of reference tokens over every seed and "
                               "utterance",
            "ci": "paired bootstrap over utterances: indices drawn with replacement, the same for "
                  "both systems and every seed, numpy default_rng(bootstrap_seed); 2.5 / 97.5 "
                  "percentiles of the resampled relative change",
            "seed_noise_criterion": "|mean_S - mean_ref| > max(std_S, std_ref), seed std with "
                                    "ddof=1; n/a if either system has fewer than 2 seeds",
        },
        "paper": {"results": PAPER_RESULTS, "relative_change": paper_rel,
                  "printed_relative_change_percent": PAPER_PRINTED_REL_CHANGE},
        "systems": per_system,
        "tables": tables,
        "greedy": greedy,
        "comparisons": list(cache.values()),
        "orderings": orderings,
    }


def _fmt(x: float | None, spec: str) -> str:
    return "n/a" if x is None else format(x, spec)


def _f2(x: float | None) -> str:
    return _fmt(x, ".2f")


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:+.1f}%"


def _count(x: float | None) -> str:
    if x is None:
        return "n/a"
    for unit, div in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= div:
            return f"{x / div:.4g}{unit}"
    return f"{x:.4g}"


def _count_range(v: Mapping[str, Any] | None) -> str:
    if not v:
        return "—"
    if v["value"] is not None:
        return _count(v["value"])
    return f"{_count(v['min'])}..{_count(v['max'])} (differs between seeds)"


def _stat_cell(st: Mapping[str, Any]) -> str:
    if st.get("status") == "not requested":
        return "— (not requested)"
    if st.get("status") != "ok":
        return "— (no runs)"
    std = "n/a" if st["std"] is None else f"{st['std']:.2f}"
    return f"{st['mean']:.2f} ± {std} (n={st['n']})"


def _flag(v: bool | None) -> str:
    return "n/a" if v is None else ("yes" if v else "no")


def _cmp_cell(c: Mapping[str, Any] | None) -> str:
    if c is None:
        return "ref"
    if c.get("status") != "ok":
        return "n/a (no runs)"
    if c["rel_change"] is None:
        return "n/a (reference has no errors)"
    ci = "" if c["ci_low"] is None else f" [{100 * c['ci_low']:+.1f}, {100 * c['ci_high']:+.1f}]"
    marks = ("†" if c["ci_excludes_zero"] else "") + ("‡" if c["exceeds_seed_noise"] else "")
    return f"{100 * c['rel_change']:+.1f}%{ci}{(' ' + marks) if marks else ''}"


def _seeds_cell(row: Mapping[str, Any]) -> str:
    n = len(row["seeds"])
    miss = row["missing_seeds"]
    if row["status"] == "not requested":
        return "0 — not requested"
    if n == 0:
        return "**0 — no runs**" + (f" (missing seeds {', '.join(map(str, miss))})" if miss else "")
    return f"{n}" + (f" (missing seed {', '.join(map(str, miss))})" if miss else "")


def _metric_label(report: Mapping[str, Any], method: str) -> str:
    names = sorted({st["metric"] for s in report["systems"].values()
                    for by_set in s.get("results", {}).values()
                    for m, st in by_set.items() if m == method and st.get("status") == "ok"})
    return " / ".join(names) if names else ("CER" if method == "wfst" else "toned-syllable ER")


def render_markdown(report: Mapping[str, Any], figures: Sequence[str] = ()) -> str:
    """TABLES.md from :func:`build_report`'s dict; every sentence about results is generated."""
    meta = report["meta"]
    sets: dict[str, str | None] = meta["set_names"]
    cer = _metric_label(report, "wfst")
    greedy_metric = _metric_label(report, "ctc_greedy")
    L: list[str] = []
    add = L.append

    found = {s: len(v) for s, v in meta["seeds_found"].items()}
    add("# SpeechMoE: the paper's Tables 1-3 from our runs")
    add("")
    add("Generated by `python -m speechmoe.tables` from `runs/<system>/seed<k>.json`; do not edit.")
    add("")
    counts = []
    for t, c in meta["utterance_counts"].items():
        u = c["utterances"]
        ucount = ("no results" if not u else str(u[0]) if len(u) == 1
                  else " / ".join(map(str, u)) + " (differs between runs)")
        tok = c["ref_tokens_wfst"]
        tcount = "" if len(tok) != 1 else f", {tok[0]} reference tokens"
        counts.append(f"{t} ({sets[t] or 'no paper column'}): {ucount} utterances{tcount}")
    add(f"- **Seeds**: requested {', '.join(map(str, meta['seeds']))} for {len(meta['systems'])} "
        "systems; found per system: " + ", ".join(f"{s} {found[s]}" for s in meta["systems"]) + ".")
    add(f"- **Test sets**: {'; '.join(counts)}.")
    add(f"- **Loss normalisation** of every run: `{meta['normalization']}`. "
        + NORMALIZATION_WHY.get(meta["normalization"], ""))
    add(f"- **Ours**: {cer} after WFST decoding, mean ± sample std (ddof=1) over seeds (n = number "
        "of seeds; std n/a for one seed); \"pooled\" sums errors and reference tokens over every "
        "seed and utterance.")
    add("- **Δ** (relative change) = (pooled rate of the system − pooled rate of the reference) / "
        "pooled rate of the reference; negative is an improvement (lower error rate is better).")
    add(f"- **95% CI** of Δ: paired bootstrap over utterances ({meta['n_bootstrap']} resamples, "
        f"numpy `default_rng({meta['bootstrap_seed']})`): utterance indices drawn with replacement, "
        "the same indices for both systems and every seed (utterances matched by id), both pooled "
        "rates and Δ recomputed, 2.5 / 97.5 percentiles. † = the CI excludes 0.")
    add("- **Seed noise**: ‡ = |mean of the system − mean of the reference| exceeds the larger of "
        "the two systems' seed standard deviations (n/a with fewer than 2 seeds).")
    add("- **Paper** columns: the paper's CER, and its Δ computed from the paper's own numbers.")
    add("- **Costs**, measured in the same runs: MACs per second of audio counted by torch's "
        "FlopCounterMode on the model (only the routed expert of each frame), training seconds "
        "per epoch (wall; the median over every epoch of every seed), and over the test sets' audio the network's wall time (RTF network) "
        "and the whole decoding stage's (network, CTC greedy and WFST search in parallel "
        "processes: RTF decoding)."
        + (f" Known disturbances of these wall times: `{meta['timing_notes']}`."
           if meta.get("timing_notes") else ""))
    add("")
    if meta["missing_runs"] or meta["systems_without_runs"]:
        add("## Missing runs")
        add("")
        if meta["systems_without_runs"]:
            add("Systems with **no runs** (their rows show no numbers of ours): "
                + ", ".join(f"{s} ({paper_name(s)})" for s in meta["systems_without_runs"]) + ".")
            add("")
        by_sys: dict[str, list[int]] = {}
        for s, k in meta["missing_runs"]:
            by_sys.setdefault(s, []).append(k)
        add("Missing (system, seed): " + "; ".join(
            f"{s}: seed {', '.join(map(str, ks))}" for s, ks in by_sys.items()) + ".")
        add("")

    for tab in report["tables"].values():
        refs = tab["refs"]
        add(f"## {tab['title']}")
        add("")
        if any(r not in tab["systems"] for r in refs):
            add("Relative changes against " + ", ".join(paper_name(r) for r in refs) + ".")
            add("")
        add("| Model | seeds | params (ours) | params (paper) | MACs / s of audio (ours) | "
            "FLOPs of 1 s (paper) | train s / epoch | RTF network | RTF decoding (wall) |")
        add("|---|---|---|---|---|---|---|---|---|")
        for row in tab["rows"]:
            p = row["paper"]
            if row["status"] == "ok":
                ours = [_count_range(row["params"]), _count_range(row["macs_per_second"]),
                        _fmt(row["train_seconds_per_epoch"], ".1f"),
                        _fmt(row["network_rtf"], ".4f"), _fmt(row["wfst_rtf"], ".4f")]
            else:
                ours = ["—"] * 5
            add(f"| {row['name']} ({row['system']}) | {_seeds_cell(row)} | {ours[0]} | "
                f"{_count(p['params'])} | {ours[1]} | {_count(p['flops'])} | {ours[2]} | "
                f"{ours[3]} | {ours[4]} |")
        add("")
        for t, col in sets.items():
            add(f"**{t}** (paper column: {col or 'none'})")
            add("")
            head = ["Model", f"{cer} ours, mean ± std (n)", "pooled"]
            head += [f"Δ vs {paper_name(r)} [95% CI]" for r in refs]
            head += ["CER paper"] + [f"paper Δ vs {paper_name(r)}" for r in refs]
            add("| " + " | ".join(head) + " |")
            add("|" + "---|" * len(head))
            for row in tab["rows"]:
                cell = row["sets"][t]
                st = cell["wfst"]
                cells = [f"{row['name']}", _stat_cell(st),
                         f"{st['pooled_rate']:.2f}" if st.get("status") == "ok" else "—"]
                cells += [_cmp_cell(cell["vs"].get(r)) for r in refs]
                cells += [_f2(cell["paper_cer"]) if cell["paper_cer"] is not None else "—"]
                cells += ["ref" if r == row["system"] else
                          ("—" if cell["paper_rel_change"].get(r) is None
                           else _pct(cell["paper_rel_change"][r])) for r in refs]
                add("| " + " | ".join(cells) + " |")
            add("")

    add(f"## Greedy CTC without LM: {greedy_metric} (not CER)")
    add("")
    add(f"A different metric from the tables above ({greedy_metric} of greedy CTC output); "
        "not comparable with the paper's CER.")
    add("")
    for t, rows in report["greedy"].items():
        add(f"**{t}**")
        add("")
        add(f"| Model | {greedy_metric}, mean ± std (n) | pooled | Δ vs B1 [95% CI] |")
        add("|---|---|---|---|")
        for r in rows:
            st = r["stats"]
            pooled = f"{st['pooled_rate']:.2f}" if st.get("status") == "ok" else "—"
            add(f"| {r['name']} ({r['system']}) | {_stat_cell(st)} | {pooled} | "
                f"{_cmp_cell(r['vs_b1'])} |")
        add("")

    add("## Which of the paper's orderings hold")
    add("")
    add(f"Each claim says the first system has the lower {cer} (lower is better). \"holds\": our seed "
        "means order the same way; \"> seed noise\": the criterion above; \"CI excludes 0\": the "
        "95% bootstrap CI of Δ (first vs second) excludes 0.")
    add("")
    add("| Claim | test set | ours (means) | ordering | > seed noise | Δ [95% CI] | CI excludes 0 "
        "| paper |")
    add("|---|---|---|---|---|---|---|---|")
    summary: dict[tuple[str, str], list[dict]] = {}
    for o in report["orderings"]:
        claim = f"{paper_name(o['better'])} < {paper_name(o['worse'])}"
        summary.setdefault((o["better"], o["worse"]), []).append(o)
        if o["holds_in_paper"] is None:
            paper = "—"
        else:
            paper = (f"{'holds' if o['holds_in_paper'] else 'does not hold'} "
                     f"({o['paper_better']:.2f} vs {o['paper_worse']:.2f})")
        if o["status"] != "ok":
            add(f"| {claim} | {o['test_set']} | — | n/a (missing runs) | n/a | n/a | n/a | {paper} |")
            continue
        delta = _cmp_cell({"status": "ok", "rel_change": o["rel_change"], "ci_low": o["ci_low"],
                           "ci_high": o["ci_high"], "ci_excludes_zero": False,
                           "exceeds_seed_noise": False})
        add(f"| {claim} | {o['test_set']} | {o['mean_better']:.2f} vs {o['mean_worse']:.2f} | "
            f"{'holds' if o['holds'] else 'does not hold'} | {_flag(o['exceeds_seed_noise'])} | "
            f"{delta} | {_flag(o['ci_excludes_zero'])} | {paper} |")
    add("")
    for (b, w), items in summary.items():
        ok = [o for o in items if o["status"] == "ok"]
        claim = f"{paper_name(b)} < {paper_name(w)}"
        if not ok:
            add(f"- {claim}: not evaluated (missing runs).")
            continue
        held = [o for o in ok if o["holds"]]
        rev = [o for o in ok if not o["holds"]]
        text = (f"- {claim}: holds on {len(held)} of {len(ok)} test sets"
                + (f" ({', '.join(o['test_set'] for o in held)})" if held else "")
                + f"; of these, beyond seed noise on "
                f"{sum(1 for o in held if o['exceeds_seed_noise'])} and bootstrap CI excludes 0 on "
                f"{sum(1 for o in held if o['ci_excludes_zero'])}")
        if rev:
            text += (f". Does not hold on {len(rev)} ({', '.join(o['test_set'] for o in rev)}); of "
                     f"these, the reverse order is beyond seed noise on "
                     f"{sum(1 for o in rev if o['exceeds_seed_noise'])} and its CI excludes 0 on "
                     f"{sum(1 for o in rev if o['ci_excludes_zero'])}")
        missing_sets = [o["test_set"] for o in items if o["status"] != "ok"]
        if missing_sets:
            text += f". Not evaluated (missing runs) on {', '.join(missing_sets)}"
        add(text + ".")
    add("")
    if figures:
        add("## Figures")
        add("")
        for f in figures:
            add(f"![{Path(f).stem}]({Path(f).name})")
            add("")
    return "\n".join(L) + "\n"


def _jsonable(x: Any) -> Any:
    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        np = None
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if np is not None and isinstance(x, np.ndarray):
        return [_jsonable(v) for v in x.tolist()]
    if np is not None and isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


TIMING_NOTES = "TIMING_NOTES.md"


def write_tables(tables_dir: str | Path, out_md: str | Path | None = None,
                 out_json: str | Path | None = None, systems: Sequence[str] = SYSTEMS,
                 seeds: Sequence[int] | None = (1, 2, 3),
                 set_names: Mapping[str, str | None] | Sequence[str] | None = None, *,
                 n_bootstrap: int = 1000, bootstrap_seed: int = 0,
                 runs: Mapping[str, Mapping[int, dict]] | None = None,
                 figures: Sequence[str] = ()) -> dict[str, Any]:
    """Write TABLES.md and the JSON of every number; returns the report dict.

    ``out_md`` / ``out_json`` default to ``<tables_dir>/TABLES.md`` and ``tables.json``.
    ``set_names`` maps our test sets to the paper's columns (default :data:`DEFAULT_SET_NAMES`;
    a list of set names looks the columns up there). ``seeds=None`` takes every seed found.
    ``runs`` skips loading (already from :func:`load_runs`). ``figures`` are linked at the end.
    A ``runs/TIMING_NOTES.md`` (what disturbed the runs' wall times) is linked from the costs.
    """
    tables_dir = Path(tables_dir)
    if runs is None:
        runs = load_runs(tables_dir, systems, seeds)
    report = build_report(runs, systems, seeds, set_names, n_bootstrap, bootstrap_seed)
    notes = tables_dir / "runs" / TIMING_NOTES
    if notes.is_file():  # written by hand beside the runs: what disturbed their wall times
        report["meta"]["timing_notes"] = f"runs/{TIMING_NOTES}"
    out_md = Path(out_md) if out_md is not None else tables_dir / "TABLES.md"
    out_json = Path(out_json) if out_json is not None else tables_dir / "tables.json"
    out_md.parent.mkdir(parents=True, exist_ok=True)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_md.write_text(render_markdown(report, figures), encoding="utf-8")
    out_json.write_text(json.dumps(_jsonable(report), indent=1, ensure_ascii=False) + "\n",
                        encoding="utf-8")
    return report


# --------------------------------------------------------------------------------------------
# Figures (matplotlib, Agg canvas; no pyplot state).

def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, out_png: str | Path) -> Path:
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out


def _band(values: list[float]) -> tuple[float, float, float] | None:
    """(mean, low, high): ± one std for 3+ seeds, min..max for 2, None for 1."""
    n = len(values)
    mean = sum(values) / n
    if n == 1:
        return None
    if n == 2:
        return mean, min(values), max(values)
    std = seed_stats(values)["std"]
    return mean, mean - std, mean + std


def plot_dev_loss(runs: Mapping[str, Mapping[int, dict]], out_png: str | Path,
                  systems: Sequence[str] = DEV_LOSS_SYSTEMS) -> Path:
    """Figure 2: dev CTC loss per epoch (left) and against training hours (right), mean over
    seeds with a band of ± one seed std (min..max for two seeds, none for one). The hours of
    epoch k are k times the system's median seconds per epoch (the tables' column): a
    disturbed epoch or run on a shared machine does not move them.

    Systems without runs are skipped and named on the figure; raises :class:`NoRunsError` if
    none of ``systems`` has a run with epochs.
    """
    present = [s for s in systems if any(r["epochs"] for r in runs.get(s, {}).values())]
    if not present:
        raise NoRunsError(f"plot_dev_loss: none of {', '.join(systems)} has runs with epochs")
    fig = _figure(12, 4.5)
    ax_ep, ax_t = fig.subplots(1, 2)
    for s in present:
        per_epoch: dict[float, list[float]] = {}
        for run in runs[s].values():
            for ep in run["epochs"]:
                per_epoch.setdefault(ep["epoch"], []).append(ep["dev_ctc"])
        xs = sorted(per_epoch)
        means = [sum(per_epoch[x]) / len(per_epoch[x]) for x in xs]
        epoch_seconds = system_costs(runs[s])["train_seconds_per_epoch"] or 0.0
        hours = [x * epoch_seconds / 3600.0 for x in xs]
        label = f"{paper_name(s, 'table3')} (n={len(runs[s])})"
        (line,) = ax_ep.plot(xs, means, marker="o", ms=3, label=label)
        ax_t.plot(hours, means, marker="o", ms=3, color=line.get_color(), label=label)
        bands = [_band(per_epoch[x]) for x in xs]
        if any(b is not None for b in bands):
            keep = [(x, h, b) for x, h, b in zip(xs, hours, bands) if b is not None]
            lo = [b[1] for _, _, b in keep]
            hi = [b[2] for _, _, b in keep]
            ax_ep.fill_between([x for x, _, _ in keep], lo, hi, color=line.get_color(), alpha=0.2)
            ax_t.fill_between([h for _, h, _ in keep], lo, hi, color=line.get_color(), alpha=0.2)
    ax_ep.set_xlabel("epoch")
    ax_t.set_xlabel("training time (hours: epochs x median seconds per epoch)")
    for ax in (ax_ep, ax_t):
        ax.set_ylabel("dev CTC loss")
        ax.grid(alpha=0.3)
        ax.legend()
    absent = [s for s in systems if s not in present]
    title = "Validation CTC loss (mean over seeds; band: ± 1 std, min..max for 2 seeds)"
    if absent:
        title += "\nno runs: " + ", ".join(paper_name(s) for s in absent)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, out_png)


def routing_series(runs: Mapping[str, Mapping[int, dict]], system: str) -> dict[Any, dict]:
    """Per layer: ``steps``, ``fraction`` (steps x experts, mean over seeds) and ``entropy``
    (mean over seeds) of one system's routing records; raises if there are none."""
    by_seed = runs.get(system, {})
    if not by_seed:
        raise NoRunsError(f"{system}: no runs, so no routing to plot")
    acc: dict[Any, dict[Any, dict[str, list]]] = {}
    for run in by_seed.values():
        for rec in run["routing"]:
            for lay in rec["layers"]:
                d = acc.setdefault(lay["layer"], {}).setdefault(rec["step"], {"f": [], "h": []})
                if d["f"] and len(d["f"][0]) != len(lay["fraction"]):
                    raise TablesError(f"{system} layer {lay['layer']} step {rec['step']}: seeds "
                                      f"disagree on the number of experts")
                d["f"].append([float(v) for v in lay["fraction"]])
                d["h"].append(float(lay["entropy"]))
    if not acc:
        raise TablesError(f"{system}: its runs have no routing records (seeds "
                          f"{', '.join(map(str, by_seed))})")
    out = {}
    for layer in sorted(acc):
        steps = sorted(acc[layer])
        n_exp = {len(acc[layer][st]["f"][0]) for st in steps}
        if len(n_exp) != 1:
            raise TablesError(f"{system} layer {layer}: the number of experts changes between steps")
        frac = [[sum(col) / len(col) for col in zip(*acc[layer][st]["f"])] for st in steps]
        ent = [sum(acc[layer][st]["h"]) / len(acc[layer][st]["h"]) for st in steps]
        out[layer] = {"steps": steps, "fraction": frac, "entropy": ent}
    return out


def plot_routing(runs: Mapping[str, Mapping[int, dict]], out_png: str | Path,
                 system: str = "moe_8e") -> Path:
    """Per MoE layer of ``system`` (one subplot each, in a grid): every expert's share of frames
    over training steps as stacked areas (mean over seeds) and the router entropy (black line,
    right axis). Any number of layers and experts; raises if the system has no runs or no
    routing records."""
    series = routing_series(runs, system)
    layers = list(series)
    ncols = min(len(layers), max(1, math.ceil(math.sqrt(len(layers)))))
    nrows = math.ceil(len(layers) / ncols)
    fig = _figure(3.4 * ncols, 2.6 * nrows + 0.8)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    handles = None
    for i, layer in enumerate(layers):
        ax = axes[i // ncols][i % ncols]
        d = series[layer]
        n_exp = len(d["fraction"][0])
        cols = list(zip(*d["fraction"]))
        polys = ax.stackplot(d["steps"], *cols, labels=[f"expert {j}" for j in range(n_exp)],
                             alpha=0.8)
        ax.set_ylim(0, max(1.0, max(sum(f) for f in d["fraction"])))
        ax.set_title(f"layer {layer}", fontsize=9)
        ax.tick_params(labelsize=7)
        ax2 = ax.twinx()
        (hl,) = ax2.plot(d["steps"], d["entropy"], color="black", lw=1.2, label="router entropy")
        ax2.set_ylim(0, max(max(d["entropy"]) * 1.1, 1e-6))
        ax2.tick_params(labelsize=7)
        if i % ncols == 0:
            ax.set_ylabel("share of frames", fontsize=8)
        if i % ncols == ncols - 1 or i == len(layers) - 1:
            ax2.set_ylabel("entropy", fontsize=8)
        if i // ncols == nrows - 1 or i + ncols >= len(layers):
            ax.set_xlabel("step", fontsize=8)
        if handles is None or len(polys) + 1 > len(handles):
            handles = list(polys) + [hl]
    for j in range(len(layers), nrows * ncols):
        axes[j // ncols][j % ncols].set_visible(False)
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 9), fontsize=8)
    fig.suptitle(f"{paper_name(system)} ({system}): share of frames per expert (stacked) and router "
                 f"entropy (black, right axis); mean over seeds "
                 f"{', '.join(map(str, runs[system]))}", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 0.96))
    return _save(fig, out_png)


# --------------------------------------------------------------------------------------------
# CLI.

def _parse_columns(text: str) -> dict[str, str | None]:
    src = text.strip()
    if not src.startswith("{"):
        src = Path(src).read_text(encoding="utf-8")
    val = json.loads(src)
    if not isinstance(val, dict):
        raise TablesError("--paper-columns: expected a JSON object {test_set: paper_column}")
    bad = [v for v in val.values() if v is not None and v not in PAPER_COLUMNS]
    if bad:
        raise TablesError(f"--paper-columns: unknown paper column(s) {bad}; the paper has "
                          f"{', '.join(PAPER_COLUMNS)}")
    return val


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m speechmoe.tables", description=__doc__.split("\n")[0])
    p.add_argument("--tables-dir", required=True, type=Path,
                   help="directory holding runs/<system>/seed<k>.json; outputs are written here")
    p.add_argument("--systems", nargs="+", default=list(SYSTEMS))
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--sets", nargs="+", default=None,
                   help="test sets (default: the keys of --paper-columns)")
    p.add_argument("--paper-columns", default=None,
                   help="JSON object (or a file holding one) mapping our test sets to the paper's "
                        f"columns {', '.join(PAPER_COLUMNS)}; default {json.dumps(DEFAULT_SET_NAMES)}")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--bootstrap-seed", type=int, default=0)
    p.add_argument("--routing-system", default="moe_8e")
    p.add_argument("--strict", action="store_true", help="exit 1 if any run is missing")
    a = p.parse_args(argv)

    try:
        columns = _parse_columns(a.paper_columns) if a.paper_columns else dict(DEFAULT_SET_NAMES)
        sets = a.sets if a.sets else list(columns)
        set_names = {t: columns.get(t) for t in sets}
        runs = load_runs(a.tables_dir, a.systems, a.seeds)
        missing = missing_runs(runs, a.systems, a.seeds)
        for s in a.systems:
            miss = [k for (x, k) in missing if x == s]
            if s not in runs:
                print(f"MISSING: {s} has no runs (seeds {', '.join(map(str, a.seeds))}); its rows "
                      "show no numbers of ours", file=sys.stderr)
            elif miss:
                print(f"MISSING: {s} seed {', '.join(map(str, miss))}", file=sys.stderr)
        figures = []
        fig2 = a.tables_dir / "fig2_dev_loss.png"
        try:
            figures.append(str(plot_dev_loss(runs, fig2)))
        except TablesError as e:
            print(f"SKIPPED {fig2.name}: {e}", file=sys.stderr)
        rout = a.tables_dir / f"routing_{a.routing_system}.png"
        try:
            figures.append(str(plot_routing(runs, rout, a.routing_system)))
        except TablesError as e:
            print(f"SKIPPED {rout.name}: {e}", file=sys.stderr)
        write_tables(a.tables_dir, None, None, a.systems, a.seeds, set_names,
                     n_bootstrap=a.bootstrap, bootstrap_seed=a.bootstrap_seed, runs=runs,
                     figures=figures)
    except TablesError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 2
    print(f"wrote {a.tables_dir / 'TABLES.md'}, {a.tables_dir / 'tables.json'}"
          + "".join(f", {f}" for f in figures))
    return 1 if (a.strict and missing) else 0


if __name__ == "__main__":
    sys.exit(main())
