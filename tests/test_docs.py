"""The README and docs/ stay true: links resolve, commands use real flags, paths and names exist.

Checks, each of which fails with the file and line of what is wrong:

* every relative link ``[text](path#anchor)`` (and image) in ``README.md`` and ``docs/*.md`` points at
  an existing file and, for a Markdown target with an anchor, at one of its headings (GitHub's anchor
  rule: lower-case, spaces to ``-``, punctuation dropped, ``-1``, ``-2`` for repeats);
* every ``--option`` of a ``clir-ot VERB`` command in a ``bash`` block (or an inline code span) is an
  option of that verb's parser;
* every repository path in code (``tools/…``, ``clir_ot/…``, ``tests/…``) exists;
* every ``clir_ot`` name imported in a ``python`` block, or written as a dotted ``clir_ot.x.y`` in
  code, exists;
* the README stays a front door (at most 260 lines) and its layout table lists every module and
  package directly under ``clir_ot/``, and nothing that is not there.
"""
from __future__ import annotations

import argparse
import ast
import importlib
import re
import shlex
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
README_MAX_LINES = 260


def doc_files() -> list[Path]:
    """README.md and every Markdown page under docs/."""
    return [README, *sorted((ROOT / "docs").glob("**/*.md"))]


@dataclass(frozen=True)
class Block:
    """A fenced code block: its language tag, first line number (1-based) and text."""

    lang: str
    line: int
    text: str


@dataclass(frozen=True)
class Prose:
    """One line of a page outside fenced code blocks."""

    line: int
    text: str


FENCE = re.compile(r"^\s*(```+|~~~+)\s*([\w+-]*)")


def split_page(path: Path) -> tuple[list[Prose], list[Block]]:
    """The page's prose lines and fenced code blocks, with 1-based line numbers."""
    prose: list[Prose] = []
    blocks: list[Block] = []
    fence: str | None = None
    lang, start, body = "", 0, []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        match = FENCE.match(line)
        if fence is None and match:
            fence, lang, start, body = match.group(1), match.group(2).lower(), number + 1, []
        elif fence is not None and line.strip().startswith(fence) and not line.strip()[len(fence):].strip():
            blocks.append(Block(lang, start, "\n".join(body)))
            fence = None
        elif fence is not None:
            body.append(line)
        else:
            prose.append(Prose(number, line))
    assert fence is None, f"{path}:{start - 1}: code block never closed"
    return prose, blocks


INLINE_CODE = re.compile(r"(`+)(.+?)\1")


def strip_inline_code(text: str) -> str:
    """The line without its inline code spans (links inside code are not links)."""
    return INLINE_CODE.sub("", text)


def inline_code(text: str) -> list[str]:
    """The contents of the line's inline code spans."""
    return [m.group(2).strip() for m in INLINE_CODE.finditer(text)]


# ---------------------------------------------------------------------------------------------------
# headings and links


def github_anchor(heading: str) -> str:
    """GitHub's anchor for a heading: markup removed, lower-case, punctuation dropped, spaces → '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links and images keep their text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").strip().lower()
    kept = []
    for char in text:
        category = unicodedata.category(char)
        if char in "-_" or char == " " or category[0] in "LN" or category == "Mn":
            kept.append(char)
    return "".join(kept).replace(" ", "-")


HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def anchors(path: Path) -> set[str]:
    """Every anchor GitHub gives the page's headings (repeats get -1, -2, ...)."""
    seen: dict[str, int] = {}
    result: set[str] = set()
    prose, _ = split_page(path)
    for line in prose:
        match = HEADING.match(line.text)
        if not match:
            continue
        anchor = github_anchor(match.group(2))
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        result.add(anchor if count == 0 else f"{anchor}-{count}")
    return result


LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def links(path: Path) -> list[tuple[int, str]]:
    """(line, target) of every Markdown link and image on the page, outside code."""
    prose, _ = split_page(path)
    return [(line.line, m.group(1)) for line in prose for m in LINK.finditer(strip_inline_code(line.text))]


