"""What measure.py and max_active.py share: dev's utterances, sherpa-onnx's decode of them
with an exported directory, and the toolkit's scoring. Run from egs/synth_mandarin."""
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf

from speechmoe.lang.tokenizer import words_to_text
from speechmoe.sherpa import sherpa_recognizer


def dev_rows() -> list[list[str]]:
    """[utterance id, reference text] of every dev utterance."""
    return [line.split("\t")[:2] for line in Path("data/text/dev.tsv").read_text().splitlines()]


def wav(utt: str) -> str:
    return f"data/wav/dev/{utt}.wav"


def total_audio_seconds(rows) -> float:
    return sum(sf.info(wav(u)).duration for u, _ in rows)


def read_words(export: Path) -> dict[int, str]:
    """The exported words.txt: sherpa-onnx returns word ids."""
    return {int(i): w for w, i in (line.split() for line in
                                   (export / "sherpa-onnx" / "words.txt").read_text().splitlines())}


def with_graph(export: Path, graph: Path, name: str) -> Path:
    """A temporary copy of the export's sherpa-onnx/ directory (symbolic links) whose
    decoding graph is ``graph`` instead of the exported one."""
    swapped = Path(tempfile.mkdtemp(prefix=f"sherpa-{name}-"))
    exported = json.loads((export / "sherpa-onnx" / "sherpa-onnx.json").read_text()
                          )["decoding"]["graph"]
    for f in (export / "sherpa-onnx").iterdir():
        (swapped / f.name).symlink_to(Path(graph).resolve() if f.name == exported
                                      else f.resolve())
    return swapped


def sherpa_decode(model_dir: Path, rows, words: dict[int, str], **recognizer_options
                  ) -> tuple[str, float]:
    """Hypotheses (id<TAB>text lines) of sherpa-onnx's WFST search on one thread, and the
    wall time of the whole decode (recognizer construction included)."""
    t0 = time.perf_counter()
    rec = sherpa_recognizer(model_dir, method="wfst", num_threads=1, **recognizer_options)
    hyps = []
    for u, _ in rows:
        x, sr = sf.read(wav(u), dtype="float32")
        s = rec.create_stream()
        s.accept_waveform(sr, x)
        rec.decode_stream(s)
        hyps.append(f"{u}\t{words_to_text([words[w] for w in s.result.words], 'CER')}\n")
    return "".join(hyps), time.perf_counter() - t0


def score(ref: Path, hyp: Path) -> str:
    """python -m speechmoe.scoring's line (CER with its counts and utterances)."""
    r = subprocess.run([sys.executable, "-m", "speechmoe.scoring", str(ref), str(hyp)],
                       capture_output=True, text=True, check=True)
    return r.stdout.strip()
