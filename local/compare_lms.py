#!/usr/bin/env python3
"""Compare language models for WFST decoding: TLG size, build time, decoding RTF, dev CER.

    local/compare_lms.py --exp-dir exp/moe_4e --lm-text data/text/lm_text.txt \
        --cmvn data/fbank/cmvn.pt --cuts-dir data/fbank --set dev \
        --configs 3:0:uniform 5:1e-7:uniform 3:0:freq 3:0:off --out-dir data/lm_compare

Each config is ORDER:PRUNE[:OPEN_VOCABULARY[:CHAR_WEIGHT]][+standard]
(local/prepare_lang.py's --order, --prune, --open-vocabulary and --char-weight;
+standard: --topology standard, the exact CTC topology, instead of the compact default);
each gets its own lang dir under --out-dir (kept, so a rerun only decodes). The
trained model's log-posteriors of --set are computed once; every graph then decodes
them on ONE thread at each of --acoustic-scales, and the best scale on that set is
reported with its CER. RTF = seconds / seconds of audio: "search" is
the WFST search alone, "network" the model on one thread. Writes <out-dir>/results.json
and results.md (a table). Choose on a dev set, never on a test set.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch
from lhotse import CutSet

from speechmoe.checkpoint import checkpoint_for_decoding
from speechmoe.data.dataset import cut_words
from speechmoe.decode.posteriors import posteriors
from speechmoe.decode.tuning import DEFAULT_SCALES_TEXT, choose_scale, parse_scales
from speechmoe.decode.wfst import WfstDecoder
from speechmoe.features import FeatureConfig, GlobalCMVN
from speechmoe.inference import load_model_for_inference
from speechmoe.lang.symbols import read_words
from speechmoe.logs import cli_main, script_parser, setup_logger

PREPARE_LANG = Path(__file__).resolve().with_name("prepare_lang.py")


def get_parser() -> argparse.ArgumentParser:
    p = script_parser(__doc__)
    p.add_argument("--exp-dir", type=Path, required=True)
    p.add_argument("--lm-text", type=Path, required=True)
    p.add_argument("--cmvn", type=Path, required=True)
    p.add_argument("--cuts-dir", type=Path, required=True)
    p.add_argument("--set", default="dev")
    p.add_argument("--configs", nargs="+", required=True,
                   help="ORDER:PRUNE[:OPEN_VOCABULARY[:CHAR_WEIGHT]][+standard]")
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--epoch", type=int, default=0)
    p.add_argument("--avg", type=int, default=2)
    p.add_argument("--acoustic-scales", default=DEFAULT_SCALES_TEXT)
    p.add_argument("--beam", type=float, default=16.0)
    p.add_argument("--max-active", type=int, default=7000)
    p.add_argument("--blank-skip-threshold", type=float, default=0.99)
    p.add_argument("--max-duration", type=float, default=300.0)
    return p


def parse_config(text: str) -> dict:
    full = text
    text, *flags = text.split("+")
    if set(flags) - {"standard"}:
        raise ValueError(f"--configs: {full!r}: the only flag is +standard")
    parts = text.split(":")
    if len(parts) not in (2, 3, 4):
        raise ValueError(f"--configs: {text!r} is not ORDER:PRUNE[:OPEN_VOCABULARY"
                         "[:CHAR_WEIGHT]]")
    cfg = {"order": int(parts[0]), "prune": float(parts[1]),
           "open_vocabulary": parts[2] if len(parts) >= 3 else "uniform",
           "char_weight": float(parts[3]) if len(parts) == 4 else 1.0}
    if cfg["open_vocabulary"] not in ("freq", "uniform", "off"):
        raise ValueError(f"--configs: {text!r}: open vocabulary must be freq, uniform or off")
    cfg["name"] = f"o{cfg['order']}_p{parts[1]}_{cfg['open_vocabulary']}" + (
        f"_w{parts[3]}" if len(parts) == 4 else "") + ("_standard" if flags else "")
    cfg["topology"] = "standard" if flags else "compact"
    cfg["spec"] = full
    return cfg


def build_lang(args, cfg: dict, lang: Path) -> None:
    """The lang dir of one config, by the lang stage's own script (it skips a finished one)."""
    cmd = [sys.executable, str(PREPARE_LANG), "--lm-text", str(args.lm_text),
           "--out-dir", str(lang), "--order", str(cfg["order"]), "--prune", str(cfg["prune"]),
           "--open-vocabulary", cfg["open_vocabulary"], "--char-weight", str(cfg["char_weight"]),
           "--topology", cfg["topology"]]
    if subprocess.run(cmd).returncode:
        raise RuntimeError(f"local/prepare_lang.py failed for {cfg['name']}: {' '.join(cmd)}")


