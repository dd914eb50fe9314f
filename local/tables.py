#!/usr/bin/env python3
"""The paper's Tables 1-3 and Figure 2: every system x seed trained, decoded and scored, its
small results kept, then TABLES.md, tables.json and the figures (speechmoe.tables).

    local/tables.py --tables-dir tables --exp-dir exp/tables --conf-dir conf/model \\
        --lang-dir data/lang --cmvn data/fbank/cmvn.pt --cuts-dir data/fbank \\
        --train-sets train train_aug --dev-set dev --test-sets test_read test_chat test_spon \\
        --seeds 1 2 3 --train-utts 2000 --num-epochs 4 --normalization utterance

Each (system, seed) run: the system's config (<conf-dir>/<system>.yaml, with
--model-overrides and loss.normalization) trained with local/train.py on the same data
(--train-utts utterances of the first training set and their copies in the others,
the same for every system) with --seed, decoded with local/decode.py (CTC greedy and
WFST, the acoustic scale chosen on --dev-set), scored with local/score.py. Its small
results go to <tables-dir>/runs/<system>/seed<k>.json (params, MACs per second of
audio, seconds and dev CTC loss per epoch, routing statistics over training, decoding
times, every rate with its metric and utterance count) and seed<k>.utts.json.gz (per
utterance errors and reference lengths, for the paired bootstrap): commit them, and
`--report-only` regenerates the tables and figures from them without any training.

Resumable: a run whose result file exists is skipped; an interrupted one continues
(training from its last checkpoint, decoding and scoring skip what is done).
Every system gets the same data, epochs, schedule and options: the command has no
per-system option.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml
from lhotse import CutSet

from speechmoe.checkpoint import checkpoint_for_decoding
from speechmoe.config import load_config
from speechmoe.data.corpus import corpus_record
from speechmoe.data.manifests import write_lhotse
from speechmoe.decode.tuning import DEFAULT_SCALES_TEXT
from speechmoe.expdir import ExpDir
from speechmoe.inference import load_model_for_inference
from speechmoe.info import measure_cost
from speechmoe.lang.graph import built_topology
from speechmoe.logs import cli_main, script_parser, setup_logger
from speechmoe.scoring import read_utt_errors
from speechmoe.tables.cli import main as report_main
from speechmoe.tables.dev import (dev_markdown, dev_run_path, dev_summary, load_dev_runs,
                                  step_log_summary, stored_dev_runs)
from speechmoe.tables.paper import SYSTEMS
from speechmoe.utils import atomic_path, atomic_write_text

LOCAL = Path(__file__).resolve().parent


def get_parser() -> argparse.ArgumentParser:
    p = script_parser(__doc__)
    p.add_argument("--tables-dir", type=Path, required=True,
                   help="where runs/, TABLES.md, tables.json and the figures go")
    p.add_argument("--exp-dir", type=Path, required=True, help="training / decoding dirs")
    p.add_argument("--conf-dir", type=Path, default=Path("conf/model"))
    p.add_argument("--lang-dir", type=Path, default=Path("data/lang"))
    p.add_argument("--cmvn", type=Path, default=Path("data/fbank/cmvn.pt"))
    p.add_argument("--cuts-dir", type=Path, default=Path("data/fbank"))
    p.add_argument("--train-cuts-dir", type=Path, default=None,
                   help="where the training sets' cuts are (default: --cuts-dir); e.g. a "
                        "larger corpus's fbank dir, dev and test sets still from --cuts-dir")
    p.add_argument("--train-sets", nargs="+", default=["train"])
    p.add_argument("--dev-set", default="dev")
    p.add_argument("--test-sets", nargs="+", required=True)
    p.add_argument("--paper-columns", default="",
                   help='JSON: our test set -> the paper\'s column, e.g. \'{"test_read": '
                        '"Read"}\' (default: DEFAULT_SET_NAMES of speechmoe/tables/paper.py)')
    p.add_argument("--systems", nargs="+", default=list(SYSTEMS),
                   help="default: the paper's 7 (speechmoe/tables/paper.py)")
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--train-utts", type=int, default=0,
                   help="utterances of the first training set (and their copies in the "
                        "others) to train on; 0: all")
    p.add_argument("--normalization", choices=["frame", "utterance"], default="utterance",
                   help="loss.normalization of every system (speechmoe/losses.py)")
    p.add_argument("--model-overrides", default="{}", help="JSON merged into every model")
    p.add_argument("--variants", default="{}",
                   help='JSON: more systems, each a config of --conf-dir with overrides, e.g. '
                        '\'{"moe_8e_z": {"base": "moe_8e", "loss": {"z_loss": 0.001}}}\' '
                        '(then --systems moe_8e_z); "train": "..." adds local/train.py '
                        'options to that system\'s runs ({seed} and {exp} filled in)')
    p.add_argument("--num-epochs", type=int, default=4)
    p.add_argument("--max-duration", type=float, default=120.0)
    p.add_argument("--lr", type=float, default=0.002)
    p.add_argument("--warmup-steps", type=int, default=300)
    p.add_argument("--train-options", default="",
                   help="more local/train.py options, the same for every run "
                        "(e.g. '--spec-augment true')")
    p.add_argument("--launcher", default="",
                   help="command that starts training, e.g. 'torchrun --nproc-per-node 8' "
                        "(default: this Python)")
    p.add_argument("--avg", type=int, default=2)
    p.add_argument("--acoustic-scales", default=DEFAULT_SCALES_TEXT)
    p.add_argument("--beam", type=float, default=16.0)
    p.add_argument("--max-active", type=int, default=7000)
    p.add_argument("--nj", type=int, default=2, help="WFST decoding processes")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--routing-system", default="moe_8e",
                   help="the system whose routing over training is plotted")
    p.add_argument("--report-only", action="store_true",
                   help="no training: the tables and figures from the stored runs")
    p.add_argument("--dev-only", action="store_true",
                   help="train and keep what training measured on --dev-set (no decoding, "
                        "no test set) in <tables-dir>/dev_runs/, then DEV.md and dev.json: "
                        "for choosing a setting on dev (speechmoe/tables/dev.py)")
    p.add_argument("--reference-system", default="b1",
                   help="--dev-only: the system whose seed spread the others are compared to")
    return p


def run_cmd(cmd: list[str], log, what: str) -> None:
    log.info("%s: %s", what, " ".join(cmd))
    r = subprocess.run(cmd)
    if r.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {r.returncode}): {' '.join(cmd)}")


def source_id(cut_id: str) -> str:
    """The utterance a training cut was made from (copies carry _rvb / _aug[N] suffixes)."""
    for suffix in ("_rvb", "_aug"):
        head, sep, tail = cut_id.rpartition(suffix)
        if sep and (tail == "" or tail.isdigit()):
            return head
    return cut_id


def train_subset(args, log) -> list[Path]:
    """The training manifests every run uses: all of --train-sets, or --train-utts
    utterances of the first and their copies in the others (written once)."""
    paths = [(args.train_cuts_dir or args.cuts_dir) / f"cuts_{s}.jsonl.gz"
             for s in args.train_sets]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not found (run the recipe's stages 0-3 first)")
    if args.train_utts <= 0:
        return paths

    out_dir = args.exp_dir / "train_subset"
    spec = {"train_sets": args.train_sets, "train_utts": args.train_utts}
    done = out_dir / "subset.json"
    outs = [out_dir / p.name for p in paths]
    if done.is_file() and json.loads(done.read_text()) == spec and all(
            o.is_file() for o in outs):
        return outs
    first = sorted(c.id for c in CutSet.from_file(paths[0]))
    if len(first) < args.train_utts:
        raise ValueError(f"{paths[0]} has {len(first)} utterances, --train-utts asks for "
                         f"{args.train_utts}")
    keep = set(first[: args.train_utts])
    out_dir.mkdir(parents=True, exist_ok=True)
    for path, out in zip(paths, outs):
        cuts = CutSet.from_cuts(c for c in CutSet.from_file(path) if source_id(c.id) in keep)
        write_lhotse(cuts, out)
        log.info("training subset: %s -> %s (%d cuts, %.2f h)", path, out, len(cuts),
                 sum(c.duration for c in cuts) / 3600)
    done.write_text(json.dumps(spec) + "\n")
    return outs


def variant_train_options(args, system: str, seed: int) -> list[str]:
    """A variant's "train" options for one run, {seed} and {exp} (--exp-dir) filled in: an
    upcycled variant names its base, e.g. "--init-from {exp}/dense_8l/seed{seed}/epoch-4.pt"."""
    text = variants(args).get(system, {}).get("train", "")
    return [w.replace("{seed}", str(seed)).replace("{exp}", str(args.exp_dir))
            for w in text.split()]


def variants(args) -> dict[str, dict]:
    """--variants: name -> {"base": a config of --conf-dir, "model": {...}, "loss": {...}}."""
    out = json.loads(args.variants)
    for name, v in out.items():
        if not isinstance(v, dict) or "base" not in v or \
                set(v) - {"base", "model", "loss", "train"}:
            raise ValueError(f"--variants: {name!r} must be {{\"base\": SYSTEM, \"model\": "
                             f"{{...}}, \"loss\": {{...}}, \"train\": \"train.py options\"}}, "
                             f"got {v!r}")
    return out


def system_config(args, system: str, run_dir: Path) -> Path:
    """<run-dir>/model.yaml: the system's config with --model-overrides and the loss
    normalisation (the trainer sets num_classes and input_dim from the data); a --variants
    system: its base's, with its own overrides on top."""
    variant = variants(args).get(system, {})
    src = args.conf_dir / f"{variant.get('base', system)}.yaml"
    cfg = load_config(src, overrides={
        "model": {**json.loads(args.model_overrides), **variant.get("model", {})},
        "loss": {"normalization": args.normalization, **variant.get("loss", {})}})
    data = cfg.to_dict()
    data["name"] = system
    run_dir.mkdir(parents=True, exist_ok=True)
    out = run_dir / "model.yaml"
    out.write_text(f"# {src} with the tables' overrides (local/tables.py)\n"
                   + yaml.safe_dump(data, sort_keys=False))
    return out


