"""The shared plumbing (clir_ot.io, clir_ot.settings) and the dependency rule of the package."""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clir_ot.errors import ConfigError
from clir_ot.io import (
    atomic_dir,
    atomic_open,
    check_replaceable,
    data_suffix,
    is_jsonl,
    is_tsv,
    remove_tree,
    sha256_of,
    sha256_text,
    sweep_leftovers,
    work_prefix,
)
from clir_ot.settings import (
    DERIVED_SEED_STREAM,
    check_choice,
    check_known_keys,
    derived_rng,
    settings_from_dict,
)

ROOT = Path(__file__).resolve().parents[1]


def _visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# --------------------------------------------------------------------------------------------------
# format by suffix


@pytest.mark.parametrize("name, suffix, jsonl, tsv", [
    ("topics.th.tsv", ".tsv", False, True),
    ("topics.th.tsv.gz", ".tsv", False, True),
    ("triples.txt", ".txt", False, True),
    ("corpus/docs.jsonl.gz", ".jsonl", True, False),
    ("groups.json", ".json", True, False),
    ("README", "", False, False),
    ("archive.gz", "", False, False),
    ("run.xquad.bm25.cross.en-th.txt", ".txt", False, True),
])
def test_the_format_a_name_announces_looks_through_gz(name, suffix, jsonl, tsv):
    assert data_suffix(name) == suffix
    assert is_jsonl(name) is jsonl and is_tsv(Path(name)) is tsv


# --------------------------------------------------------------------------------------------------
# hashing


def test_sha256_of_a_file_and_of_a_folder_in_name_order(tmp_path):
    (tmp_path / "b").write_bytes(b"second")
    (tmp_path / "a").write_bytes(b"first")
    assert sha256_of(tmp_path / "a") == hashlib.sha256(b"first").hexdigest()
    assert sha256_of(tmp_path) == hashlib.sha256(b"firstsecond").hexdigest()
    assert sha256_text("qid\tdocid") == hashlib.sha256("qid\tdocid".encode()).hexdigest()


# --------------------------------------------------------------------------------------------------
# atomic files


def test_atomic_open_replaces_the_target_only_on_success(tmp_path):
    target = tmp_path / "out" / "run.txt"
    with atomic_open(target) as handle:
        handle.write("old\n")
    with pytest.raises(RuntimeError, match="half-way"):
        with atomic_open(target) as handle:
            handle.write("new, never complete\n")
            assert target.read_text() == "old\n"  # the target is untouched while writing
            raise RuntimeError("half-way")
    assert target.read_text() == "old\n"
    assert _hidden(target.parent) == []  # the temporary file is removed
    assert (target.stat().st_mode & 0o777) == 0o644


def test_atomic_open_compresses_gz_targets_and_writes_bytes(tmp_path):
    with atomic_open(tmp_path / "topics.tsv.gz") as handle:
        handle.write("q1\tWho wrote Faust?\n")
    assert gzip.decompress((tmp_path / "topics.tsv.gz").read_bytes()) == "q1\tWho wrote Faust?\n".encode()
    with atomic_open(tmp_path / "vectors.npy", "wb") as handle:
        np.save(handle, np.arange(3, dtype=np.float32))
    assert np.load(tmp_path / "vectors.npy").tolist() == [0.0, 1.0, 2.0]


# --------------------------------------------------------------------------------------------------
# atomic folders


def test_atomic_dir_swaps_in_a_complete_folder_and_leaves_a_failed_one_invisible(tmp_path):
    target = tmp_path / "index"
    with atomic_dir(target) as building:
        assert building.parent == tmp_path and building.name.startswith(".index.")
        (building / "docid").write_text("d1\n")
    assert _visible(target) == ["docid"]

    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(target) as building:
            (building / "docid").write_text("half\n")
            raise KeyboardInterrupt
    assert (target / "docid").read_text() == "d1\n" and _hidden(tmp_path) == []

    with atomic_dir(target, durable=True) as building:
        (building / "manifest.json").write_text("{}")
    assert _visible(target) == ["manifest.json"]  # the old folder is replaced as a whole
    assert _hidden(tmp_path) == [] and _visible(tmp_path) == ["index"]


def test_atomic_dir_shares_the_result_unless_told_not_to(tmp_path):
    for shared, mode in ((True, 0o644), (False, 0o600)):
        target = tmp_path / f"model-{shared}"
        with atomic_dir(target, shared=shared) as building:
            (building / "weights").write_bytes(b"x")
            (building / "weights").chmod(0o600)
        assert (target / "weights").stat().st_mode & 0o777 == mode
        assert target.stat().st_mode & 0o777 == 0o755


def test_remove_tree_never_leaves_a_half_deleted_visible_folder(tmp_path):
    (tmp_path / "step-000010" / "model").mkdir(parents=True)
    (tmp_path / "step-000010" / "model" / "weights").write_bytes(b"x")
    remove_tree(tmp_path / "step-000010")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------------
# settings


@dataclasses.dataclass(frozen=True)
class _Settings:
    lr: float = 1e-4
    epochs: int = 1
    name: str | None = None
    fused: bool = True


