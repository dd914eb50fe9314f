"""One home per concept: what decodes or transcribes does not reach into training (loaded,
and read for imports inside functions), and library names are imported from the module
that defines them."""

import ast
import subprocess
import sys

from helpers import ROOT

# Everything that decodes or transcribes, found by path: speechmoe/decode/ and these files
# (with the model-directory and audio modules they read with); training may use them,
# never the reverse.
INFERENCE_FILES = ["inference.py", "recognizer.py", "transcribe.py", "longform.py",
                   "sherpa.py", "model_dir.py", "data/audio.py"]


def inference_files() -> list:
    pkg = ROOT / "speechmoe"
    files = sorted((pkg / "decode").rglob("*.py")) + [pkg / f for f in INFERENCE_FILES]
    missing = [str(f) for f in files if not f.is_file()]
    assert not missing, f"inference modules not found (renamed?): {missing}"
    return files


def module_name(path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def training_imports(source: str, module: str, package: bool = False) -> list:
    """Every import statement of speechmoe.train in a module's source, at any depth (inside
    functions too), relative imports resolved (package: the source is its __init__.py):
    [(line, module)]."""
    here = module.split(".") if package else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = here[: len(here) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        hits = [n for n in names if n == "speechmoe.train" or n.startswith("speechmoe.train.")]
        if hits:
            found.append((node.lineno, hits[0]))
    return sorted(found)


def test_decoding_and_transcription_never_import_training():
    """Loaded for real, so an import through another module counts too."""
    modules = [module_name(f) for f in inference_files()]
    code = (f"import sys, {', '.join(modules)}; "
            "print(sorted(m for m in sys.modules if m.startswith('speechmoe.train')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout.strip()
    assert out == "[]", f"speechmoe.train is imported by an inference module: {out}"


def test_no_inference_module_imports_training_even_inside_a_function():
    """Read, not run: an import inside a function that the runtime check never calls."""
    bad = [f"{f.relative_to(ROOT)}:{line}: {name}" for f in inference_files()
           for line, name in training_imports(f.read_text(encoding="utf-8"), module_name(f),
                                              package=f.name == "__init__.py")]
    assert not bad, "inference modules import speechmoe.train:\n" + "\n".join(bad)


def test_the_static_check_sees_every_form_of_import():
    src = """
import speechmoe.train.validate
def f():
    from speechmoe.train.trainer import Trainer
    from speechmoe import train
    from ..train import rerun
    import speechmoe.trainer_notes, speechmoe.decode.greedy
"""
    got = training_imports(src, "speechmoe.decode.x")
    assert [line for line, _ in got] == [2, 4, 5, 6], got
    assert training_imports("from .train import x", "speechmoe", package=True) == \
        [(1, "speechmoe.train")]
    assert training_imports("from . import train", "speechmoe.recognizer") == \
        [(1, "speechmoe.train")]


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