def last_per_epoch(path: Path) -> list[dict]:
    """epochs.jsonl records, the last one of each epoch (a resumed epoch may repeat)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (the trainer writes it after each epoch)")
    by_epoch = {}
    for line in path.read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            by_epoch[rec["epoch"]] = rec
    return [by_epoch[e] for e in sorted(by_epoch)]


def run_settings(args) -> dict:
    """What every run of one set shares: a finished run made with other settings is not
    silently mixed into the tables."""
    return {"train_sets": args.train_sets, "train_utts": args.train_utts,
            **({"train_cuts_dir": str(args.train_cuts_dir)} if args.train_cuts_dir else {}),
            "normalization": args.normalization,
            "model_overrides": json.loads(args.model_overrides),
            "num_epochs": args.num_epochs, "max_duration": args.max_duration, "lr": args.lr,
            "warmup_steps": args.warmup_steps, "train_options": args.train_options,
            "avg": args.avg, "acoustic_scales": args.acoustic_scales, "beam": args.beam,
            "max_active": args.max_active, "ctc_topology": graph_topology(args.lang_dir),
            "corpus": corpus_record(args.cuts_dir.resolve().parent)}


# The value of a setting in runs recorded before it was (their runs had no choice).
SETTINGS_BEFORE_RECORDED = {"ctc_topology": "standard", "corpus": None}


def graph_topology(lang_dir: Path) -> str:
    """The CTC topology of lang_dir's TLG (graph.json; older ones were all standard)."""
    return built_topology(lang_dir) or "unknown"  # a test's lang dir has no graph.json


