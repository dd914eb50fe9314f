"""The per-run result files: their layout, checks, loading and the errors the tables raise.

::

    <tables_dir>/runs/<system>/seed<k>.json           run summary (params, MACs, epochs, routing, rates)
    <tables_dir>/runs/<system>/seed<k>.utts.json.gz   per-utterance error and reference counts

Both are written by the training / decoding stages (``local/tables.py``) and only read here.
numpy is imported inside the functions that use it.
"""

from __future__ import annotations

import gzip
import json
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

#: The scoring methods: "wfst" = CER after WFST decoding, "ctc_greedy" = toned-syllable error
#: rate of greedy CTC.
METHODS: tuple[str, ...] = ("wfst", "ctc_greedy")

_RUN_FILE = re.compile(r"^seed(\d+)\.json$")
_REQUIRED_KEYS = ("system", "seed", "params", "macs_per_second", "normalization", "epochs",
                  "routing", "decode", "results")
_RESULT_KEYS = ("metric", "rate", "utterances", "ref_tokens")
_EPOCH_KEYS = ("epoch", "train_seconds", "dev_ctc")
_RATE_TOLERANCE = 0.02  # rate in seed<k>.json vs 100*sum(errors)/sum(ref): absolute, in percent


class TablesError(ValueError):
    """Something about the run files that prevents a table; the message says what and where."""


class RunFileError(TablesError):
    """A run file is missing, unreadable or lacks a key (the message names the file)."""


class NoRunsError(TablesError):
    """A statistic was asked of zero seeds (never reported as 0)."""


class UtteranceMismatchError(TablesError):
    """Two runs that must be paired by utterance do not have the same utterance ids."""


def run_paths(tables_dir: str | Path, system: str, seed: int) -> tuple[Path, Path]:
    """The (summary, per-utterance) file paths of one run."""
    d = Path(tables_dir) / "runs" / system
    return d / f"seed{seed}.json", d / f"seed{seed}.utts.json.gz"


def is_number(x: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _need(cond: bool, path: Path, what: str) -> None:
    if not cond:
        raise RunFileError(f"{path}: {what}")


def _keys(keys: Iterable[str]) -> str:
    return ", ".join(repr(k) for k in keys)


# --------------------------------------------------------------------------------------------
# Checks of seed<k>.json, one part of it per function.

def _validate_summary(run: Any, path: Path, system: str | None, seed: int | None) -> None:
    _need(isinstance(run, dict), path, "expected a JSON object at the top level")
    missing = [k for k in _REQUIRED_KEYS if k not in run]
    _need(not missing, path, f"missing key(s) {_keys(missing)}")
    if system is not None:
        _need(run["system"] == system, path,
              f"'system' is {run['system']!r} but the file lies under runs/{system}/")
    if seed is not None:
        _need(run["seed"] == seed, path, f"'seed' is {run['seed']!r} but the file is seed{seed}.json")
    for key in ("params", "macs_per_second"):
        _need(is_number(run[key]) and run[key] >= 0, path, f"{key!r} must be a non-negative number")
    _need(run["normalization"] in ("frame", "utterance"), path,
          f"'normalization' must be 'frame' or 'utterance', not {run['normalization']!r}")
    _validate_epochs(run["epochs"], path)
    _validate_routing(run["routing"], path)
    _validate_decode(run["decode"], path)
    _validate_results(run["results"], path)


def _validate_epochs(epochs: Any, path: Path) -> None:
    _need(isinstance(epochs, list), path, "'epochs' must be a list")
    for i, ep in enumerate(epochs):
        _need(isinstance(ep, dict) and all(k in ep for k in _EPOCH_KEYS),
              path, f"epochs[{i}] needs 'epoch', 'train_seconds' and 'dev_ctc'")
        _need(all(is_number(ep[k]) for k in _EPOCH_KEYS), path,
              f"epochs[{i}]: 'epoch', 'train_seconds' and 'dev_ctc' must be finite numbers")
        _need(ep.get("resumed") in (None, "carried", "partial"), path,
              f"epochs[{i}]: 'resumed' must be 'carried' or 'partial', not {ep.get('resumed')!r}")


def _validate_routing(routing: Any, path: Path) -> None:
    _need(isinstance(routing, list), path, "'routing' must be a list ([] for a static model)")
    for i, rec in enumerate(routing):
        _need(isinstance(rec, dict) and "step" in rec and isinstance(rec.get("layers"), list), path,
              f"routing[{i}] needs 'step' and a list 'layers'")
        for j, lay in enumerate(rec["layers"]):
            _need(isinstance(lay, dict) and "layer" in lay and "entropy" in lay
                  and isinstance(lay.get("fraction"), list) and len(lay["fraction"]) > 0, path,
                  f"routing[{i}].layers[{j}] needs 'layer', a non-empty list 'fraction' and 'entropy'")


def _validate_decode(decode: Any, path: Path) -> None:
    _need(isinstance(decode, dict), path, "'decode' must be an object")
    for key in ("network_rtf", "wfst_rtf", "decode_rtf"):
        v = decode.get(key)
        _need(v is None or (is_number(v) and v >= 0), path,
              f"decode[{key!r}] must be a non-negative number or null")


def _validate_results(res: Any, path: Path) -> None:
    _need(isinstance(res, dict), path, "'results' must be an object {test_set: {method: {...}}}")
    for test_set, methods in res.items():
        _need(isinstance(methods, dict), path, f"results[{test_set!r}] must be an object")
        for method, r in methods.items():
            where = f"results[{test_set!r}][{method!r}]"
            _need(isinstance(r, dict), path, f"{where} must be an object")
            miss = [k for k in _RESULT_KEYS if k not in r]
            _need(not miss, path, f"{where} is missing key(s) {_keys(miss)}")
            _need(is_number(r["rate"]), path, f"{where}['rate'] must be a finite number")


# --------------------------------------------------------------------------------------------
# seed<k>.utts.json.gz: read, and every array checked against the summary.

def _read_utts_file(path: Path) -> dict:
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            raw = json.load(f)
    except FileNotFoundError:
        raise RunFileError(f"{path}: missing (every seed<k>.json needs its seed<k>.utts.json.gz)") \
            from None
    except (OSError, EOFError, ValueError) as e:
        raise RunFileError(f"{path}: not a gzip JSON file ({e})") from None
    _need(isinstance(raw, dict), path, "expected a JSON object {test_set: {method: {...}}}")
    return raw


def _utts_entry(raw: dict, test_set: str, method: str, r: Mapping[str, Any], path: Path,
                summary: Path) -> dict:
    """One test set and method's arrays, checked against the summary's counts and rate, sorted
    by utterance id."""
    import numpy as np

    where = f"[{test_set!r}][{method!r}]"
    entry = raw.get(test_set, {}).get(method) if isinstance(raw.get(test_set), dict) else None
    _need(isinstance(entry, dict), path, f"no per-utterance arrays for {where}")
    miss = [k for k in ("ids", "errors", "ref") if k not in entry]
    _need(not miss, path, f"{where} is missing key(s) {_keys(miss)}")
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
    return {"ids": [ids[i] for i in order], "errors": err_a[order], "ref": ref_a[order]}


def _load_utts(run: dict, path: Path, summary: Path) -> dict:
    raw = _read_utts_file(path)
    utts: dict[str, dict[str, dict]] = {}
    for test_set, methods in run["results"].items():
        for method, r in methods.items():
            utts.setdefault(test_set, {})[method] = _utts_entry(raw, test_set, method, r, path,
                                                                summary)
    return utts


# --------------------------------------------------------------------------------------------
# Loading and selecting runs.

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
