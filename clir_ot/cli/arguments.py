"""Argument types and conventions shared by every ``clir-ot`` verb.

A bad value is rejected where it is parsed, before any work starts: each function here is an
``argparse`` ``type=`` that returns the parsed value or raises :class:`argparse.ArgumentTypeError`,
which :class:`ArgumentParser` turns into one line on stderr (``clir-ot rerank: error: argument
--depth: must be a positive integer, got '0'``) and exit status 2.

* numbers: :func:`positive_int`, :func:`nonnegative_int`, :func:`positive_float`,
  :func:`nonnegative_float`, :func:`fraction`, :func:`probability`, :func:`unit_interval`;
* paths read: :func:`input_file`, :func:`input_dir`, :func:`input_path` (file or folder);
* paths written: :func:`output_file`, :func:`output_dir` -- the path may not exist yet (its missing
  folders are created when it is written, as before), but the nearest existing folder above it must be a
  folder this process can create files in, checked by creating and removing a probe file there (a
  permission check alone would pass for root on a read-only place such as ``/proc``);
* measures: :func:`measure` (any spelling :func:`clir_ot.evaluation.parse_measures` accepts);
* several files: :func:`add_files_argument`, the one convention for options that take several files:
  ``--run A B`` and ``--run A --run B`` mean the same, in every verb.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, NoReturn, Sequence

from clir_ot.datasets.xquad import xquad_language
from clir_ot.errors import ClirOtError, ConfigError
from clir_ot.evaluation import parse_measures
from clir_ot.java import check_heap

__all__ = [
    "ArgumentParser",
    "add_files_argument",
    "fraction",
    "input_dir",
    "input_file",
    "input_path",
    "jvm_heap",
    "measure",
    "nonnegative_float",
    "nonnegative_int",
    "output_dir",
    "output_file",
    "positive_float",
    "positive_int",
    "probability",
    "unit_interval",
    "xquad_language_code",
    "xquad_source",
]


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose usage errors are one line on stderr, not the usage block.

    The line names the verb, the problem and where help is (``--help``); the exit status stays
    argparse's 2. Sub-parsers created through ``add_subparsers`` are of this class too. After parsing,
    no :func:`output_file` may name a file that one of the same command's input options reads
    (``evaluate --qrels q.txt --output q.txt`` would replace the qrels with the results).
    """

    def error(self, message: str) -> NoReturn:
        message = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        self._check_outputs_are_not_inputs(namespace)
        return namespace, extras

    def _check_outputs_are_not_inputs(self, namespace: argparse.Namespace) -> None:
        inputs: dict[Path, str] = {}
        for action in self._actions:
            if action.type in (input_file, input_path):
                for value in _values(getattr(namespace, action.dest, None)):
                    inputs.setdefault(Path(value).expanduser().resolve(), _name(action))
        for action in self._actions:
            if action.type is output_file:
                for value in _values(getattr(namespace, action.dest, None)):
                    source = inputs.get(Path(value).expanduser().resolve())
                    if source is not None:
                        self.error(f"argument {_name(action)}: {value} is also the input of {source}; "
                                   "writing it would destroy that input")


def _name(action: argparse.Action) -> str:
    """How the usage line names an argument: its first flag, or a positional's name."""
    return action.option_strings[0] if action.option_strings else action.dest


def _values(value: Any) -> list[str]:
    """An option's parsed value as a list of paths (none, one, or an option's several files)."""
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]


# --------------------------------------------------------------------------------------------------
# numbers


def _number(text: str, kind: type, what: str) -> Any:
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if kind is float and value != value:  # NaN
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer of at least 1 (``--hits``, ``--depth``, ``--batch-size``, ``--threads`` ...)."""
    value = _number(text, int, "a positive integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def nonnegative_int(text: str) -> int:
    """An integer of at least 0 (a fold number, a count that may be zero)."""
    value = _number(text, int, "a non-negative integer")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number above 0 (a learning rate, a regularisation strength)."""
    value = _number(text, float, "a positive number")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def nonnegative_float(text: str) -> float:
    """A finite number of at least 0 (a loss weight, BM25's k1, RRF's k)."""
    value = _number(text, float, "a non-negative number")
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a non-negative number, got {text!r}")
    return value


def fraction(text: str) -> float:
    """A number strictly between 0 and 1 (a held-out share)."""
    value = _number(text, float, "a number between 0 and 1")
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1 (exclusive), got {text!r}")
    return value


def probability(text: str) -> float:
    """A number in [0, 1) (a dropout probability)."""
    value = _number(text, float, "a number in [0, 1)")
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), got {text!r}")
    return value


def unit_interval(text: str) -> float:
    """A number in [0, 1], both ends included (an interpolation weight)."""
    value = _number(text, float, "a number in [0, 1]")
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text!r}")
    return value


def jvm_heap(text: str) -> str:
    """A JVM ``-Xmx`` size such as ``8g`` or ``512m``, at least 32m (:func:`clir_ot.java.check_heap`)."""
    try:
        return check_heap(text)
    except ClirOtError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def torch_device(text: str) -> str:
    """A torch device this machine has: ``cpu``, ``cuda``, ``cuda:N`` (N below the GPU count), ``mps``...;
    returned as given."""
    import torch

    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a torch device (e.g. cpu, cuda, cuda:1)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{text!r}: CUDA is not available on this machine (torch "
                                             f"{torch.__version__}, {'no CUDA build' if torch.version.cuda is None else 'no GPU found'})")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f"{text!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise argparse.ArgumentTypeError(f"{text!r}: MPS is not available on this machine")
    return text


