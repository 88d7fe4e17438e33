"""Every ``clir-ot`` verb, given bad arguments, fails with one clear line, a non-zero exit and nothing written.

Two kinds of failure are checked:

* a bad argument value (zero or negative counts, missing or unreadable inputs, an output that cannot be
  written, an unknown measure) is refused by the parser before any work: exit 2 and exactly one line on
  stderr, ``clir-ot VERB: error: argument --FLAG: ...``;
* a problem found while working (a folder that is not a model, a malformed file, a non-Pyserini module)
  is one ``ERROR`` log record without a traceback, exit 2.

Either way no output file or folder is left behind. Most cases call :func:`clir_ot.cli.main` in this
process (fast); two run the installed ``clir-ot`` in a subprocess to check the real exit status and stderr.

Outputs "in a read-only folder": the tests run as root, for whom ``chmod``'ed folders stay writable, so
the unwritable outputs used here are ones that fail for root too -- a path under a regular file (the
folder cannot be created) and a path under ``/proc`` (no file can be created there).
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from clir_ot.cli import VERBS, build_parser, main
from clir_ot.cli.arguments import input_file, positive_int

# the flags the issue names; where a verb has one as a count, it must be a positive_int
COUNT_FLAGS = ("--depth", "--hits", "--batch-size", "--max-length", "--threads", "--epochs", "--folds")
UNWRITABLE = ("{blocker}/out", "/proc/clir-ot-test/out")  # fail for root as well (see the module docstring)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    """Small valid inputs, a folder that is not a model, a regular file to put outputs under."""
    root = tmp_path_factory.mktemp("inputs")
    (root / "topics.tsv").write_text("q1\twho won\nq2\twhat is transport\n", encoding="utf-8")
    (root / "qrels.txt").write_text("q1 0 d1 1\nq2 0 d2 1\n", encoding="utf-8")
    (root / "run.txt").write_text("q1 Q0 d1 1 2.0 t\nq1 Q0 d2 2 1.0 t\nq2 Q0 d2 1 3.0 t\n", encoding="utf-8")
    (root / "run2.txt").write_text("q1 Q0 d2 1 2.0 u\nq2 Q0 d1 1 1.0 u\n", encoding="utf-8")
    (root / "corpus.jsonl").write_text('{"id": "d1", "contents": "the panthers won"}\n'
                                       '{"id": "d2", "contents": "optimal transport"}\n', encoding="utf-8")
    (root / "triples.tsv").write_text("who won\tthe panthers won\toptimal transport\n", encoding="utf-8")
    (root / "bitext.tsv").write_text("".join(f"hello {i}\tγεια {i}\n" for i in range(20)), encoding="utf-8")
    (root / "study.yaml").write_text("name: x\n", encoding="utf-8")
    (root / "bad-qrels.txt").write_bytes(b"q1 0 d1 \xff\n")
    (root / "blocker").write_text("a regular file, so nothing can be created under it\n", encoding="utf-8")
    (root / "not-a-model").mkdir()
    (root / "not-a-model" / "notes.txt").write_text("no config.json, no weights\n", encoding="utf-8")
    (root / "folder").mkdir()
    return {p.stem.replace("-", "_"): str(p) for p in root.iterdir()} | {
        "missing": str(root / "missing.txt"), "dir": str(root / "folder"), "root": str(root)}


@pytest.fixture
def out(tmp_path) -> Path:
    """An empty folder for outputs; after each case it must still be empty."""
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def _fill(argv: list[str], files: dict[str, str], out: Path) -> list[str]:
    return [a.format(out=out, **files) for a in argv]


def usage_error(argv: list[str], capsys, *fragments: str) -> str:
    """Run ``argv``; assert exit 2 and one ``clir-ot VERB: error:`` line on stderr naming ``fragments``."""
    capsys.readouterr()
    code = main(argv)
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert code == 2, (argv, captured.err)
    assert len(lines) == 1, f"expected one line on stderr, got {captured.err!r}"
    assert "Traceback" not in captured.err
    verb = argv[0] if argv[0] != "models" else f"models {argv[1]}"
    assert lines[0].startswith(f"clir-ot {verb}: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert captured.out == ""
    return lines[0]


def work_error(argv: list[str], caplog, capsys, *fragments: str) -> str:
    """Run ``argv``; assert exit 2 and exactly one ERROR record, one line, no traceback, naming ``fragments``."""
    capsys.readouterr()
    caplog.clear()
    with caplog.at_level(logging.INFO):
        code = main(argv)
    captured = capsys.readouterr()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert code == 2, (argv, caplog.text)
    assert len(errors) == 1, [r.getMessage() for r in errors]
    message = errors[0].getMessage()
    assert "\n" not in message and errors[0].exc_info is None
    assert "Traceback" not in captured.err and "Traceback" not in caplog.text
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


def assert_nothing_written(out: Path) -> None:
    left = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert left == [], f"files left behind: {left}"


# --------------------------------------------------------------------------------------------------
# counts: zero and negative values of every count flag, in every verb that has one

# verb -> (a command line that parses, the count flags it has)
COUNTS = {
    "xquad": (["xquad", "--output", "{out}/collection"], ["--folds"]),
    "index": (["index", "--input", "{corpus}", "--index", "{out}/index", "--language", "en"], ["--threads"]),
    "search": (["search", "--index", "{dir}", "--topics", "{topics}", "--output", "{out}/run.txt"],
               ["--hits", "--threads", "--batch-size", "--max-length", "--ef-search"]),
    "fuse": (["fuse", "--runs", "{run}", "{run2}", "--output", "{out}/fused.txt"], ["--depth"]),
    "baseline": (["baseline", "--source", "{dir}", "--output", "{out}/xquad", "--index-root", "{out}/indexes"],
                 ["--hits", "--threads", "--batch-size"]),
    "models": (["models", "derive", "--base", "{not_a_model}", "--output", "{out}/model"], ["--layers"]),
    "encode": (["encode", "--corpus", "{corpus}", "--index", "{out}/faiss"], ["--batch-size", "--max-length", "--hnsw-m"]),
    "rerank": (["rerank", "--run", "{run}", "--topics", "{topics}", "--corpus", "{corpus}", "--output", "{out}/rr.txt"],
               ["--depth", "--batch-size", "--max-length"]),
    "train": (["train", "--out", "{out}/model", "--train", "{triples}"],
              ["--epochs", "--batch-size", "--max-length", "--depth", "--max-steps", "--negatives", "--save-every"]),
    "xquad-teacher": (["xquad-teacher", "--output", "{dir}"], ["--depth", "--epochs", "--batch-size", "--max-length"]),
    "distill": (["distill", "--teacher", "{not_a_model}", "--out", "{out}/student", "--bitext", "{bitext}"],
                ["--epochs", "--batch-size", "--max-length", "--patience", "--save-every"]),
    "study": (["study", "--config", "{study}"], ["--jobs"]),
    "interpolate": (["interpolate", "--run", "{run}", "--first-stage", "{run2}", "--output", "{out}/i.txt",
                     "--weight", "0.5"], ["--depth"]),
}
COUNT_CASES = [(verb, flag, value) for verb, (_, flags) in COUNTS.items() for flag in flags for value in ("0", "-3")]


@pytest.mark.parametrize(("verb", "flag", "value"), COUNT_CASES, ids=[f"{v}{f}={x}" for v, f, x in COUNT_CASES])
def test_zero_and_negative_counts_are_refused_by_the_parser(verb, flag, value, files, out, capsys):
    argv = _fill(COUNTS[verb][0], files, out) + [flag, value]
    usage_error(argv, capsys, f"argument {flag}", "must be a positive integer", repr(value))
    assert_nothing_written(out)


def test_a_count_that_is_not_a_number_is_refused(files, out, capsys):
    argv = _fill(COUNTS["rerank"][0], files, out) + ["--depth", "ten"]
    usage_error(argv, capsys, "argument --depth", "must be a positive integer, got 'ten'")


def _subparsers(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[prefix + name] = sub
                found.update(_subparsers(sub, prefix + name + " "))
    return found


def test_every_count_flag_of_every_verb_is_checked_at_parse_time():
    """The parser itself says which verbs have the issue's count flags: each is a positive_int (or, for the
    training verbs' --folds, a folds file that must exist), and each such count is driven above."""
    covered = {(verb, flag) for verb, (_, flags) in COUNTS.items() for flag in flags}
    seen = set()
    for verb, sub in _subparsers(build_parser()).items():
        for action in sub._actions:
            for flag in set(action.option_strings) & set(COUNT_FLAGS):
                if flag == "--folds" and action.type is input_file:
                    continue  # train / distill: the XQuAD folds.json, driven in test_missing_inputs
                assert action.type is positive_int, f"clir-ot {verb} {flag} is not checked as a positive integer"
                seen.add((verb.split()[0], flag))
    assert seen <= covered, f"count flags not driven by this test: {sorted(seen - covered)}"


