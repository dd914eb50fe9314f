import sys, time
from pathlib import Path
import kaldifst
from speechmoe.lang.graph import TOPOLOGIES, relabel_high_ilabels, _count
from speechmoe.lang.symbols import read_tokens, num_real_tokens
lang = Path(sys.argv[1]); out = Path(sys.argv[2])
t0 = time.time()
tokens = read_tokens(lang / "tokens.txt")
n = num_real_tokens(tokens)
L = kaldifst.StdVectorFst.read(str(lang / "L_disambig.fst"))
G = kaldifst.StdVectorFst.read(str(lang / "G.fst"))
max_in = max(a.ilabel for s in range(L.num_states) for a in kaldifst.ArcIterator(L, s))
num_disambig = max_in - n + 1
print("n", n, "num_disambig", num_disambig)
kaldifst.arcsort(L, sort_type="olabel"); kaldifst.arcsort(G, sort_type="ilabel")
LG = kaldifst.StdVectorFst(kaldifst.compose(L, G))
kaldifst.connect(LG)
kaldifst.arcsort(LG, sort_type="ilabel")
T = TOPOLOGIES[sys.argv[3] if len(sys.argv) > 3 else "compact"](n, num_disambig)
kaldifst.arcsort(T, sort_type="olabel")
TLG = kaldifst.StdVectorFst(kaldifst.compose(T, LG))
kaldifst.connect(TLG)
relabel_high_ilabels(TLG, n)
print("LG", _count(LG), "TLG", _count(TLG), f"{time.time()-t0:.1f}s")
TLG.write(str(out))
