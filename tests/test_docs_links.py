"""The documentation holds together: every relative link and #anchor of README.md,
docs/*.md and egs/synth_mandarin/RESULTS.md resolves, and every command of the README's code
blocks exists where the README says it does. Text only (nothing is run), so it takes well
under a second.

Links: a relative target must exist, relative to the file that links to it, inside the
repository. An anchor must match a heading of its target Markdown file under GitHub's rule:
the heading's text, lowercased, with everything but letters, digits, underscores, hyphens and
spaces dropped, each space a hyphen; a repeated slug gets -1, -2 ... (explicit
`<a name=...>` / `id=...` anchors count too).

Commands: each line of the README's bash blocks, followed from the repository root (`cd`
moves; `git clone X D && cd D` stays at the root): `make T` needs a rule for T in the
Makefile there; `./run.sh` must exist, be executable and define its --help text
(`help_message`), and each `--option` it is given must be one of its variables (declared in
it or in tools/asr_defaults.sh); a `speechmoe-*` command must be a console script of
setup.py; `python -m M` must name a module of the tree. Nothing is executed.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS_PAGES = sorted((ROOT / "docs").glob("*.md"))
# README.md and docs/*.md, and the results page the docs send their figures to
DOC_FILES = [ROOT / "README.md", *DOCS_PAGES, ROOT / "egs" / "synth_mandarin" / "RESULTS.md"]

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
# [text](target "title") and ![alt](target); the text may hold one level of brackets
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]"
                         r"\(\s*<?([^()\s<>]+)>?(?:\s+[\"'][^\"']*[\"'])?\s*\)")
REF_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"<a\s+[^>]*(?:name|id)\s*=\s*[\"']([^\"']+)[\"']", re.I)
EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//)", re.I)
LINE_ANCHOR = re.compile(r"^L\d+(?:-L\d+)?$")


def prose_lines(text: str):
    """(line number, line) of the lines outside fenced code blocks."""
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield number, line


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's Markdown text."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = INLINE_CODE.sub(lambda m: m.group(2), text)        # code: its content
    text = re.sub(r"<[^>]+>", "", text)                       # inline HTML tags
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)                      # \w: letters, digits, _
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor a Markdown file defines: its headings' slugs and explicit anchors."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for _, line in prose_lines(path.read_text(encoding="utf-8")):
        found.update(HTML_ANCHOR.findall(line))
        m = HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def links(path: Path):
    """(line number, target) of every link of a Markdown file, code excluded."""
    for number, line in prose_lines(path.read_text(encoding="utf-8")):
        ref = REF_DEF.match(line)
        if ref:
            yield number, ref.group(1)
            continue
        line = INLINE_CODE.sub(lambda m: "code", line)
        for m in INLINE_LINK.finditer(line):
            yield number, m.group(1)


def link_errors(path: Path, root: Path = ROOT) -> list[str]:
    """What is wrong with the relative links of one Markdown file ([] when nothing)."""
    errors = []
    cache: dict[Path, set[str]] = {}
    for number, target in links(path):
        if EXTERNAL.match(target):
            continue
        where = f"{path.relative_to(root)}:{number}: {target}"
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / unquote(file_part) if file_part else path).resolve()
        if root.resolve() not in (dest, *dest.parents):
            errors.append(f"{where}: points outside the repository")
            continue
        if not dest.exists():
            errors.append(f"{where}: {dest.relative_to(root.resolve())} does not exist")
            continue
        if not anchor:
            continue
        if dest.suffix.lower() != ".md":
            if not (dest.is_file() and LINE_ANCHOR.match(anchor)):
                errors.append(f"{where}: an anchor into a file that is not Markdown")
            continue
        if dest not in cache:
            cache[dest] = anchors(dest)
        if unquote(anchor) not in cache[dest]:
            errors.append(f"{where}: no heading of {dest.name} has the anchor #{anchor}")
    return errors


@pytest.mark.parametrize("doc", DOC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_anchors_resolve(doc):
    assert not (errors := link_errors(doc)), "\n".join(errors)


def test_the_docs_pages_are_linked_from_the_readme():
    readme = {t.partition("#")[0] for _, t in links(ROOT / "README.md")}
    missing = [p.name for p in DOCS_PAGES if f"docs/{p.name}" not in readme]
    assert not missing, f"docs pages missing from the README's table of contents: {missing}"


def test_the_link_check_finds_broken_links_and_anchors(tmp_path):
    """The checker itself: it must report a missing file and a missing anchor, and accept
    GitHub's slugs (punctuation dropped, underscores kept, duplicates numbered)."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "b.md").write_text(
        "# Faster training (revision 19f0a4d): dev + dev_spon\n\n## Notes\n\n## Notes\n")
    a = tmp_path / "a.md"
    a.write_text("[ok](docs/b.md#faster-training-revision-19f0a4d-dev--dev_spon) "
                 "[ok](docs/b.md#notes-1) [ok](#top) `[code](nowhere.md)`\n"
                 "```\n[in a block](nowhere.md)\n```\n<a name=\"top\"></a>\n"
                 "[gone](docs/c.md) [bad anchor](docs/b.md#notes-2) [web](https://x.org/#y)\n")
    errors = link_errors(a, tmp_path)
    assert len(errors) == 2, errors
    assert "docs/c.md does not exist" in errors[0]
    assert "#notes-2" in errors[1]


# --- the README's commands ---------------------------------------------------------------