# --------------------------------------------------------------------------------------------------
# inputs that are missing or unreadable, outputs that cannot be written, measures, models

MISSING = [
    ["xquad", "--source", "{missing}", "--output", "{out}/c"],
    ["index", "--input", "{missing}", "--index", "{out}/i", "--language", "en"],
    ["search", "--index", "{missing}", "--topics", "{topics}", "--output", "{out}/r.txt"],
    ["search", "--index", "{dir}", "--topics", "{missing}", "--output", "{out}/r.txt"],
    ["evaluate", "--qrels", "{missing}", "--run", "{run}"],
    ["evaluate", "--qrels", "{qrels}", "--run", "{run}", "{missing}"],
    ["fuse", "--runs", "{run}", "{missing}", "--output", "{out}/f.txt"],
    ["baseline", "--source", "{missing}", "--output", "{out}/x", "--index-root", "{out}/i"],
    ["models", "derive", "--base", "{not_a_model}", "--corpus", "{missing}", "--output", "{out}/m"],
    ["encode", "--corpus", "{missing}", "--index", "{out}/f"],
    ["rerank", "--run", "{missing}", "--topics", "{topics}", "--corpus", "{corpus}", "--output", "{out}/r.txt"],
    ["rerank", "--run", "{run}", "--topics", "{topics}", "--corpus", "{missing}", "--output", "{out}/r.txt"],
    ["rerank", "--run", "{run}", "--topics", "{topics}", "--corpus", "{corpus}", "--output", "{out}/r.txt",
     "--guard-dir", "{missing}"],
    ["train", "--out", "{out}/m", "--train", "{missing}"],
    ["train", "--out", "{out}/m", "--topics", "{topics}", "--qrels", "{qrels}", "--corpus", "{corpus}",
     "--run", "{run}", "--folds", "{missing}", "--exclude-fold", "0"],
    ["xquad-teacher", "--output", "{missing}"],
    ["distill", "--teacher", "{not_a_model}", "--out", "{out}/s", "--bitext", "{missing}"],
    ["distill", "--teacher", "{not_a_model}", "--out", "{out}/s", "--tatoeba", "{missing}", "--language", "el"],
    ["xquad-dense-students", "--output", "{dir}", "--tatoeba", "{missing}"],
    ["study", "--config", "{missing}"],
    ["interpolate", "--run", "{run}", "--first-stage", "{missing}", "--output", "{out}/i.txt", "--weight", "0.5"],
]


