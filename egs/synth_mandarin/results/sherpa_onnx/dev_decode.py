"""What measure.py, max_active.py and graphs.py share: dev's utterances, sherpa-onnx's
decode of them with an exported directory (speechmoe.sherpa.sherpa_transcribe), and the
toolkit's scoring. Run from egs/synth_mandarin."""
import subprocess
import sys
import time
from pathlib import Path

import soundfile as sf

from speechmoe.lang.tokenizer import words_to_text
from speechmoe.sherpa import sherpa_transcribe


def dev_rows() -> list[list[str]]:
    """[utterance id, reference text] of every dev utterance."""
    return [line.split("\t")[:2] for line in Path("data/text/dev.tsv").read_text().splitlines()]


def wav(utt: str) -> str:
    return f"data/wav/dev/{utt}.wav"


def total_audio_seconds(rows) -> float:
    return sum(sf.info(wav(u)).duration for u, _ in rows)


def sherpa_decode(model_dir: Path, rows, wavs=None, **recognizer_options) -> tuple[str, float]:
    """Hypotheses (id<TAB>text lines) of sherpa-onnx's WFST search on one thread, and the
    wall time of the whole decode (recognizer construction included). rows: (utterance
    id, ...) pairs; wavs: their audio files [dev's, wav(id)]."""
    t0 = time.perf_counter()
    words = sherpa_transcribe(model_dir, wavs or [wav(u) for u, _ in rows], method="wfst",
                              num_threads=1, **recognizer_options)
    hyps = "".join(f"{u}\t{words_to_text(w, 'CER')}\n" for (u, _), w in zip(rows, words))
    return hyps, time.perf_counter() - t0


def score(ref: Path, hyp: Path) -> str:
    """python -m speechmoe.scoring's line (CER with its counts and utterances)."""
    r = subprocess.run([sys.executable, "-m", "speechmoe.scoring", str(ref), str(hyp)],
                       capture_output=True, text=True, check=True)
    return r.stdout.strip()