SHELL_BLOCK = re.compile(r"^```(?:bash|sh|shell)\s*\n(.*?)^```", re.M | re.S)
SEPARATORS = {"&&", "||", ";", "|"}
PLAIN_TOOLS = {"find", "cat", "ls", "echo", "export", "source", ".", "time"}


def readme_commands(readme: str):
    """Each command of the README's shell blocks, as a list of words (comments, line
    continuations and separators handled); a None marks the start of a block."""
    for block in SHELL_BLOCK.findall(readme):
        yield None
        for line in block.replace("\\\n", " ").splitlines():
            lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
            lexer.whitespace_split = True
            lexer.commenters = "#"
            words: list[str] = []
            for word in lexer:
                if word in SEPARATORS:
                    if words:
                        yield words
                    words = []
                else:
                    words.append(word)
            if words:
                yield words


def makefile_targets(makefile: Path) -> set[str]:
    text = makefile.read_text(encoding="utf-8")
    return {t for line in re.findall(r"^([^\s#=:][^=:]*):(?!=)", text, re.M) for t in line.split()}


def console_scripts() -> set[str]:
    setup = (ROOT / "setup.py").read_text(encoding="utf-8")
    return set(re.findall(r"[\"']([\w-]+)\s*=\s*[\w.]+:\w+[\"']", setup))


def declared_variables(script: Path) -> set[str]:
    names = set()
    for source in (script, ROOT / "tools" / "asr_defaults.sh"):
        names |= set(re.findall(r"^\s*([A-Za-z_]\w*)=", source.read_text(encoding="utf-8"), re.M))
    return names


def command_errors(words: list[str], cwd: Path, state: dict) -> tuple[list[str], Path]:
    """What is wrong with one command run in cwd, and the directory it leaves."""
    cmd, args = words[0], words[1:]
    shown = " ".join(words)
    if cmd == "git":
        if args[:1] == ["clone"]:
            rest = [a for a in args[1:] if not a.startswith("-")]  # URL [DIR]
            last = rest[-1] if rest else ""
            state["clone"] = last if len(rest) > 1 else Path(last).name.removesuffix(".git")
        return [], cwd
    if cmd == "cd":
        if args and args[0] == state.get("clone"):
            return [], ROOT  # the clone is this repository
        dest = (cwd / args[0]).resolve() if args else ROOT
        return ([] if dest.is_dir() else [f"`{shown}`: no directory {dest}"]), dest
    if cmd == "make":
        makefile = cwd / "Makefile"
        if not makefile.is_file():
            return [f"`{shown}`: no Makefile in {cwd}"], cwd
        targets = makefile_targets(makefile)
        missing = [t for t in args if not t.startswith("-") and "=" not in t and t not in targets]
        return [f"`{shown}`: the Makefile has no target {t}" for t in missing], cwd
    name = Path(cmd).name
    if name.startswith("speechmoe-"):
        ok = name in console_scripts()
        return ([] if ok else [f"`{shown}`: {name} is not a console script of setup.py"]), cwd
    if name in ("python", "python3") and args[:1] == ["-m"]:
        module = args[1]
        base = ROOT / Path(*module.split("."))
        ok = base.with_suffix(".py").is_file() or (base / "__main__.py").is_file()
        return ([] if ok else [f"`{shown}`: no module {module} in the tree"]), cwd
    if "/" in cmd:
        script = (cwd / cmd).resolve()
        if not script.is_file():
            return [f"`{shown}`: {script} does not exist"], cwd
        errors = []
        if not os.access(script, os.X_OK):
            errors.append(f"`{shown}`: {script} is not executable")
        if script.suffix == ".sh":
            text = script.read_text(encoding="utf-8")
            if "help_message=" not in text:
                errors.append(f"`{shown}`: {script} defines no help_message for --help")
            known = declared_variables(script) | {"help"}
            for opt in (a[2:].split("=")[0] for a in args if a.startswith("--")):
                if opt.replace("-", "_") not in known:
                    errors.append(f"`{shown}`: {script.name} has no option --{opt}")
        return errors, cwd
    if cmd in PLAIN_TOOLS:
        return [], cwd
    return [f"`{shown}`: no check knows this command (teach tests/test_docs_links.py)"], cwd


def test_every_readme_command_exists():
    errors, seen = [], set()
    cwd, state = ROOT, {}
    for words in readme_commands((ROOT / "README.md").read_text(encoding="utf-8")):
        if words is None:  # each block starts at the repository root
            cwd, state = ROOT, {}
            continue
        found, cwd = command_errors(words, cwd, state)
        errors += found
        seen.add(Path(words[0]).name if words[0] != "make" else " ".join(words[:2]))
    assert not errors, "\n".join(errors)
    # the quick start: install, the default recipe, transcription, the tests (CI runs it)
    assert {"make install", "run.sh", "speechmoe-transcribe", "make test"} <= seen, seen


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r"^make test$", ci, re.M), "CI must run `make test`, the README's command"


def test_the_command_check_can_fail(tmp_path):
    """A missing make target, a missing script option and an unknown console script are
    reported."""
    state: dict = {}
    assert command_errors(["make", "no-such-target"], ROOT, state)[0]
    run = ROOT / "egs" / "synth_mandarin"
    assert command_errors(["./run.sh", "--no-such-option", "1"], run, state)[0]
    assert not command_errors(["./run.sh", "--stage", "7", "--stop-stage", "7"], run, state)[0]
    assert command_errors(["speechmoe-nothing"], ROOT, state)[0]
    assert command_errors(["./missing.sh"], ROOT, state)[0]