@pytest.mark.parametrize("argv", MISSING, ids=[" ".join(a[:2]) + f"#{i}" for i, a in enumerate(MISSING)])
def test_missing_inputs(argv, files, out, capsys):
    usage_error(_fill(argv, files, out), capsys, f"{files['missing']}: no such file or folder")
    assert_nothing_written(out)


UNREADABLE = [  # a folder where a file is read, a file where a folder is read, a path under a regular file
    (["rerank", "--run", "{run}", "--topics", "{dir}", "--corpus", "{corpus}", "--output", "{out}/r.txt"],
     "is a folder, expected a file"),
    (["evaluate", "--qrels", "{qrels}", "--run", "{dir}"], "is a folder, expected a file"),
    (["study", "--config", "{dir}"], "is a folder, expected a file"),
    (["train", "--out", "{out}/m", "--train", "{triples}", "--config", "{dir}"], "is a folder, expected a file"),
    (["search", "--index", "{topics}", "--topics", "{topics}", "--output", "{out}/r.txt"], "is a file, expected a folder"),
    (["distill", "--teacher", "{not_a_model}", "--out", "{out}/s", "--bitext", "{blocker}/bitext.tsv"],
     "is a file, not a folder"),
]


@pytest.mark.parametrize(("argv", "problem"), UNREADABLE, ids=[a[0] for a, _ in UNREADABLE])
def test_unreadable_inputs(argv, problem, files, out, capsys):
    usage_error(_fill(argv, files, out), capsys, problem)
    assert_nothing_written(out)


def test_unreadable_file_content_is_one_error_line(files, out, caplog, capsys):
    message = work_error(["evaluate", "--qrels", files["bad_qrels"], "--run", files["run"],
                          "--output", str(out / "table.tsv")], caplog, capsys, f"{files['bad_qrels']}:1: invalid UTF-8")
    assert message
    assert_nothing_written(out)


