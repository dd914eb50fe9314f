import json, numpy as np, onnxruntime as ort, soundfile as sf
from pathlib import Path
from speechmoe.decode.wfst import WfstDecoder
from speechmoe.features import FeatureConfig, fbank
from speechmoe.sherpa import sherpa_recognizer
recipe = Path("."); exported = recipe / "exp/moe_4e/export"; d = exported / "sherpa-onnx"
settings = json.loads((d / "sherpa-onnx.json").read_text())
cfg = FeatureConfig.load(exported / "features.json")
words = {int(i): w for w, i in (l.split() for l in (d / "words.txt").read_text().splitlines())}
sess = ort.InferenceSession(str(d / "model.onnx"), providers=["CPUExecutionProvider"])
wavs = sorted((recipe / "data/wav/test_read").glob("*.wav"))[:40]
audio = [sf.read(w, dtype="float32")[0] for w in wavs]
rec = sherpa_recognizer(d, method="wfst")
streams = [rec.create_stream() for _ in audio]
for s, x in zip(streams, audio): s.accept_waveform(16000, x)
rec.decode_streams(streams)
for ma in (settings["decoding"].get("max_active", 3000),):
  for beam in (None,):
    decoder = WfstDecoder(d / "TLG.fst", d / "words.txt", acoustic_scale=1.0, max_active=ma)
    for i, x in enumerate(audio):
        fb = fbank(x, 16000, cfg)
        lp, n = sess.run(None, {"x": fb[None].numpy(), "x_lens": np.array([len(fb)])})
        lp = lp[0, : int(n[0])]
        want = decoder.decode(lp); have = [words[w] for w in streams[i].result.words]
        print(ma, i, have == want, " ".join(have), "|", " ".join(want))