def test_settings_from_dict_builds_and_names_the_unknown_and_the_mistyped(tmp_path):
    assert settings_from_dict(_Settings, {"lr": 2, "epochs": 3}, "cfg.json") == _Settings(lr=2, epochs=3)
    with pytest.raises(ConfigError, match=r"^cfg.json: unknown setting\(s\) epoch, learning_rate; "
                                          r"known: epochs, fused, lr, name$"):
        settings_from_dict(_Settings, {"epoch": 2, "learning_rate": 1.0}, "cfg.json")
    with pytest.raises(ConfigError, match=r"^cfg.json: setting lr must be a number, got '1e-4' \(str\) "
                                          r"\(YAML reads a number such as 1e-4 without a decimal point as text"):
        settings_from_dict(_Settings, {"lr": "1e-4"}, "cfg.json")
    with pytest.raises(ConfigError, match="setting epochs must be an integer, got True"):
        settings_from_dict(_Settings, {"epochs": True}, "cfg.json")
    with pytest.raises(ConfigError, match="setting name must be a string or null, got 3"):
        settings_from_dict(_Settings, {"name": 3}, "cfg.json")


def test_check_known_keys_keeps_a_given_order_and_rejects_a_non_mapping():
    with pytest.raises(ConfigError, match=r"^study.yaml: unknown key\(s\) z; known: name, baseline$"):
        check_known_keys({"name": "x", "z": 1}, ("name", "baseline"), "study.yaml", what="key")
    with pytest.raises(ConfigError, match="study.yaml: expected a mapping, found list"):
        check_known_keys([1, 2], ("name",), "study.yaml")
    check_known_keys({"name": "x"}, ("name", "baseline"), "study.yaml")


def test_check_choice_names_the_valid_values():
    check_choice("method", "log", ("auto", "log", "scaling"))
    with pytest.raises(ConfigError, match=r"^method must be one of \('auto', 'log'\); got 'fast'$"):
        check_choice("method", "fast", ("auto", "log"))


def test_the_derived_seed_stream_is_pinned():
    # every validation split and query draw depends on it: changing it changes every trained model
    assert DERIVED_SEED_STREAM == 7919
    assert derived_rng(42).permutation(10).tolist() == np.random.default_rng([42, 7919]).permutation(10).tolist()
    assert derived_rng(42).permutation(10).tolist() != np.random.default_rng(42).permutation(10).tolist()


# --------------------------------------------------------------------------------------------------
# the dependency rule


def test_no_import_cycles_and_nothing_imports_upward():
    checker = ROOT.parent / "shared" / "tools" / "import_graph.py"
    if not checker.is_file():
        pytest.skip(f"the import-graph checker is not at {checker}")
    result = subprocess.run([sys.executable, str(checker), str(ROOT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 cycles, 0 upward edges" in result.stdout


# --------------------------------------------------------------------------------------------------
# leftovers of killed writers


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_the_next_writer_removes_what_a_killed_writer_left_and_nothing_else(tmp_path):
    """A SIGKILLed writer's hidden work entries (its pid is gone) are removed by the next write of the
    same name; a live writer's, another host's and another name's entries stay."""
    target = tmp_path / "run.txt"
    ours = work_prefix(target)
    host = ours.rsplit("-", 1)[1].rstrip(".")
    dead = _dead_pid()
    killed_file = tmp_path / f".run.txt.{dead}-{host}.abc123.tmp"
    killed_file.write_text("half")
    killed_dir = tmp_path / f".run.txt.{dead}-{host}.xyz.building.tmp"
    (killed_dir / "index").mkdir(parents=True)
    killed_delete = tmp_path / f".run.txt.{dead}-{host}.deleting"
    killed_delete.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = tmp_path / f".run.txt.{sleeper.pid}-{host}.live.tmp"
        live.write_text("writing")
        other_host = tmp_path / f".run.txt.{dead}-00000000.x.tmp"
        other_host.write_text("theirs")
        other_name = tmp_path / f".run.txt.gz.{dead}-{host}.x.tmp"
        other_name.write_text("another file's")
        with atomic_open(target) as out:
            out.write("done\n")
        left = set(_hidden(tmp_path))
        assert {killed_file.name, killed_dir.name, killed_delete.name}.isdisjoint(left)
        assert {live.name, other_host.name, other_name.name} <= left
        assert target.read_text() == "done\n"
    finally:
        sleeper.kill()
        sleeper.wait()
    # the live writer has now gone too: the next atomic folder of the name sweeps it
    assert sweep_leftovers(target) == [live]


def test_atomic_dir_names_its_work_folder_by_process_and_sweeps_leftovers(tmp_path):
    target = tmp_path / "index"
    host = work_prefix(target).rsplit("-", 1)[1].rstrip(".")
    leftover = tmp_path / f".index.{_dead_pid()}-{host}.q.tmp"
    leftover.mkdir()
    with atomic_dir(target) as building:
        assert building.name.startswith(work_prefix(target))
        assert not leftover.exists()
    assert _hidden(tmp_path) == []


def test_check_replaceable_allows_missing_empty_and_same_kind_folders_only(tmp_path):
    def is_kind(folder):
        return (folder / "marker").is_file()

    check_replaceable(tmp_path / "missing", kind="thing", is_kind=is_kind)
    (tmp_path / "empty").mkdir()
    check_replaceable(tmp_path / "empty", kind="thing", is_kind=is_kind)
    (tmp_path / "earlier").mkdir()
    (tmp_path / "earlier" / "marker").write_text("", encoding="utf-8")
    check_replaceable(tmp_path / "earlier", kind="thing", is_kind=is_kind)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match="not empty and not a thing"):
        check_replaceable(tmp_path / "other", kind="thing", is_kind=is_kind)
    (tmp_path / "file").write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match="exists and is not a folder"):
        check_replaceable(tmp_path / "file", kind="thing", is_kind=is_kind)
    source = tmp_path / "earlier" / "marker"
    for target in (tmp_path / "earlier", tmp_path):
        with pytest.raises(ConfigError, match="it holds the input"):
            check_replaceable(target, kind="thing", is_kind=is_kind, inputs=[source])
    check_replaceable(tmp_path / "empty", kind="thing", is_kind=is_kind, inputs=[source])