OUTPUTS = [  # every verb that writes, with its output flag; "{target}" is replaced by an unwritable path
    ["xquad", "--output", "{target}"],
    ["index", "--input", "{corpus}", "--index", "{target}", "--language", "en"],
    ["search", "--index", "{dir}", "--topics", "{topics}", "--output", "{target}"],
    ["evaluate", "--qrels", "{qrels}", "--run", "{run}", "--output", "{target}"],
    ["fuse", "--runs", "{run}", "{run2}", "--output", "{target}"],
    ["baseline", "--source", "{dir}", "--output", "{target}"],
    ["models", "prepare", "--output", "{target}"],
    ["models", "derive", "--base", "{not_a_model}", "--output", "{target}", "--layers", "1"],
    ["encode", "--corpus", "{corpus}", "--index", "{target}"],
    ["rerank", "--run", "{run}", "--topics", "{topics}", "--corpus", "{corpus}", "--output", "{target}"],
    ["train", "--out", "{target}", "--train", "{triples}"],
    ["distill", "--teacher", "{not_a_model}", "--out", "{target}", "--bitext", "{bitext}"],
    ["study", "--config", "{study}", "--output", "{target}"],
    ["interpolate", "--run", "{run}", "--first-stage", "{run2}", "--output", "{target}", "--weight", "0.5"],
]
OUTPUT_CASES = [(argv, target) for argv in OUTPUTS for target in UNWRITABLE]


@pytest.mark.parametrize(("argv", "target"), OUTPUT_CASES,
                         ids=[f"{' '.join(a[:2])}@{t.split('/')[1]}" for a, t in OUTPUT_CASES])
def test_unwritable_outputs(argv, target, files, out, capsys):
    target = target.format(**files)
    line = usage_error([a.replace("{target}", target) for a in _fill_keep_target(argv, files, out)], capsys, target)
    assert "is a file, not a folder" in line or "cannot write in /proc" in line
    assert not Path(target).exists()
    assert_nothing_written(out)
    assert not any(p.name.startswith(".clir-ot-write-probe") for p in Path(files["root"]).iterdir())


@pytest.mark.parametrize("verb", ["xquad-teacher", "xquad-dense-students"])
def test_pipeline_output_folder_must_be_writable(verb, files, capsys):
    """These verbs read the baseline's outputs from --output and write their own beside them."""
    argv = [verb, "--output", "/proc"] + (["--tatoeba", files["dir"]] if verb == "xquad-dense-students" else [])
    line = usage_error(argv, capsys, "/proc")
    assert "cannot write in /proc" in line


def _fill_keep_target(argv, files, out):
    return [a if a == "{target}" else a.format(out=out, **files) for a in argv]


def test_an_output_in_a_missing_folder_is_created_when_written(files, tmp_path, capsys):
    """A missing folder that can be created is not an error: the writer creates it (as before)."""
    target = tmp_path / "new" / "deeper" / "fused.txt"
    assert main(["fuse", "--runs", files["run"], files["run2"], "--output", str(target)]) == 0
    assert target.is_file()


@pytest.mark.parametrize("name", ["bogus", "P@0", "ndcg_cut.x"])
def test_unknown_measure(name, files, out, capsys):
    line = usage_error(["evaluate", "--qrels", files["qrels"], "--run", files["run"], "-m", name,
                        "--output", str(out / "t.tsv")], capsys, "argument -m/--measure")
    assert repr(name) in line
    assert_nothing_written(out)


MODELS = [  # a folder that is not a model where a model is expected; found when it is loaded
    ["rerank", "--run", "{run}", "--topics", "{topics}", "--corpus", "{corpus}", "--output", "{out}/r.txt",
     "--model", "{not_a_model}"],
    ["encode", "--corpus", "{corpus}", "--index", "{out}/faiss", "--encoder", "{not_a_model}"],
    ["models", "info", "{not_a_model}"],
    ["train", "--base", "{not_a_model}", "--out", "{out}/model", "--train", "{triples}"],
    ["distill", "--teacher", "{not_a_model}", "--out", "{out}/student", "--bitext", "{bitext}"],
]


@pytest.mark.parametrize("argv", MODELS, ids=[a[0] for a in MODELS])
def test_a_folder_that_is_not_a_model(argv, files, out, caplog, capsys):
    work_error(_fill(argv, files, out), caplog, capsys, f"model folder {files['not_a_model']} lacks config.json")
    assert_nothing_written(out)


RERANK = ["rerank", "--run", "{run}", "--topics", "{topics}", "--corpus", "{corpus}", "--output", "{out}/r.txt",
          "--model", "{not_a_model}"]