def link_problem(page: Path, target: str) -> str | None:
    """Why a relative link from ``page`` does not resolve, or None when it does."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
        return None
    file_part, _, anchor = target.partition("#")
    dest = (page.parent / file_part).resolve() if file_part else page
    try:
        dest.relative_to(ROOT)
    except ValueError:
        return f"{target!r} points outside the repository"
    if not dest.exists():
        return f"{target!r}: no file {dest.relative_to(ROOT)}"
    if anchor and dest.suffix == ".md":
        if anchor not in anchors(dest):
            return f"{target!r}: {dest.relative_to(ROOT)} has no heading with anchor #{anchor}"
    return None


def test_github_anchor_rule():
    assert github_anchor("Results: BM25 on XQuAD") == "results-bm25-on-xquad"
    assert github_anchor("Results: cross-encoder students (reranker)") == "results-cross-encoder-students-reranker"
    assert github_anchor("The answer, on this machine") == "the-answer-on-this-machine"
    assert github_anchor("`clir_ot/io.py` and [links](x.md)") == "clir_otiopy-and-links"
    assert github_anchor("Languages, analyzers and Java") == "languages-analyzers-and-java"


def test_link_check_catches_broken_links(tmp_path, monkeypatch):
    """The checker itself: a missing file and a missing heading are both reported."""
    root = tmp_path.resolve()
    monkeypatch.setattr(sys.modules[__name__], "ROOT", root)
    page = root / "a.md"
    page.write_text("# Top\n\n## A section\n\n[ok](#a-section) [bad](#nope) [gone](b.md)\n", encoding="utf-8")
    found = {target: link_problem(page, target) for _, target in links(page)}
    assert found["#a-section"] is None
    assert "no heading with anchor #nope" in found["#nope"]
    assert "no file b.md" in found["b.md"]


@pytest.mark.parametrize("page", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    problems = [f"{page.relative_to(ROOT)}:{line}: {why}"
                for line, target in links(page) if (why := link_problem(page, target))]
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(README.parent / target.partition("#")[0]).resolve() for _, target in links(README)}
    unlinked = [str(p.relative_to(ROOT)) for p in doc_files()[1:] if p.resolve() not in linked]
    assert not unlinked, f"README.md's documentation table does not link: {', '.join(unlinked)}"


# ---------------------------------------------------------------------------------------------------
# commands


def shell_commands(block: Block) -> list[tuple[int, str]]:
    """(line, command) for each command of a bash block: continuations joined, comments dropped."""
    commands: list[tuple[int, str]] = []
    pending, start = "", 0
    for offset, raw in enumerate(block.text.splitlines()):
        line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if not pending:
            start = block.line + offset
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        if pending.strip():
            commands.append((start, pending.strip()))
        pending = ""
    return commands


def clir_ot_invocations(command: str) -> list[list[str]]:
    """The argument lists after each ``clir-ot`` in a shell command (split at ``|``, ``&&``, ``;``)."""
    try:
        tokens = shlex.split(command)
    except ValueError:
        tokens = command.split()
    result: list[list[str]] = []
    current: list[str] | None = None
    for token in tokens:
        if token in {"|", "&&", "||", ";"}:
            current = None
        elif token == "clir-ot":
            current = []
            result.append(current)
        elif current is not None:
            current.append(token)
    return result


def subparsers_of(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse keeps sub-commands in a private list; no public API
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def options_of(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {option: action for action in parser._actions for option in action.option_strings}


def takes_value(action: argparse.Action) -> bool:
    return action.nargs != 0


OPTION = re.compile(r"^--?[A-Za-z][\w-]*")


def option_problems(parser: argparse.ArgumentParser, args: list[str], strict_verb: bool) -> list[str]:
    """Options in ``args`` (after ``clir-ot``) that the parser of their verb does not define."""
    top = options_of(parser)
    i = 0
    while i < len(args) and args[i].startswith("-"):
        name = args[i].split("=", 1)[0]
        if name not in top:
            return [f"clir-ot has no global option {name}"]
        i += 2 if takes_value(top[name]) and "=" not in args[i] else 1
    if i >= len(args):
        return []
    verbs = subparsers_of(parser)
    verb = args[i]
    if verb not in verbs:
        return [f"clir-ot has no verb {verb!r}"] if strict_verb else []
    sub, words = verbs[verb], [verb]
    rest = args[i + 1:]
    nested = subparsers_of(sub)
    if nested and rest and rest[0] in nested:
        sub, words, rest = nested[rest[0]], [verb, rest[0]], rest[1:]
    if any(action.nargs in (argparse.REMAINDER, argparse.PARSER) for action in sub._actions
           if not action.option_strings and not isinstance(action, argparse._SubParsersAction)):
        return []  # the rest belongs to another program (`clir-ot pyserini ...`)
    known = options_of(sub)
    problems = []
    for token in rest:
        match = OPTION.match(token)
        if match and not re.match(r"^-\d", token) and match.group(0) not in known:
            problems.append(f"`clir-ot {' '.join(words)}` has no option {match.group(0)}")
    return problems


@pytest.fixture(scope="module")
def cli_parser() -> argparse.ArgumentParser:
    from clir_ot.cli import build_parser

    return build_parser()


def test_option_check_catches_unknown_flags(cli_parser):
    assert option_problems(cli_parser, ["search", "--index", "x", "--hits", "5"], True) == []
    assert option_problems(cli_parser, ["search", "--no-such-flag", "1"], True) == [
        "`clir-ot search` has no option --no-such-flag"]
    assert option_problems(cli_parser, ["no-such-verb"], True) == ["clir-ot has no verb 'no-such-verb'"]
    assert option_problems(cli_parser, ["--jvm-heap", "8g", "models", "prepare", "--bogus"], True) == [
        "`clir-ot models prepare` has no option --bogus"]


@pytest.mark.parametrize("page", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_documented_commands_use_real_options(page, cli_parser):
    prose, blocks = split_page(page)
    found: list[tuple[int, list[str], bool]] = []
    for block in blocks:
        if block.lang in {"bash", "sh", "shell", "console"}:
            for line, command in shell_commands(block):
                found += [(line, args, True) for args in clir_ot_invocations(command)]
    for line in prose:
        for code in inline_code(line.text):
            if code.startswith("clir-ot "):
                found += [(line.line, args, False) for args in clir_ot_invocations(code)]
    problems = [f"{page.relative_to(ROOT)}:{line}: {problem}"
                for line, args, strict in found for problem in option_problems(cli_parser, args, strict)]
    assert not problems, "documented commands that the CLI would refuse:\n" + "\n".join(problems)


# ---------------------------------------------------------------------------------------------------
# paths and Python names

REPO_PATH = re.compile(r"(?<![\w./-])((?:tools|clir_ot|tests|docs)/[\w./*{},+-]*[\w/*}])")


def path_exists(text: str) -> bool:
    """Whether a path written in the docs exists; ``*`` globs and ``{a,b}`` choices are allowed."""
    for choice in re.findall(r"\{([^}]*)\}", text)[:1]:
        return all(path_exists(text.replace("{" + choice + "}", part, 1)) for part in choice.split(","))
    if "*" in text:
        return any(ROOT.glob(text))
    return (ROOT / text).exists()


@pytest.mark.parametrize("page", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_repository_paths_in_code_exist(page):
    prose, blocks = split_page(page)
    snippets = [(line.line, code) for line in prose for code in inline_code(line.text)]
    snippets += [(block.line, block.text) for block in blocks]
    problems = [f"{page.relative_to(ROOT)}:{line}: no such path {path}"
                for line, code in snippets for path in REPO_PATH.findall(code) if not path_exists(path)]
    assert not problems, "\n".join(problems)


def resolve_dotted(name: str) -> bool:
    """Whether ``clir_ot.a.b.C`` names a module, or an attribute of the longest importable prefix."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