def arpa_counts(path: Path) -> list[int]:
    counts = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.startswith("ngram "):
                counts.append(int(line.split("=")[1]))
            elif line.startswith("\\1-grams:"):
                break
    return counts


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    scales = parse_scales(args.acoustic_scales)
    configs = [parse_config(c) for c in args.configs]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    log = setup_logger(args.out_dir / "compare_lms.log")
    torch.set_num_threads(1)

    cuts_path = args.cuts_dir / f"cuts_{args.set}.jsonl.gz"
    if not cuts_path.is_file():
        raise FileNotFoundError(f"{cuts_path}: not found (run the feature stage first)")
    cuts = CutSet.from_file(cuts_path).to_eager()
    if len(cuts) == 0:
        raise ValueError(f"{cuts_path}: no utterances")
    audio = sum(c.duration for c in cuts)
    refs = {c.id: cut_words(c) for c in cuts}
    lm_words = {w for line in args.lm_text.read_text(encoding="utf-8").splitlines()
                for w in line.split()}
    ref_words = [w for c in cuts for w in cut_words(c)]
    oov = [w for w in ref_words if w not in lm_words]

    ckpt = checkpoint_for_decoding(args.exp_dir, args.epoch, args.avg)
    model, _ = load_model_for_inference(ckpt)
    t0 = time.perf_counter()
    lps = dict(posteriors(model, cuts, GlobalCMVN.load(args.cmvn), args.max_duration,
                          feature_config=FeatureConfig.for_cmvn(args.cmvn)))
    t_net = time.perf_counter() - t0
    missing = [c.id for c in cuts if c.id not in lps]
    if missing:
        raise ValueError(f"{cuts_path}: no posteriors for {len(missing)} cuts, e.g. "
                         f"{missing[:5]} (unreadable features)")
    log.info("%s: %d utterances, %.0f s of audio; network %.1f s on one thread (RTF %.4f); "
             "%d of %d reference words (%.2f%%) are not in the LM text", args.set, len(cuts),
             audio, t_net, t_net / audio, len(oov), len(ref_words),
             100 * len(oov) / len(ref_words))

    rows = []
    for cfg in configs:
        lang = args.out_dir / cfg["name"]
        t1 = time.perf_counter()
        build_lang(args, cfg, lang)
        build_s = time.perf_counter() - t1
        graph = json.loads((lang / "graph.json").read_text())
        words = {i: w for w, i in read_words(lang / "words.txt").items()}
        decoder = WfstDecoder(lang / "TLG.fst", words, beam=args.beam,
                              max_active=args.max_active,
                              blank_skip_threshold=args.blank_skip_threshold or None)
        for u in list(lps)[:30]:  # warm-up: the first pass over a graph faults it in
            decoder.decode(lps[u])
        hyps, per_scale = {}, {}
        for scale in scales:  # scale by scale, to time each search alone
            t2 = time.perf_counter()
            hyps[scale] = {u: decoder.decode(lp, acoustic_scale=scale) for u, lp in lps.items()}
            per_scale[scale] = {"search_rtf": round((time.perf_counter() - t2) / audio, 4)}
        choice = choose_scale({args.set: refs}, {args.set: hyps}, "CER")
        for scale in scales:
            per_scale[scale] = {"cer": round(choice.pooled[scale].rate, 2), **per_scale[scale]}
            log.info("%s @ %.2f: CER %.2f%%, search RTF %.4f", cfg["name"], scale,
                     choice.pooled[scale].rate, per_scale[scale]["search_rtf"])
        best = choice.best
        row = {**cfg, "ngrams": arpa_counts(lang / "lm.arpa"),
               "tlg_states": graph["sizes"]["TLG"][0], "tlg_arcs": graph["sizes"]["TLG"][1],
               "tlg_mb": round((lang / "TLG.fst").stat().st_size / 2**20, 1),
               "build_seconds": round(build_s, 1), "best_scale": best,
               "cer": per_scale[best]["cer"], "search_rtf": per_scale[best]["search_rtf"],
               "total_rtf": round(per_scale[best]["search_rtf"] + t_net / audio, 4),
               "per_scale": per_scale}
        rows.append(row)
        del decoder

    result = {"set": args.set, "utterances": len(cuts), "audio_seconds": round(audio, 1),
              "metric": "CER", "checkpoint": str(ckpt), "network_rtf": round(t_net / audio, 4),
              "oov_words": len(oov), "ref_words": len(ref_words), "threads": 1,
              "beam": args.beam, "max_active": args.max_active, "lms": rows}
    (args.out_dir / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [f"{args.set}: {len(cuts)} utterances, {audio / 3600:.2f} h; "
             f"{len(oov)} of {len(ref_words)} reference words not in the LM text; "
             f"one thread, network RTF {t_net / audio:.4f}", "",
             "| LM | open vocabulary | n-grams per order | TLG states | TLG arcs | TLG MB | "
             "build s | acoustic scale | dev CER (%) | search RTF | total RTF |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        ov = r["open_vocabulary"] + (f", char weight {r['char_weight']:g}"
                                     if r["char_weight"] != 1.0 else "")
        graph = ", standard T" if r["topology"] == "standard" else ""
        lines.append(f"| {r['order']}-gram, prune {r['prune']:g}{graph} | {ov} | "
                     f"{'/'.join(map(str, r['ngrams']))} | {r['tlg_states']:,} | "
                     f"{r['tlg_arcs']:,} | {r['tlg_mb']} | {r['build_seconds']} | "
                     f"{r['best_scale']} | {r['cer']:.2f} | {r['search_rtf']:.4f} | "
                     f"{r['total_rtf']:.4f} |")
    (args.out_dir / "results.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    log.info("\n%s", "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