def test_an_unknown_backend_is_refused_by_the_parser(files, out, capsys):
    usage_error(_fill(RERANK, files, out) + ["--backend", "tensorrt"], capsys, "argument --backend",
                "invalid choice: 'tensorrt'")
    assert_nothing_written(out)


@pytest.mark.parametrize(("flags", "message"), [
    (["--backend", "onnx", "--dtype", "bf16"], "backend 'onnx' computes in fp32, not 'bf16'"),
    (["--backend", "openvino", "--dtype", "fp16"], "backend 'openvino' computes in fp32, bf16, not 'fp16'"),
    (["--backend", "openvino", "--model-type", "bi-encoder"], "--backend openvino serves the cross-encoder"),
    pytest.param(["--backend", "onnx", "--device", "cuda"], "backend 'onnx' runs on the CPU only, not on cuda",
                 marks=pytest.mark.skipif(not __import__("torch").cuda.is_available(),
                                          reason="no CUDA here: --device cuda is refused by the parser (tested below)")),
])
def test_a_backend_that_cannot_run_is_one_line_before_the_model_loads(flags, message, files, out, caplog, capsys):
    """Checked before the model folder is read (the folder here is not a model; its error would come later)."""
    work_error(_fill(RERANK, files, out) + flags, caplog, capsys, message)
    assert_nothing_written(out)


@pytest.mark.parametrize(("flags", "message"), [
    (["--backend", "onnx", "--dtype", "bf16"], "backend 'onnx' computes in fp32, not 'bf16'"),
    (["--backend", "torch-compile", "--dtype", "fp16"], "backend 'torch-compile' computes in fp32, bf16, not 'fp16'"),
])
def test_encode_backend_that_cannot_run_is_one_line_before_the_model_loads(flags, message, files, out, caplog,
                                                                           capsys):
    work_error(["encode", "--corpus", files["corpus"], "--index", str(out / "faiss"), "--encoder",
                files["not_a_model"], *flags], caplog, capsys, message)
    assert_nothing_written(out)


def test_encode_refuses_an_unknown_backend(files, out, capsys):
    usage_error(["encode", "--corpus", files["corpus"], "--index", str(out / "faiss"), "--backend", "auto"], capsys,
                "argument --backend", "invalid choice: 'auto'")


@pytest.mark.parametrize(("backend", "module"), [("openvino", "openvino"), ("onnx", "onnxruntime")])
def test_a_backend_whose_extra_is_missing_is_one_line(backend, module, files, out, caplog, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == module else real(name, *a))
    work_error(_fill(RERANK, files, out) + ["--backend", backend], caplog, capsys,
               f"backend '{backend}' needs {module}", f"pip install 'clir_ot[{backend}]'")
    assert_nothing_written(out)


def test_a_folder_that_is_not_a_lucene_index(files, out, caplog, capsys):
    """Lucene's own IndexNotFoundException (a Java exception) becomes one line too."""
    work_error(["search", "--index", files["dir"], "--language", "en", "--topics", files["topics"],
                "--output", str(out / "run.txt")], caplog, capsys, f"{files['dir']}: not a readable Lucene index")
    assert_nothing_written(out)


def test_pyserini_refuses_a_module_that_is_not_pyserinis(caplog, capsys):
    work_error(["pyserini", "os.path"], caplog, capsys, "'os.path' is not a Pyserini module")


def test_fuse_refuses_a_weight_per_run_mismatch(files, out, caplog, capsys):
    work_error(["fuse", "--runs", files["run"], files["run2"], "--output", str(out / "f.txt"), "--weights", "1"],
               caplog, capsys, "1 weights for 2 runs")
    assert_nothing_written(out)


def test_every_verb_is_driven_with_bad_arguments():
    driven = set(COUNTS) | {a[0] for a in MISSING} | {a[0] for a, _ in UNREADABLE} | {a[0] for a in OUTPUTS}
    driven |= {a[0] for a in MODELS} | {"evaluate", "pyserini"}
    assert driven == set(VERBS)


# --------------------------------------------------------------------------------------------------
# one convention for options that take several files