def check_finished_runs(args) -> None:
    """Every finished run under --tables-dir was made with these settings."""
    want = run_settings(args)
    for path in sorted([*(args.tables_dir / "runs").glob("*/seed*.json"),
                        *(args.tables_dir / "dev_runs").glob("*/seed*.json")]):
        have = json.loads(path.read_text()).get("settings")
        if have is None:
            continue  # written before settings were recorded
        diff = {k: (have.get(k, SETTINGS_BEFORE_RECORDED.get(k)), v) for k, v in want.items()
                if have.get(k, SETTINGS_BEFORE_RECORDED.get(k)) != v}
        if diff:
            what = ", ".join(f"{k}: {a!r} there, {b!r} now" for k, (a, b) in diff.items())
            raise ValueError(f"{path} was made with other settings ({what}): run with the "
                             f"same options, or move its runs/ away to start a new set")


def epochs_record(args, run_dir: Path) -> list[dict]:
    """Seconds, dev CTC and dev greedy TER of every epoch; all --num-epochs of them, or
    fewer when the last one ended at --max-steps (a --train-options budget)."""
    # "resumed": continued from a mid-epoch checkpoint; "partial" when its seconds cover only
    # the part after the resume (the report leaves those out of the training time)
    logged = last_per_epoch(run_dir / "log" / "epochs.jsonl")
    epochs = [{"epoch": r["epoch"], "train_seconds": r["seconds"], "dev_ctc": r["dev_ctc"],
               "dev_greedy_ter": r["dev_greedy_ter"], "step": r["step"],
               **({"resumed": r["resumed"]} if r.get("resumed") else {}),
               **({"max_steps_reached": True} if r.get("max_steps_reached") else {})}
              for r in logged]
    if len(epochs) != args.num_epochs and not epochs[-1].get("max_steps_reached"):
        raise ValueError(f"{run_dir}: {len(epochs)} epochs logged, {args.num_epochs} asked")
    return epochs


