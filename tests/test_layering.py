"""One home per concept: what decodes or transcribes does not reach into training, and the
lang modules are imported from where their names are defined."""

import ast
import subprocess
import sys

from helpers import ROOT

# Everything that decodes or transcribes; training may use decoding, never the reverse.
INFERENCE_MODULES = ["speechmoe.decode.greedy", "speechmoe.decode.posteriors",
                     "speechmoe.decode.tuning", "speechmoe.decode.wfst", "speechmoe.inference",
                     "speechmoe.recognizer", "speechmoe.transcribe"]


def test_decoding_and_transcription_never_import_training():
    """Loaded for real, so an import through another module counts too."""
    code = (f"import sys, {', '.join(INFERENCE_MODULES)}; "
            "print(sorted(m for m in sys.modules if m.startswith('speechmoe.train')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout.strip()
    assert out == "[]", f"speechmoe.train is imported by an inference module: {out}"


def _imported_names(path):
    """(module, name) of every `from speechmoe... import name` in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [(node.module, a.name) for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("speechmoe")
            for a in node.names]


def test_library_modules_are_imported_from_where_names_are_defined():
    """No `from speechmoe.x import name` where module x only passes name on from another
    (lang/graph.py used to re-export lang/symbols.py, ngram.py arpa and kneser_ney); a
    package's __all__ is its interface and may."""
    import importlib

    files = [p for d in ("speechmoe", "local", "tests") for p in (ROOT / d).rglob("*.py")]
    files += list((ROOT / "egs").rglob("*.py"))
    bad = []
    for path in files:
        for module, name in _imported_names(path):
            mod = importlib.import_module(module)
            obj = getattr(mod, name, None)
            if obj is None or isinstance(obj, type(sys)):
                continue  # a submodule, or a name that is not there (the import fails)
            if hasattr(mod, "__path__") and name in getattr(mod, "__all__", ()):
                continue  # a package's declared interface (speechmoe.model's __all__)
            home = getattr(obj, "__module__", None)
            if home and home.startswith("speechmoe") and home != module:
                bad.append(f"{path.relative_to(ROOT)}: {name} from {module} (defined in {home})")
    assert not bad, "\n".join(bad)


def test_no_library_file_is_over_600_lines():
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / "speechmoe").rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 600}
    assert not long, long