def test_several_files_are_given_alike_in_every_verb(files, tmp_path, capsys):
    """``--run A B`` and ``--run A --run B`` (and the ``--runs`` alias) mean the same in evaluate and fuse."""
    tables = []
    for runs in (["--run", files["run"], files["run2"]], ["--run", files["run"], "--run", files["run2"]],
                 ["--runs", files["run"], files["run2"]]):
        capsys.readouterr()
        assert main(["evaluate", "--qrels", files["qrels"], *runs, "-m", "P@1"]) == 0
        tables.append(capsys.readouterr().out)
    assert tables[0] == tables[1] == tables[2] and "run2" in tables[0]
    fused = []
    for i, runs in enumerate((["--runs", files["run"], files["run2"]], ["--run", files["run"], "--run", files["run2"]],
                              ["--run", files["run"], files["run2"]])):
        target = tmp_path / f"fused{i}.txt"
        assert main(["fuse", *runs, "--output", str(target)]) == 0
        fused.append(target.read_text(encoding="utf-8"))
    assert fused[0] == fused[1] == fused[2] and fused[0].count("\n") == 4  # q1: d1 d2, q2: d2 d1


# --------------------------------------------------------------------------------------------------
# the installed command: its real exit status and stderr


def _clir_ot(*args: str) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("clir-ot")
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "clir_ot"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run([*command, *args], capture_output=True, text=True, env=env, timeout=300)


def test_installed_command_bad_value_is_one_line_and_exit_2(files, out):
    """The new user's case of the issue: ``clir-ot rerank ... --depth 0`` was a traceback."""
    done = _clir_ot("rerank", "--run", files["run"], "--topics", files["topics"], "--corpus", files["corpus"],
                    "--output", str(out / "rr.txt"), "--depth", "0")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "clir-ot rerank: error: argument --depth: must be a positive integer, got '0' (see clir-ot rerank --help)"]
    assert done.stdout == ""
    assert_nothing_written(out)


def test_installed_command_error_while_working_is_one_line_and_exit_2(files, out):
    done = _clir_ot("evaluate", "--qrels", files["bad_qrels"], "--run", files["run"], "--output", str(out / "t.tsv"))
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].endswith(f"ERROR clir_ot: {files['bad_qrels']}:1: invalid UTF-8 (byte 0xff at column 9)")
    assert_nothing_written(out)


@pytest.mark.parametrize("verb", ["index", "encode"])
def test_an_index_folder_of_other_files_or_holding_the_corpus_is_refused_and_left_alone(verb, files, tmp_path, caplog,
                                                                                         capsys):
    """``index`` and ``encode`` replace an earlier index, never a folder of other files or the corpus itself."""
    kept = tmp_path / "notes"
    kept.mkdir()
    (kept / "notes.txt").write_text("precious\n", encoding="utf-8")
    corpus_dir = tmp_path / "corpus"
    corpus_dir.mkdir()
    (corpus_dir / "docs.jsonl").write_text(Path(files["corpus"]).read_text(encoding="utf-8"), encoding="utf-8")
    argv = {"index": ["index", "--language", "en", "--input"], "encode": ["encode", "--corpus"]}[verb]
    work_error(argv + [files["corpus"], "--index", str(kept)], caplog, capsys,
               f"refusing to replace {kept}: it is not empty and not a")
    assert (kept / "notes.txt").read_text(encoding="utf-8") == "precious\n"
    for target in (corpus_dir, tmp_path):  # the corpus folder itself, and a folder above it
        work_error(argv + [str(corpus_dir), "--index", str(target)], caplog, capsys,
                   f"{target}: it holds the input {corpus_dir}")
    assert sorted(p.name for p in corpus_dir.iterdir()) == ["docs.jsonl"]


def test_bm25_b_above_one_is_refused_by_the_parser(files, out, capsys):
    usage_error(["search", "--index", files["dir"], "--topics", files["topics"], "--output", str(out / "run.txt"),
                 "--bm25", "0.9", "5"], capsys, "argument --bm25: B must be in [0, 1], got 5")
    assert_nothing_written(out)


def test_dense_search_names_a_damaged_manifest_and_a_folder_that_is_no_index_before_the_model_loads(
        files, out, tmp_path, caplog, capsys):
    argv = ["search", "--dense", "--topics", files["topics"], "--output", str(out / "run.txt"), "--index"]
    work_error(argv + [files["dir"]], caplog, capsys, f"{files['dir']} is not a faiss index folder: no 'index' file")
    damaged = tmp_path / "faiss"
    damaged.mkdir()
    for name in ("index", "docid"):
        (damaged / name).write_bytes(b"")
    (damaged / "clir_ot.json").write_text("{\n", encoding="utf-8")
    work_error(argv + [str(damaged)], caplog, capsys, f"{damaged / 'clir_ot.json'}:2: not JSON")
    assert "loaded" not in caplog.text  # no model was read for either
    assert_nothing_written(out)