def base_updates(run_dir: Path) -> int:
    """The updates of the dense model a run was upcycled from (init_from.json; 0 when the
    run trained from scratch): the run's own steps start after them."""
    path = run_dir / "init_from.json"
    return int(json.loads(path.read_text())["base_updates"]) if path.is_file() else 0


def dev_curve(run_dir: Path) -> list[dict]:
    """Dev CTC and greedy TER at every --valid-every-n step (log/valid.jsonl) and at every
    epoch's end, by update (a step measured twice after a resume: its last record)."""
    by_step = {}
    for name in ("valid.jsonl", "epochs.jsonl"):
        path = run_dir / "log" / name
        if path.is_file():
            for line in path.read_text().splitlines():
                if line.strip():
                    r = json.loads(line)
                    by_step[r["step"]] = {"step": r["step"], "dev_ctc": r["dev_ctc"],
                                          "dev_greedy_ter": r["dev_greedy_ter"]}
    return [by_step[k] for k in sorted(by_step)]


def routing_record(run_dir: Path) -> list[dict]:
    """The routing statistics logged over training, per logging step (empty for a static
    model)."""
    rpath = run_dir / "log" / "routing.jsonl"
    if not rpath.is_file():
        return []
    seen = {}
    for line in rpath.read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            seen[rec["step"]] = {"step": rec["step"], "epoch": rec["epoch"], "layers": [
                {"layer": x["layer"], "fraction": x["fraction"],
                 "entropy": round(x["entropy"], 5),
                 **({"mean_log_z": round(x["mean_log_z"], 4)} if "mean_log_z" in x else {})}
                for x in rec["layers"]]}
    return [seen[s] for s in sorted(seen)]


def write_dev_run(args, system: str, seed: int, run_dir: Path, train_hours: float) -> Path:
    """<tables-dir>/dev_runs/<system>/seed<k>.json: what training measured on dev."""
    sysconf = load_config(run_dir / "model.yaml")
    record = {"system": system, "seed": seed, "config": sysconf.to_dict(),
              "train_options": variants(args).get(system, {}).get("train", ""),
              "train_hours": round(train_hours, 3), "settings": run_settings(args),
              "epochs": epochs_record(args, run_dir), "dev_curve": dev_curve(run_dir),
              "steps": step_log_summary(run_dir / "log" / "losses.jsonl"),
              "routing": routing_record(run_dir)}
    out = dev_run_path(args.tables_dir, system, seed)
    atomic_write_text(out, json.dumps(record, indent=1) + "\n")
    return out