def run_tag(text: str) -> str:
    """A TREC run tag: one non-empty word (the run file's last column)."""
    if not text or any(c.isspace() for c in text):
        raise argparse.ArgumentTypeError(f"a run tag is one non-empty word, got {text!r}")
    return text


def xquad_language_code(text: str) -> str:
    """An XQuAD language by any of its codes (``th``, ``tha``, ``TH``, ``zh-Hans``), as XQuAD's code."""
    try:
        return xquad_language(text)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


# --------------------------------------------------------------------------------------------------
# paths


def _existing(text: str) -> Path:
    if not text:
        raise argparse.ArgumentTypeError("must be a path, got an empty string")
    path = Path(text).expanduser()
    if not path.exists():
        parent = _nearest_existing(path)
        if parent is not None and not parent.is_dir():
            raise argparse.ArgumentTypeError(f"{text}: no such file ({parent} is a file, not a folder)")
        raise argparse.ArgumentTypeError(f"{text}: no such file or folder")
    if not os.access(path, os.R_OK):
        raise argparse.ArgumentTypeError(f"{text}: not readable (permission denied)")
    return path


def input_file(text: str) -> str:
    """An existing, readable regular file (``.gz`` or not); returned as given."""
    path = _existing(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: is a folder, expected a file")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text}: not a regular file")
    return text


def input_dir(text: str) -> str:
    """An existing, readable folder; returned as given."""
    path = _existing(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: is a file, expected a folder")
    return text


def working_dir(text: str) -> str:
    """An existing, readable folder that the command also writes into (a pipeline's output folder)."""
    input_dir(text)
    _check_writable_under(text, Path(text).expanduser() / "x")
    return text


def input_path(text: str) -> str:
    """An existing, readable file or folder (a JSONL corpus may be either); returned as given."""
    _existing(text)
    return text


def xquad_source(text: str) -> str:
    """``download`` (fetch XQuAD's files) or an existing folder with them; returned as given."""
    return text if text == "download" else input_dir(text)


def _nearest_existing(path: Path) -> Path | None:
    """``path`` or the closest folder above it that exists (``None`` only for a path on no file system)."""
    path = path.absolute()
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return None


def _check_writable_under(text: str, path: Path) -> None:
    """Raise unless the missing folders of ``path`` can be created and a file written there."""
    anchor = _nearest_existing(path.parent) if path.parent != path else None
    if anchor is None:
        raise argparse.ArgumentTypeError(f"{text}: no folder above it exists")
    if not anchor.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: cannot be created, {anchor} is a file, not a folder")
    try:  # os.access says yes to root everywhere; creating a file is the real test
        fd, probe = tempfile.mkstemp(prefix=".clir-ot-write-probe.", dir=anchor)
    except OSError as err:
        raise argparse.ArgumentTypeError(f"{text}: cannot write in {anchor} ({err.strerror})") from None
    os.close(fd)
    os.unlink(probe)


def output_file(text: str) -> str:
    """A file to write: not an existing folder, in a folder that exists or can be created, writable."""
    if not text:
        raise argparse.ArgumentTypeError("must be a path, got an empty string")
    path = Path(text).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: is a folder, expected a file name")
    _check_writable_under(text, path)
    return text


def output_dir(text: str) -> str:
    """A folder to write into (existing or not): not an existing file, creatable, writable."""
    if not text:
        raise argparse.ArgumentTypeError("must be a path, got an empty string")
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: is a file, expected a folder")
    _check_writable_under(text, path / "x")
    return text


# --------------------------------------------------------------------------------------------------
# measures and several files


def measure(text: str) -> str:
    """A trec_eval / pytrec_eval / ir_measures measure name (``P@5``, ``ndcg_cut.10``, ``P.5,10``)."""
    try:
        parse_measures([text])
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def add_files_argument(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    *flags: str,
    dest: str,
    help: str,
    required: bool = False,
    type: Any = input_file,
    metavar: str = "FILE",
) -> argparse.Action:
    """Add an option that takes several files: ``--run A B`` and ``--run A --run B`` are the same.

    Every flag in ``flags`` (e.g. ``--run`` and its alias ``--runs``) collects into one list ``dest``,
    in the order given on the command line.
    """
    return parser.add_argument(*flags, dest=dest, nargs="+", action="extend", required=required, type=type,
                               metavar=metavar, default=None, help=help)


def one_line(message: object) -> str:
    """``message`` as one line: its lines joined by ``; `` (an error shown by the CLI is one line)."""
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    return "; ".join(lines)


def write_error(prog: str, message: object, stream: Any = None) -> None:
    """Write ``prog: error: message`` as one line to ``stream`` (default: stderr)."""
    (stream or sys.stderr).write(f"{prog}: error: {one_line(message)}\n")


def parse_or_exit_code(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace | int:
    """``parser.parse_args(argv)``, or the exit status when argparse stops (``--help``: 0, an error: 2)."""
    try:
        return parser.parse_args(argv)
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 2)