@pytest.mark.parametrize(("argv", "flags"), [
    (["evaluate", "--qrels", "{tmp}/qrels.txt", "--run", "{tmp}/run.txt", "--output", "{tmp}/qrels.txt"],
     ("--output", "--qrels")),
    (["fuse", "--run", "{tmp}/run.txt", "{tmp}/run2.txt", "--output", "{tmp}/run2.txt"], ("--output", "--runs")),
    (["interpolate", "--run", "{tmp}/run.txt", "--first-stage", "{tmp}/run2.txt", "--weight", "0.5",
      "--output", "{tmp}/run.txt"], ("--output", "--run")),
], ids=["evaluate", "fuse", "interpolate"])
def test_an_output_that_is_one_of_the_inputs_is_refused_and_the_input_kept(argv, flags, files, tmp_path, capsys):
    for name in ("qrels.txt", "run.txt", "run2.txt"):
        shutil.copy(Path(files["root"]) / name, tmp_path / name)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    output, source = flags
    usage_error([a.format(tmp=tmp_path) for a in argv], capsys, f"argument {output}:",
                f"is also the input of {source}")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_fuse_refuses_weights_that_are_all_zero(files, out, caplog, capsys):
    work_error(["fuse", "--run", files["run"], files["run2"], "--weights", "0", "0", "--output", str(out / "f.txt")],
               caplog, capsys, "are all zero")
    assert_nothing_written(out)


def test_study_refuses_jobs_with_a_scheduler(files, caplog, capsys):
    message = work_error(["study", "--config", files["study"], "--jobs", "2", "--executor", "submitit-debug"],
                         caplog, capsys, "--jobs 2 runs steps")
    assert "executor submitit-debug" in message


def test_search_names_the_flags_the_other_kind_of_search_ignores(files, out, caplog, capsys):
    """BM25's flags with --dense are named in a warning (the search itself then fails on the folder)."""
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        main(["search", "--dense", "--index", files["dir"], "--topics", files["topics"], "--output",
              str(out / "run.txt"), "--bm25", "1.2", "0.5", "--language", "th"])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("--bm25, --language: BM25 settings, not used by dense search" in w for w in warnings), warnings


@pytest.mark.parametrize(("heap", "problem"), [("banana", "is not a size such as 4g"), ("1k", "too small for Lucene")])
def test_a_bad_jvm_heap_is_refused_by_the_parser_before_any_verb_runs(heap, problem, files, capsys):
    capsys.readouterr()
    assert main(["--jvm-heap", heap, "evaluate", "--qrels", files["qrels"], "--run", files["run"]]) == 2
    err = capsys.readouterr().err
    assert err.startswith("clir-ot: error: argument --jvm-heap:") and problem in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("device, problem", [("banana", "'banana' is not a torch device"),
                                             ("cuda:7", "'cuda:7': ")])
def test_a_device_this_machine_lacks_is_refused_by_the_parser(device, problem, files, out, capsys):
    if device.startswith("cuda") and __import__("torch").cuda.device_count() > 7:
        pytest.skip("this machine has 8 or more GPUs")
    usage_error(_fill(RERANK, files, out) + ["--device", device], capsys, "argument --device", problem)
    usage_error(["encode", "--corpus", files["corpus"], "--index", str(out / "faiss"), "--device", device], capsys,
                "argument --device", problem)
    assert_nothing_written(out)


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory, tiny_models) -> Path:
    from clir_ot.models import CrossEncoderModel

    folder = tmp_path_factory.mktemp("models") / "tiny-ce"
    model, tokenizer = tiny_models["bert"]
    CrossEncoderModel(model, tokenizer).save_pretrained(folder)
    return folder