def dev_report(args, log) -> int:
    """DEV.md and dev.json of the dev-only runs: every run stored in the tables dir, not
    only this call's (a call that adds seeds of one system reports them beside the rest)."""
    stored = stored_dev_runs(args.tables_dir)
    systems = list(dict.fromkeys([args.reference_system, *args.systems, *sorted(stored)]))
    seeds = sorted({*args.seeds, *(k for v in stored.values() for k in v)})
    summary = dev_summary(load_dev_runs(args.tables_dir, systems, seeds, allow_missing=True),
                          args.reference_system, seeds)
    dev_cuts = args.cuts_dir / f"cuts_{args.dev_set}.jsonl.gz"
    n = len(CutSet.from_file(dev_cuts)) if dev_cuts.is_file() else None
    text = dev_markdown(summary, args.reference_system, args.dev_set, n)
    (args.tables_dir / "DEV.md").write_text(text)
    (args.tables_dir / "dev.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(text)
    log.info("wrote %s and %s", args.tables_dir / "DEV.md", args.tables_dir / "dev.json")
    return 0


def collect(args, system: str, seed: int, run_dir: Path,
            train_hours: float) -> tuple[dict, dict]:
    """The run's small results (seed<k>.json) and per-utterance errors (.utts.json.gz)."""
    ckpt = checkpoint_for_decoding(run_dir, 0, args.avg)
    model, sysconf = load_model_for_inference(ckpt)
    cost = measure_cost(model)
    # "resumed": continued from a mid-epoch checkpoint; "partial" when its seconds cover only
    # the part after the resume (the report leaves those out of the training time)
    epochs = epochs_record(args, run_dir)
    routing = routing_record(run_dir)
    exp = ExpDir(run_dir)
    decode_dir = exp.decode_dir(ckpt)
    timing = json.loads(decode_dir.timing.read_text())
    tests = [timing[s] for s in args.test_sets]
    audio = sum(t["audio_seconds"] for t in tests)
    scale = decode_dir.tuned_scale()
    results = json.loads(exp.results.read_text())
    utts: dict = {}
    for name in args.test_sets:
        for method in ("wfst", "ctc_greedy"):
            scored = decode_dir.set_dir(method, name) / "utt_errors.tsv"
            rows = sorted(read_utt_errors(scored))
            utts.setdefault(name, {})[method] = {"ids": [r[0] for r in rows],
                                                 "errors": [r[1] for r in rows],
                                                 "ref": [r[2] for r in rows]}
            if len(rows) != results[name][method]["utterances"]:
                raise ValueError(f"{scored.parent}: {len(rows)} utterances, "
                                 f"results.json says {results[name][method]['utterances']}")
    record = {
        "system": system, "seed": seed, "params": sum(p.numel() for p in model.parameters()),
        "macs_per_second": cost["macs_per_second"], "normalization": args.normalization,
        "config": sysconf.to_dict(), "checkpoint": ckpt.name,
        "train_options": variants(args).get(system, {}).get("train", ""),
        "train_hours": round(train_hours, 3), "settings": run_settings(args),
        "epochs": epochs, "dev_curve": dev_curve(run_dir), "routing": routing,
        "base_updates": base_updates(run_dir),
        "decode": {"network_rtf": round(sum(t["network_seconds"] for t in tests) / audio, 5),
                   "decode_rtf": round(sum(t["decoding_seconds"] for t in tests) / audio, 5),
                   "wfst_processes": tests[0]["wfst_processes"], "acoustic_scale": scale,
                   "test_audio_seconds": round(audio, 1)},
        "results": {s: results[s] for s in args.test_sets},
    }
    return record, utts


def write_run(args, system: str, seed: int, record: dict, utts: dict) -> Path:
    out = args.tables_dir / "runs" / system / f"seed{seed}.json"
    with atomic_path(out.with_name(f"seed{seed}.utts.json.gz")) as tmp, \
            gzip.open(tmp, "wt", encoding="utf-8") as f:
        json.dump(utts, f)
    atomic_write_text(out, json.dumps(record, indent=1) + "\n")  # last: marks the run finished
    return out


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    log = setup_logger(args.exp_dir / "log" / "tables.log")
    bases = {s: variants(args).get(s, {}).get("base", s) for s in args.systems}
    unknown = [s for s, b in bases.items() if not (args.conf_dir / f"{b}.yaml").is_file()]
    if unknown:
        log.error("no config for %s in %s", unknown, args.conf_dir)
        return 1
    if not args.report_only:
        check_finished_runs(args)
        train_cuts = train_subset(args, log)
    
        train_hours = sum(c.duration for p in train_cuts for c in CutSet.from_file(p)) / 3600
        py = sys.executable
        launcher = args.launcher.split() if args.launcher else [py]
        done = (lambda s, k: dev_run_path(args.tables_dir, s, k)) if args.dev_only else (
            lambda s, k: args.tables_dir / "runs" / s / f"seed{k}.json")
        todo = [(s, k) for k in args.seeds for s in args.systems if not done(s, k).is_file()]
        log.info("%d of %d runs to do: %s", len(todo), len(args.systems) * len(args.seeds),
                 " ".join(f"{s}/seed{k}" for s, k in todo))
        for i, (system, seed) in enumerate(todo, 1):
            t0 = time.time()
            run_dir = args.exp_dir / system / f"seed{seed}"
            cfg = system_config(args, system, run_dir)
            log.info("[%d/%d] %s seed %d -> %s", i, len(todo), system, seed, run_dir)
            run_cmd([*launcher, str(LOCAL / "train.py"), "--exp-dir", str(run_dir),
                     "--model-config", str(cfg), "--lang-dir", str(args.lang_dir),
                     "--train-cuts", *map(str, train_cuts),
                     "--dev-cuts", str(args.cuts_dir / f"cuts_{args.dev_set}.jsonl.gz"),
                     "--cmvn", str(args.cmvn), "--num-epochs", str(args.num_epochs),
                     "--max-duration", str(args.max_duration), "--lr", str(args.lr),
                     "--warmup-steps", str(args.warmup_steps), "--seed", str(seed),
                     *args.train_options.split(), *variant_train_options(args, system, seed)],
                    log, f"training {system} seed {seed}")
            if args.dev_only:
                out = write_dev_run(args, system, seed, run_dir, train_hours)
                log.info("[%d/%d] %s seed %d done in %.0f s -> %s", i, len(todo), system, seed,
                         time.time() - t0, out)
                continue
            common = ["--exp-dir", str(run_dir), "--lang-dir", str(args.lang_dir),
                      "--cuts-dir", str(args.cuts_dir), "--sets", *args.test_sets]
            run_cmd([py, str(LOCAL / "decode.py"), *common, "--cmvn", str(args.cmvn),
                     "--tune-set", args.dev_set, "--avg", str(args.avg),
                     "--acoustic-scales", args.acoustic_scales, "--beam", str(args.beam),
                     "--max-active", str(args.max_active), "--num-jobs", str(args.nj)],
                    log, f"decoding {system} seed {seed}")
            run_cmd([py, str(LOCAL / "score.py"), *common], log, f"scoring {system} seed {seed}")
            record, utts = collect(args, system, seed, run_dir, train_hours)
            out = write_run(args, system, seed, record, utts)
            log.info("[%d/%d] %s seed %d done in %.0f s: %s; WFST %s -> %s", i, len(todo),
                     system, seed, time.time() - t0,
                     ", ".join(f"{e['train_seconds']:.0f} s" for e in record["epochs"]),
                     {s: record["results"][s]["wfst"]["rate"] for s in args.test_sets}, out)
    if args.dev_only:
        return dev_report(args, log)
    report = ["--tables-dir", str(args.tables_dir), "--systems", *args.systems,
              "--seeds", *map(str, args.seeds), "--sets", *args.test_sets,
              "--bootstrap", str(args.bootstrap), "--routing-system", args.routing_system]
    if args.paper_columns:
        report += ["--paper-columns", args.paper_columns]
    os.environ.setdefault("MPLBACKEND", "Agg")
    return report_main(report)


if __name__ == "__main__":
    sys.exit(cli_main(main))
