#!/usr/bin/env python3
"""Export stage: a self-contained model directory for recognition (speechmoe-transcribe).

    local/export.py --exp-dir exp/moe_4e --lang-dir data/lang --cmvn data/fbank/cmvn.pt \
        [--epoch 0 --avg 2] [--no-graph]

Writes <exp-dir>/export/ with the averaged weights and model config (model.pt), the
CMVN statistics (cmvn.pt), the feature options (features.json), the units (tokens.txt,
lang.json) and, unless --no-graph, the lexicon, word table and decoding graph
(lexicon.txt, words.txt, TLG.fst), the whole routed model as TorchScript
(model.torchscript.pt) and ONNX (model.onnx, dynamic batch and length; what
`speechmoe-transcribe --onnx` runs in onnxruntime; model.int8.onnx, the same with int8
weights, for --int8), plus manifest.json: each file's size and SHA-256,
the checkpoints averaged, the WFST acoustic scale and the export time.

The acoustic scale is the one the decoding stage chose for the same averaged model
(<exp-dir>/decode/avg-<epoch>-<avg>/wfst/acoustic_scale.json), or --acoustic-scale. With a
graph and neither, export stops: a model exported with an untuned scale decodes worse
without saying so. The directory is built under a temporary name and
renamed, so a half-written export is never used; everything in it loads with
torch.load(weights_only=True).

--sherpa-onnx adds <out-dir>/sherpa-onnx/, the directory to copy to a device that runs
sherpa-onnx (speechmoe/sherpa.py): model.onnx as sherpa-onnx's offline `zipformer_ctc`
type, taking sherpa-onnx's own fbank (deltas, CMVN, stacking and subsampling inside the
graph; the acoustic scale folded into its log-probs; a pitch model's pitch replaced by
constants, --sherpa-pitch), tokens.txt, TLG.fst and words.txt (unless --no-graph; this
TLG is built from the lang dir's L_disambig.fst and G.fst with each word's label on its
last token, where sherpa-onnx's decoder reads it: speechmoe/lang/token_start.py),
sherpa-onnx.json (the fbank options to set, each file's SHA-256) and README.md.

sherpa-onnx computes no pitch, so a pitch model's sherpa-onnx export holds pitch constant
and loses accuracy. Export says how much: --pitch-cost-cuts (a dev set's cuts, stage 7
passes the recipe's dev set) decodes that set with the toolkit twice, real and constant
pitch (the graph at the export's acoustic scale, or greedy with --no-graph), and writes
both error rates into sherpa-onnx.json, its README.md and the log. A pitch model with
neither --pitch-cost-cuts nor --sherpa-unmeasured-pitch is refused before anything is
written.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from speechmoe.checkpoint import checkpoint_for_decoding, load_checkpoint, save_checkpoint
from speechmoe.expdir import ExpDir
from speechmoe.features import FeatureConfig, GlobalCMVN
from speechmoe.inference import export_onnx, export_torchscript, load_model_for_inference, \
    quantize_onnx
from speechmoe.lang.graph import built_topology
from speechmoe.lang.symbols import num_real_tokens, read_tokens
from speechmoe.lang.token_start import build_token_start_tlg
from speechmoe.logs import cli_main, script_parser, setup_logger
from speechmoe.model_dir import GRAPH, verify_model_dir, write_manifest
from speechmoe.sherpa import (PITCH_FILLS, constant_pitch_cost, export_sherpa_onnx,
                              fbank_options, pitch_cost_text, pitch_fill)
from speechmoe.utils import atomic_dir


def get_parser() -> argparse.ArgumentParser:
    p = script_parser(__doc__)
    p.add_argument("--exp-dir", type=Path, required=True)
    p.add_argument("--lang-dir", type=Path, required=True)
    p.add_argument("--cmvn", type=Path, required=True)
    p.add_argument("--epoch", type=int, default=0, help="last epoch averaged (0: the last)")
    p.add_argument("--avg", type=int, default=2, help="epoch checkpoints averaged")
    p.add_argument("--acoustic-scale", type=float, default=None,
                   help="WFST acoustic scale written into the export (default: the one the "
                        "decoding stage chose for this --epoch / --avg)")
    p.add_argument("--out-dir", type=Path, default=None, help="default <exp-dir>/export")
    p.add_argument("--no-graph", action="store_true",
                   help="leave out the lexicon and TLG (greedy decoding only)")
    p.add_argument("--no-torchscript", action="store_true", help="skip model.torchscript.pt")
    p.add_argument("--no-onnx", action="store_true", help="skip model.onnx")
    p.add_argument("--no-int8", action="store_true",
                   help="skip model.int8.onnx (model.onnx with int8 weights: "
                        "speechmoe-transcribe --int8)")
    p.add_argument("--sherpa-onnx", action="store_true",
                   help="also write <out-dir>/sherpa-onnx/ for sherpa-onnx's offline "
                        "recognizer (zipformer_ctc model type)")
    p.add_argument("--sherpa-pitch", choices=PITCH_FILLS, default="mean",
                   help="a pitch model's pitch in the sherpa-onnx export (which computes "
                        "none): the training mean (default) or unvoiced")
    p.add_argument("--pitch-cost-cuts", type=Path, default=None,
                   help="a pitch model's --sherpa-onnx export: the cuts (with features) of "
                        "the dev set on which to measure what constant pitch costs")
    p.add_argument("--beam", type=float, default=16.0,
                   help="WFST beam of the --pitch-cost-cuts decoding (the recipe's stage 5's)")
    p.add_argument("--max-active", type=int, default=7000,
                   help="WFST most active states of the --pitch-cost-cuts decoding")
    p.add_argument("--sherpa-unmeasured-pitch", action="store_true",
                   help="export a pitch model for sherpa-onnx without measuring that cost "
                        "(its README says so)")
    return p


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    exp = ExpDir(args.exp_dir)
    out = args.out_dir or exp.export_dir
    log = setup_logger(exp.log_file("export"))
    ckpt_path = checkpoint_for_decoding(args.exp_dir, args.epoch, args.avg)
    scale = acoustic_scale(args, exp, ckpt_path)
    ckpt = load_checkpoint(ckpt_path)
    GlobalCMVN.load(args.cmvn)  # a clear error now rather than at recognition time
    if (args.sherpa_onnx and FeatureConfig.for_cmvn(args.cmvn).pitch
            and args.pitch_cost_cuts is None and not args.sherpa_unmeasured_pitch):
        raise ValueError(
            f"{args.cmvn}: the model was trained with pitch, which sherpa-onnx does not "
            "compute, so its sherpa-onnx export loses accuracy: pass --pitch-cost-cuts "
            "DEV_CUTS to measure how much (written into the export), or "
            "--sherpa-unmeasured-pitch to export it without measuring")
    if args.pitch_cost_cuts is not None and not args.pitch_cost_cuts.is_file():
        raise FileNotFoundError(f"--pitch-cost-cuts {args.pitch_cost_cuts}: not found")
    files = ["tokens.txt", "lang.json"] + ([] if args.no_graph else list(GRAPH))
    missing = [f for f in files if not (args.lang_dir / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{args.lang_dir}: missing {missing} (run the lang stage)")
    classes = num_real_tokens(read_tokens(args.lang_dir / "tokens.txt"))
    if ckpt["model_config"]["model"]["num_classes"] != classes:
        raise ValueError(f"{ckpt_path} has {ckpt['model_config']['model']['num_classes']} "
                         f"outputs but {args.lang_dir}/tokens.txt {classes} units: not the "
                         "lang dir the model was trained with")

    with atomic_dir(out) as tmp:  # a half-written export is never used
        save_checkpoint(tmp / "model.pt", model=ckpt["model"], epoch=ckpt["epoch"],
                        step=ckpt["step"], params={}, model_config=ckpt["model_config"])
        shutil.copy(args.cmvn, tmp / "cmvn.pt")
        FeatureConfig.for_cmvn(args.cmvn).save(tmp / "features.json")
        for f in files:
            shutil.copy(args.lang_dir / f, tmp / f)
        model = None
        if not (args.no_torchscript and args.no_onnx) or args.sherpa_onnx:
            model, system = load_model_for_inference(tmp / "model.pt")
            if not args.no_torchscript:
                export_torchscript(model, tmp / "model.torchscript.pt")
            if not args.no_onnx:
                t0 = time.time()
                export_onnx(model, tmp / "model.onnx", system.model.input_dim)
                log.info("ONNX export: %.0f s", time.time() - t0)
                if not args.no_int8:
                    quantize_onnx(tmp / "model.onnx", tmp / "model.int8.onnx")
        manifest = write_manifest(tmp, {
            "model": ckpt["model_config"].get("name", ""), "checkpoint": ckpt_path.name,
            "averaged": ckpt.get("averaged", []),
            "exported": time.strftime("%Y-%m-%d %H:%M:%S"), "acoustic_scale": scale})
        verify_model_dir(tmp)
        if args.sherpa_onnx:
            export_for_sherpa(args, model, tmp, manifest, log)
    size = sum(f.stat().st_size for f in out.iterdir()) / 2**20
    log.info("exported %s (%s, acoustic scale %s) to %s: %d files, %.1f MB", ckpt_path.name,
             manifest["model"], manifest["acoustic_scale"], out, len(manifest["files"]), size)
    return 0


def export_for_sherpa(args, model, tmp: Path, manifest: dict, log) -> None:
    """<tmp>/sherpa-onnx/ (not in manifest.json: it lists its own files' checksums)."""
    t0 = time.time()
    features = FeatureConfig.load(tmp / "features.json")
    graph = None
    if not args.no_graph:  # TLG.fst's word labels are where sherpa-onnx cannot read them
        topology = built_topology(args.lang_dir)
        if topology is None:
            topology = "compact"
            log.warning("%s has no graph.json: the sherpa-onnx graph gets the %s CTC "
                        "topology", args.lang_dir, topology)
        graph = tmp / "sherpa-TLG.fst"
        build_token_start_tlg(args.lang_dir, graph, topology=topology)
    cmvn = GlobalCMVN.load(tmp / "cmvn.pt")
    cost = None
    if features.pitch and args.pitch_cost_cuts is not None:
        cost = measure_pitch_cost(args, model, features, cmvn, tmp, manifest, log)
    d = export_sherpa_onnx(
        model, features, cmvn, tmp / "sherpa-onnx",
        tokens=tmp / "tokens.txt", graph=graph,
        words=None if args.no_graph else tmp / "words.txt",
        acoustic_scale=manifest["acoustic_scale"], pitch=args.sherpa_pitch,
        info={k: manifest[k] for k in ("model", "checkpoint", "averaged", "exported")},
        pitch_cost=cost, unmeasured_pitch=args.sherpa_unmeasured_pitch)
    if graph is not None:
        graph.unlink()
    fb = fbank_options(features)
    log.info("sherpa-onnx export: %.0f s (fbank %s%s)", time.time() - t0,
             fb["feature_extractor"], "" if fb["c_api_matches"] else
             f"; the C/C++ API cannot set {fb['c_api_differs_in']}: see "
             f"{d.name}/README.md")
    if features.pitch:
        log.warning("the model was trained with pitch: its sherpa-onnx export uses constant "
                    "pitch (%s). %s", args.sherpa_pitch, pitch_cost_text(cost))


def measure_pitch_cost(args, model, features: FeatureConfig, cmvn: GlobalCMVN, tmp: Path,
                       manifest: dict, log) -> dict:
    """What constant pitch costs on --pitch-cost-cuts: the exported graph at the export's
    acoustic scale (the lang dir's metric), or greedy units (--no-graph)."""
    from lhotse import CutSet

    from speechmoe.data.dataset import cut_words
    from speechmoe.decode.greedy import ctc_greedy
    from speechmoe.decode.wfst import WfstDecoder
    from speechmoe.lang.tokenizer import make_tokenizer, read_lang_info, scoring_tokens

    t0 = time.time()
    cuts = CutSet.from_file(args.pitch_cost_cuts).to_eager()
    words = {c.id: cut_words(c) for c in cuts}
    if args.no_graph:
        tok = make_tokenizer(args.lang_dir)
        id2tok = {i: t for t, i in read_tokens(tmp / "tokens.txt").items()}
        metric = "greedy token ER"
        refs = {u: tok.units(w) for u, w in words.items()}

        def decode(lp):
            return [id2tok[t] for t in ctc_greedy(lp)[0]]
    else:
        metric = read_lang_info(args.lang_dir)["metric"]
        decoder = WfstDecoder(tmp / "TLG.fst", tmp / "words.txt", beam=args.beam,
                              max_active=args.max_active,
                              acoustic_scale=manifest["acoustic_scale"])
        refs = {u: scoring_tokens(w, metric) for u, w in words.items()}

        def decode(lp):
            return scoring_tokens(decoder.decode(lp), metric)
    cost = {"set": str(args.pitch_cost_cuts), **constant_pitch_cost(
        model, features, cmvn, cuts, pitch_fill(features, cmvn, args.sherpa_pitch), decode,
        refs, metric)}
    log.info("what constant pitch costs on %s (%d utterances, %d reference tokens): %s "
             "%.2f%% with real pitch, %.2f%% constant (%.0f s)", args.pitch_cost_cuts,
             cost["utterances"], cost["ref_tokens"], metric, cost["real_pitch"],
             cost["constant_pitch"], time.time() - t0)
    return cost


def acoustic_scale(args, exp: ExpDir, ckpt_path: Path) -> float | None:
    """--acoustic-scale, else the decoding stage's choice for this averaged model; None
    for an export without a graph (greedy decoding has no scale)."""
    if args.acoustic_scale is not None:
        if args.acoustic_scale <= 0:
            raise ValueError(f"--acoustic-scale {args.acoustic_scale}: must be > 0")
        return args.acoustic_scale
    if args.no_graph:
        return None
    decode_dir = exp.decode_dir(ckpt_path)
    tuned = decode_dir.tuned_scale()
    if tuned is None:
        raise FileNotFoundError(
            f"{decode_dir.acoustic_scale_file}: no tuned acoustic scale for {ckpt_path.name} "
            f"(the decoding stage chooses one for the same --epoch / --avg, over several "
            f"--acoustic-scales): decode first, or pass --acoustic-scale")
    return tuned


if __name__ == "__main__":
    sys.exit(cli_main(main))