def test_cut_off_weights_are_one_error_line(tiny_cross_encoder, files, out, tmp_path, caplog, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_cross_encoder, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    work_error(["models", "info", str(broken)], caplog, capsys, "cannot load the weights", str(broken))
    work_error(_fill(RERANK, files, out) + ["--model", str(broken)], caplog, capsys, "cannot load the weights")
    head = tmp_path / "broken-head"
    shutil.copytree(tiny_cross_encoder, head)
    (head / "clir_ot_head.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{")
    work_error(_fill(RERANK, files, out) + ["--model", str(head)], caplog, capsys, "clir_ot_head.safetensors",
               "unreadable head weights")
    assert_nothing_written(out)


def test_a_max_length_without_room_for_query_and_passage_is_refused(tiny_cross_encoder, files, out, caplog, capsys):
    work_error(_fill(RERANK, files, out) + ["--model", str(tiny_cross_encoder), "--max-length", "2"], caplog, capsys,
               "max_length 2 leaves no room", "3 special tokens")
    assert_nothing_written(out)


def test_a_training_config_with_invalid_utf8_names_its_line_and_column(files, out, tmp_path, caplog, capsys):
    config = tmp_path / "config.json"
    config.write_bytes(b'{"lr": 1e-4,\n "note": "caf\xe9"}\n')
    work_error(["train", "--base", files["not_a_model"], "--out", str(out / "m"), "--triples", files["triples"],
                "--config", str(config)], caplog, capsys, f"{config}:2: invalid UTF-8 (byte 0xe9 at column 14)")
    work_error(["distill", "--teacher", files["not_a_model"], "--out", str(out / "s"), "--bitext", files["bitext"],
                "--config", str(config)], caplog, capsys, f"{config}:2: invalid UTF-8 (byte 0xe9 at column 14)")
    assert_nothing_written(out)


def test_a_run_tag_of_two_words_is_refused_by_the_parser(files, out, capsys):
    usage_error(["fuse", "--runs", files["run"], files["run2"], "--output", str(out / "f.txt"), "--run-tag", "a b"],
                capsys, "argument --run-tag", "one non-empty word, got 'a b'")
    assert_nothing_written(out)


def test_a_file_given_as_a_model_folder_is_named_a_file(files, caplog, capsys):
    work_error(["models", "info", files["run"]], caplog, capsys, f"model folder {files['run']} is a file, not a folder")


def test_fuse_warns_of_a_run_given_twice(files, out, caplog):
    with caplog.at_level(logging.WARNING):
        assert main(["fuse", "--runs", files["run"], files["run"], "--output", str(out / "f.txt")]) == 0
    assert f"run {files['run']} given more than once" in caplog.text


def test_an_empty_topics_file_or_first_stage_is_one_error_line(files, out, tmp_path, caplog, capsys):
    empty = tmp_path / "empty.tsv"
    empty.write_text("\n", encoding="utf-8")
    work_error(["search", "--index", files["dir"], "--topics", str(empty), "--output", str(out / "s.txt")],
               caplog, capsys, f"{empty}: no topics: the file is empty")
    work_error(["interpolate", "--run", files["run"], "--first-stage", str(empty), "--weight", "0.5",
                "--output", str(out / "i.txt")], caplog, capsys, "the first-stage run is empty")
    assert_nothing_written(out)


def test_derive_checks_layers_and_output_before_the_weights_load(tiny_cross_encoder, files, tmp_path, caplog, capsys):
    from transformers import AutoConfig

    layers = AutoConfig.from_pretrained(tiny_cross_encoder).num_hidden_layers
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("someone's files\n", encoding="utf-8")
    for argv, message in ((["--output", str(tmp_path / "cut"), "--layers", str(layers + 1)],
                           f"layers must be between 1 and {layers}, got {layers + 1}"),
                          (["--output", str(taken), "--layers", "1"], "already exists")):
        work_error(["models", "derive", "--base", str(tiny_cross_encoder), *argv], caplog, capsys, message)
        assert not any(r.name == "clir_ot.models.loading" and r.getMessage().startswith("loaded ") for r in caplog.records)
    assert not (tmp_path / "cut").exists() and sorted(p.name for p in taken.iterdir()) == ["notes.txt"]


def test_an_unknown_model_kind_in_clir_ot_json_is_one_error_line(tiny_cross_encoder, tmp_path, caplog, capsys):
    import json

    odd = tmp_path / "odd"
    shutil.copytree(tiny_cross_encoder, odd)
    settings = json.loads((odd / "clir_ot.json").read_text(encoding="utf-8"))
    (odd / "clir_ot.json").write_text(json.dumps({**settings, "kind": "banana"}), encoding="utf-8")
    work_error(["models", "info", str(odd)], caplog, capsys, "clir_ot.json: unknown model kind 'banana'")


def test_fuse_names_an_empty_run_and_refuses_only_empty_ones(files, out, tmp_path, caplog, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        assert main(["fuse", "--runs", files["run"], str(empty), "--output", str(out / "f.txt")]) == 0
    assert f"run {empty} is empty" in caplog.text
    work_error(["fuse", "--runs", str(empty), str(empty), "--output", str(out / "g.txt")], caplog, capsys,
               "every run is empty")
    assert not (out / "g.txt").exists()