DOTTED = re.compile(r"\bclir_ot(?:\.[A-Za-z_]\w*)+")
FILE_SUFFIXES = {"json", "jsonl", "md", "py", "txt", "tsv", "yaml", "yml"}  # `clir_ot.json` is a file


@pytest.mark.parametrize("page", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_python_names_in_docs_exist(page):
    prose, blocks = split_page(page)
    names: list[tuple[int, str]] = []
    for block in blocks:
        if block.lang == "python":
            for node in ast.walk(ast.parse(block.text)):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("clir_ot"):
                    names += [(block.line + node.lineno - 1, f"{node.module}.{a.name}") for a in node.names]
    for line in prose:
        for code in inline_code(line.text):
            head = code.split("(")[0]  # `clir_ot.Hit(qid, ...)` names clir_ot.Hit
            if DOTTED.fullmatch(head) and head.rsplit(".", 1)[1] not in FILE_SUFFIXES:
                names.append((line.line, head))
    problems = [f"{page.relative_to(ROOT)}:{line}: {name} does not exist"
                for line, name in names if not resolve_dotted(name)]
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------------------------------
# the README as a front door


def test_readme_is_a_front_door():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines (at most {README_MAX_LINES}): move reference and results into docs/")


def layout_paths() -> list[str]:
    """The ``clir_ot/...`` paths in the first column of the README's layout table."""
    prose, _ = split_page(README)
    section = False
    paths = []
    for line in prose:
        if line.text.startswith("## "):
            section = github_anchor(line.text[3:]) == "layout-and-the-dependency-rule"
        elif section and line.text.startswith("|"):
            first = line.text.split("|")[1]
            paths += re.findall(r"`(clir_ot/[^`]*)`", first)
    return paths


def test_readme_layout_lists_every_module():
    listed = layout_paths()
    assert listed, "README.md has no '## Layout and the dependency rule' table of clir_ot/ paths"
    actual = {f"clir_ot/{p.name}/" if p.is_dir() else f"clir_ot/{p.name}"
              for p in (ROOT / "clir_ot").iterdir()
              if (p.is_dir() and (p / "__init__.py").is_file())
              or (p.suffix == ".py" and p.name not in {"__init__.py", "__main__.py"})}
    missing = sorted(actual - set(listed))
    stale = sorted(set(listed) - actual)
    assert not missing, f"README.md's layout table does not list: {', '.join(missing)}"
    assert not stale, f"README.md's layout table lists paths that do not exist: {', '.join(stale)}"


REPORT = ROOT / "runs" / "xquad-scaling-offline" / "report.md"


def section_lines(path: Path, heading: str) -> list[str]:
    """The lines under the first heading whose text is ``heading``, up to the next heading of its level."""
    lines = path.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        match = HEADING.match(line)
        if match and match.group(2) == heading:
            level = len(match.group(1))
            body = []
            for rest in lines[i + 1:]:
                other = HEADING.match(rest)
                if other and len(other.group(1)) <= level:
                    break
                body.append(rest)
            return body
    raise AssertionError(f"{path.relative_to(ROOT)} has no heading {heading!r}")


def first_table(lines: list[str]) -> dict[str, list[str]]:
    """``{row label: [first number of each cell, or the cell]}`` of the first table in ``lines``."""
    rows: dict[str, list[str]] = {}
    started = False
    for line in lines:
        if not line.startswith("|"):
            if started:
                break
            continue
        started = True
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if set(cells[1]) <= set(":- "):
            continue
        values = [(m.group(0) if (m := re.search(r"\d+\.\d+", c)) else c) for c in cells[1:]]
        rows[cells[0]] = values
    return rows


def test_readme_headline_is_the_committed_report():
    """The front door's answer and P@5 table are the committed study report's, to the digit."""
    headline = section_lines(README, "Headline result")
    quote = " ".join(line[2:].strip() for line in headline if line.startswith("> ")).replace("−", "-")
    answer = " ".join(line.strip() for line in section_lines(REPORT, "Answer") if line.strip())
    assert quote and quote in answer.replace("−", "-"), (
        f"README.md's quoted answer is not the one in {REPORT.relative_to(ROOT)}:\n{quote}\n{answer}")
    ours = first_table(headline)
    ours.pop(next(iter(ours)))  # the header rows name the columns differently
    theirs = first_table(section_lines(REPORT, "P@5"))
    theirs.pop(next(iter(theirs)))
    assert ours and ours == theirs, f"README.md's headline P@5 table differs from {REPORT.relative_to(ROOT)}"


# ---------------------------------------------------------------------------------------------------
# the dependency rule the README states

LAYERS = {"entry": 0, "orchestration": 1, "stage": 2, "foundation": 3}
# what the README's layout section says each stage builds on; every other stage-to-stage import breaks it
STAGE_BUILDS_ON = {
    "rerank": {"models", "evaluation"},
    "training": {"models"},
    "distill": {"models", "training", "ot"},
}
# stage-to-stage imports README.md names as exceptions to its rule: none (datasets/tatoeba.py's
# BitextPair moved to formats); an entry here must be named in README.md too
KNOWN_EXCEPTIONS: set[tuple[str, str]] = set()


def layout_layers() -> dict[str, int]:
    """``{unit: layer}`` from the README's layout table (``clir_ot/ot.py`` -> ``ot``; 'stage: x' -> stage)."""
    prose, _ = split_page(README)
    section, result = False, {}
    for line in prose:
        if line.text.startswith("## "):
            section = github_anchor(line.text[3:]) == "layout-and-the-dependency-rule"
        elif section and line.text.startswith("| `clir_ot/"):
            cells = [c.strip() for c in line.text.strip().strip("|").split("|")]
            unit = cells[0].strip("`").removeprefix("clir_ot/").rstrip("/").removesuffix(".py")
            result[unit] = LAYERS[cells[1].split(":")[0].strip()]
    return result


def clir_ot_imports() -> list[tuple[str, str, str]]:
    """(importing unit, imported unit, file:line) for every clir_ot import, function-level ones too."""
    package = ROOT / "clir_ot"
    found = []
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        unit = parts[1] if len(parts) > 2 or parts[-1] not in {"__init__", "__main__"} else None
        if unit is None:
            continue
        here = list(parts if path.name == "__init__.py" else parts[:-1])
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = here[:len(here) - node.level + 1] if node.level else []
                names = [".".join(base + ([node.module] if node.module else []))]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                target = name.split(".")
                if target[0] == "clir_ot" and len(target) > 1 and target[1] != unit:
                    found.append((unit, target[1], f"{path.relative_to(ROOT)}:{node.lineno}"))
    return found


def test_the_readme_dependency_rule_holds():
    layers = layout_layers()
    assert layers, "README.md's layout table gives no layers"
    imports = clir_ot_imports()
    assert ("distill", "ot") in {(s, t) for s, t, _ in imports}, "the import scan found no distill -> ot import"
    problems = []
    for source, target, where in imports:
        if source not in layers or target not in layers:
            continue  # an unlisted module: test_readme_layout_lists_every_module names it
        if layers[target] < layers[source]:
            problems.append(f"{where}: {source} imports {target}, a layer above it")
        elif (layers[source] == layers[target] == LAYERS["stage"] and target not in STAGE_BUILDS_ON.get(source, ())
              and (where.rsplit(":", 1)[0], target) not in KNOWN_EXCEPTIONS):
            problems.append(f"{where}: stage {source} imports stage {target}, which README.md's layout "
                            f"section does not let it build on")
    assert not problems, "the dependency rule of README.md is broken:\n" + "\n".join(sorted(set(problems)))
    happening = {(where.rsplit(":", 1)[0], target) for _, target, where in imports}
    gone = sorted(KNOWN_EXCEPTIONS - happening)
    assert not gone, f"exceptions that no longer happen: remove them from KNOWN_EXCEPTIONS and README.md: {gone}"


def test_every_public_name_of_every_module_resolves():
    """Each module's ``__all__`` names only what it defines or imports (a package's ``__all__`` built
    from a submodule's must not list a name the package never imported)."""
    import importlib
    import pkgutil

    import clir_ot

    broken = []
    for info in pkgutil.walk_packages(clir_ot.__path__, "clir_ot."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        broken += [f"{info.name}.{name}" for name in getattr(module, "__all__", ()) if not hasattr(module, name)]
    assert not broken, f"__all__ names that do not resolve: {', '.join(broken)}"
