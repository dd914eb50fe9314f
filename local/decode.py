#!/usr/bin/env python3
"""Decoding stage: CTC greedy and WFST (TLG) beam search of every test set.

    local/decode.py --exp-dir exp/moe_4e --lang-dir data/lang --cmvn data/fbank/cmvn.pt \
        --cuts-dir data/fbank --sets test_read test_chat --tune-set dev dev_spon

The model is the average of the last --avg epoch checkpoints up to --epoch
(0: the last). WFST decoding's acoustic scale is chosen on --tune-set among
--acoustic-scales (the test sets are never used for it): the scale with the fewest errors
over all the tuning sets together (their errors and reference tokens summed). Hypotheses
are written to <exp-dir>/decode/<model>/<method>/<set>/hyp.txt ("utt_id<TAB>tokens"),
where <method> is ctc_greedy (token sequence) or wfst (word sequence); scoring is
local/score.py.

Memory stays bounded whatever the size of a set: the network's log-posteriors are
computed batch by batch (on the GPU when there is one, --device), decoded greedily at
once, and sent to the WFST worker processes as they come, each utterance once (a worker
decodes it at every acoustic scale being tuned), with at most --max-pending utterances
waiting for a worker.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from multiprocessing import get_context
from pathlib import Path

import torch

from speechmoe.logs import cli_main, setup_logger

_DECODER = None


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--exp-dir", type=Path, required=True)
    p.add_argument("--lang-dir", type=Path, required=True)
    p.add_argument("--cmvn", type=Path, required=True)
    p.add_argument("--cuts-dir", type=Path, required=True,
                   help="dir with cuts_<set>.jsonl.gz (with features)")
    p.add_argument("--sets", nargs="+", required=True)
    p.add_argument("--tune-set", "--tune-sets", dest="tune_sets", nargs="+", default=["dev"],
                   help="sets the acoustic scale is chosen on (errors pooled over them)")
    p.add_argument("--epoch", type=int, default=0, help="last epoch to use (0: the last)")
    p.add_argument("--avg", type=int, default=3, help="number of epoch checkpoints averaged")
    p.add_argument("--methods", nargs="+", default=["ctc_greedy", "wfst"],
                   choices=["ctc_greedy", "wfst"])
    p.add_argument("--beam", type=float, default=16.0)
    p.add_argument("--max-active", type=int, default=7000)
    p.add_argument("--acoustic-scales", default="0.5,0.7,1.0,1.4",
                   help="comma-separated candidates tuned on --tune-set")
    p.add_argument("--blank-skip-threshold", type=float, default=0.99,
                   help="collapse runs of frames with p(blank) above this (0: off)")
    p.add_argument("--max-duration", type=float, default=300.0)
    p.add_argument("--num-jobs", type=int, default=2, help="WFST decoding processes")
    p.add_argument("--max-pending", type=int, default=64,
                   help="utterances' posteriors waiting for a WFST worker at most")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cuda or cpu")
    p.add_argument("--force", action="store_true", help="decode again even if done")
    return p


def _init_decoder(graph: str, words: str, beam: float, max_active: int, skip) -> None:
    global _DECODER
    from speechmoe.decode.wfst import WfstDecoder

    torch.set_num_threads(1)
    _DECODER = WfstDecoder(graph, words, beam=beam, max_active=max_active,
                           blank_skip_threshold=skip)


def _decode_scales(log_probs, scales: list[float]) -> list[list[str]]:
    """One utterance at every acoustic scale (its posteriors are sent once)."""
    out = []
    for scale in scales:
        _DECODER.acoustic_scale = scale
        out.append(_DECODER.decode(log_probs))
    return out


def write_hyps(path: Path, hyps: dict[str, list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(f"{u}\t{' '.join(h)}\n" for u, h in sorted(hyps.items())),
                   encoding="utf-8")
    tmp.replace(path)


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    from lhotse import CutSet

    from speechmoe.data.dataset import cut_words
    from speechmoe.decode.greedy import ctc_greedy
    from speechmoe.decode.posteriors import posteriors
    from speechmoe.features import FeatureConfig, GlobalCMVN
    from speechmoe.inference import checkpoint_for_decoding, load_model_for_inference, \
        source_fingerprint
    from speechmoe.lang.graph import read_tokens
    from speechmoe.lang.tokenizer import read_lang_info, scoring_tokens
    from speechmoe.scoring import ErrorStats, score

    log = setup_logger(args.exp_dir / "log" / "decode.log")
    torch.set_num_threads(2)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    ckpt = checkpoint_for_decoding(args.exp_dir, args.epoch, args.avg)
    model, system = load_model_for_inference(ckpt)
    model.to(device)
    id2tok = {i: t for t, i in read_tokens(args.lang_dir / "tokens.txt").items()}
    cmvn = GlobalCMVN.load(args.cmvn)
    feat_cfg = FeatureConfig.for_cmvn(args.cmvn)
    out_root = args.exp_dir / "decode" / ckpt.stem
    # what the hypotheses depend on besides the model: the graph and the options
    inputs = {"graph": source_fingerprint(args.lang_dir / "TLG.fst")
              if (args.lang_dir / "TLG.fst").is_file() else None,
              "sets": args.sets, "tune_sets": args.tune_sets, "methods": args.methods,
              "beam": args.beam, "max_active": args.max_active,
              "acoustic_scales": args.acoustic_scales}
    done = out_root / ".done"
    if done.is_file() and not args.force:
        try:
            same = json.loads(done.read_text() or "{}") == inputs
        except json.JSONDecodeError:
            same = False
        if same:
            log.info("%s: already decoded (use --force to redo)", out_root)
            return 0
        log.info("%s: the graph or the decoding options changed since it was decoded: "
                 "decoding again", out_root)
    log.info("decoding with %s (%s) on %s -> %s", ckpt, system.name, device, out_root)

    pool = None
    if "wfst" in args.methods:
        graph = args.lang_dir / "TLG.fst"
        if not graph.is_file():
            log.error("%s: not found (run the lang stage first)", graph)
            return 1
        skip = args.blank_skip_threshold or None
        pool = get_context("fork").Pool(
            args.num_jobs, initializer=_init_decoder,
            initargs=(str(graph), str(args.lang_dir / "words.txt"), args.beam, args.max_active,
                      skip))

    def run(name: str, scales: list[float]) -> dict:
        """Greedy and WFST (at each of scales) hypotheses of one set, streamed."""
        path = args.cuts_dir / f"cuts_{name}.jsonl.gz"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not found (run the feature stage first)")
        cuts = CutSet.from_file(path).to_eager()
        t0 = time.time()
        greedy: dict = {}
        wfst: dict = {s: {} for s in scales} if pool is not None else {}
        pending: collections.deque = collections.deque()

        def collect(block: bool) -> None:
            while pending and (block or pending[0][1].ready()):
                cut_id, job = pending.popleft()
                for scale, words in zip(scales, job.get()):
                    wfst[scale][cut_id] = words

        t_nn = 0.0
        t_batch = time.time()
        for cut_id, lp in posteriors(model, cuts, cmvn, args.max_duration, device, feat_cfg):
            t_nn += time.time() - t_batch
            if "ctc_greedy" in args.methods:
                greedy[cut_id] = [id2tok[t] for t in ctc_greedy(lp)[0]]
            if pool is not None:
                pending.append((cut_id, pool.apply_async(_decode_scales, (lp, scales))))
                collect(block=False)
                while len(pending) > args.max_pending:  # bounded: wait for the oldest
                    cut_id0, job = pending.popleft()
                    for scale, words in zip(scales, job.get()):
                        wfst[scale][cut_id0] = words
            t_batch = time.time()
        collect(block=True)
        audio = sum(c.duration for c in cuts)
        log.info("%s: %d utterances, %.0f s of audio: network %.1f s (RTF %.3f), all "
                 "decoding %.1f s (%d WFST processes, %d acoustic scales)", name, len(cuts),
                 audio, t_nn, t_nn / max(audio, 1e-9), time.time() - t0,
                 args.num_jobs if pool is not None else 0, len(scales))
        refs = {c.id: cut_words(c) for c in cuts}
        timing[name] = {"utterances": len(cuts), "audio_seconds": round(audio, 2),
                        "network_seconds": round(t_nn, 2),
                        "decoding_seconds": round(time.time() - t0, 2),
                        "wfst_processes": args.num_jobs if pool is not None else 0,
                        "acoustic_scales": len(scales)}
        return {"greedy": greedy, "wfst": wfst, "refs": refs}

    timing: dict = {}
    scales = [float(s) for s in args.acoustic_scales.split(",")]
    best_scale = scales[0]
    if pool is not None and len(scales) > 1:
        metric = read_lang_info(args.lang_dir)["metric"]  # CER, or WER for a BPE lang dir
        per_set = {}
        for name in dict.fromkeys(args.tune_sets):
            tuned = run(name, scales)
            refs = {u: scoring_tokens(w, metric) for u, w in tuned["refs"].items()}
            per_set[name] = {s: score(refs, {u: scoring_tokens(w, metric) for u, w in
                                             tuned["wfst"][s].items()}) for s in scales}
            log.info("acoustic scale on %s: %s %s", name, metric,
                     {s: round(st.rate, 2) for s, st in per_set[name].items()})
        pooled = {s: sum((st[s] for st in per_set.values()), ErrorStats()) for s in scales}
        best_scale = min(scales, key=lambda s: pooled[s].rate)
        log.info("acoustic scale on %s: %s %s -> %.2f", " + ".join(per_set), metric,
                 {s: round(st.rate, 2) for s, st in pooled.items()}, best_scale)

        def rates(stats: dict) -> dict:
            first = next(iter(stats.values()))
            return {metric.lower(): {s: st.rate for s, st in stats.items()},
                    "utterances": first.utts, "ref_tokens": first.ref_len}

        (out_root / "wfst").mkdir(parents=True, exist_ok=True)
        (out_root / "wfst" / "acoustic_scale.json").write_text(json.dumps(
            {"tune_set": " + ".join(per_set), **rates(pooled), "best": best_scale,
             "per_set": {name: rates(sts) for name, sts in per_set.items()}}, indent=1))

    for name in args.sets:
        result = run(name, [best_scale])
        if "ctc_greedy" in args.methods:
            write_hyps(out_root / "ctc_greedy" / name / "hyp.txt", result["greedy"])
        if pool is not None:
            write_hyps(out_root / "wfst" / name / "hyp.txt", result["wfst"][best_scale])
    if pool is not None:
        pool.close()
        pool.join()
    # wall times per set (network: the model's share, on this process's threads)
    (out_root / "timing.json").write_text(json.dumps(timing, indent=1) + "\n")
    done.write_text(json.dumps(inputs) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
