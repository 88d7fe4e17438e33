"""The cross-fitted teacher pipeline end to end on real XQuAD with a tiny model (slow: real data)."""
from __future__ import annotations

import copy
import json
import shutil

import pytest

from clir_ot.datasets.xquad import read_folds
from clir_ot.formats import load_run, read_topics, write_run
from clir_ot.models import CrossEncoderModel
from clir_ot.datasets import XQuADLayout
from clir_ot.pipelines.xquad_teacher import run_xquad_teacher
from clir_ot.retrieval import BM25Searcher, build_index
from clir_ot.training import TrainingConfig, selected_model

pytestmark = pytest.mark.slow


def test_teacher_pipeline_cross_fits_and_merges(xquad_collection, tmp_path, tiny_models):
    model, tokenizer = tiny_models["xlm-roberta"]
    base = CrossEncoderModel(copy.deepcopy(model), tokenizer).save_pretrained(tmp_path / "tiny")
    out = tmp_path / "xquad"
    shutil.copytree(xquad_collection, out / "collection")
    topics = read_topics(out / "collection" / "topics.xquad.en.tsv")
    for lang in ("en", "th"):
        build_index(out / "collection" / "corpus" / lang, tmp_path / f"idx.{lang}", lang)
        run = dict(BM25Searcher(tmp_path / f"idx.{lang}").batch_search(topics, k=20, threads=2))
        write_run(out / f"run.xquad.t.cross.en-{lang}.txt", run)
    shutil.copy(out / "run.xquad.t.cross.en-en.txt", out / "run.xquad.bm25+t.rrf.cross.en-en.txt")
    config = TrainingConfig.from_dict({"max_steps": 2, "batch_size": 2, "max_length": 32, "save_every": 1,
                                       "negatives": 3, "valid_negatives": 3, "dtype": "fp32"})
    result = run_xquad_teacher(out, config, ["en", "th"], depth=3, base=str(base), first_stage="t",
                               max_length=32, dtype="fp32")
    folds = read_folds(out / "collection" / "folds.json")
    for k in range(len(folds)):
        manifest = json.loads((XQuADLayout(out, first_stage="t").teacher(k) / "training.json").read_text())
        xquad = manifest["data"]["xquad"]
        assert xquad["test_fold"] == k and xquad["test_qids"] == len(folds[k]["qids"])
        assert xquad["leakage_check"]["train"]
    for lang in ("en", "th"):
        first = load_run(out / f"run.xquad.t.cross.en-{lang}.txt")
        merged = load_run(out / f"run.xquad.t+teacher.cross.en-{lang}.txt")
        assert set(merged) == set(first)  # every question, from its own fold's teacher
        assert all(set(merged[q]) == set(first[q]) for q in first)
    assert set(result.table) == {"en", "th"} and set(result.table["en"]) == {"first stage", "teacher"}
    assert (out / "table.teacher.md").is_file()
    assert not list(out.glob(".run.*"))  # per-fold parts merged and removed
    # the runs record how they were made; the same teachers and settings reuse them, another
    # max_length or a retrained teacher reranks
    from clir_ot.rerank.base import recorded_provenance

    merged = out / "run.xquad.t+teacher.cross.en-th.txt"
    recorded = recorded_provenance(merged)
    assert (recorded["max_length"], recorded["depth"], recorded["batch_size"], recorded["path"]) == (32, 3, 32, "torch/fp32")
    assert len(recorded["models"]) == len(folds) and len(recorded["first_stage"]) == 64
    def rewritten(**options) -> bool:  # whether the call wrote the th run again (a new file: a new inode)
        before = merged.stat().st_ino
        run_xquad_teacher(out, config, ["th"], depth=3, base=str(base), first_stage="t", dtype="fp32", **options)
        return merged.stat().st_ino != before

    assert not rewritten(max_length=32)
    assert rewritten(max_length=40) and recorded_provenance(merged)["max_length"] == 40
    # another teacher in the fold's folder (here: its config file's bytes changed) is another run
    config_file = selected_model(XQuADLayout(out, first_stage="t").teacher(0)) / "config.json"
    config_file.write_text(config_file.read_text() + "\n")
    assert rewritten(max_length=40)
    assert recorded_provenance(merged)["models"] != recorded["models"]


def test_recorded_provenance_reads_what_was_written_and_names_a_bad_line(tmp_path):
    from clir_ot.errors import InputFormatError
    from clir_ot.rerank.base import (SCORING_VERSION, record_scoring_version, recorded_provenance,
                                     recorded_scoring_version, run_provenance)

    run = tmp_path / "run.txt"
    assert recorded_provenance(run) is None and recorded_scoring_version(run) == 1
    record_scoring_version(run)  # the version alone, as runs were recorded before their provenance
    assert recorded_scoring_version(run) == SCORING_VERSION and recorded_provenance(run) is None
    made = run_provenance(models=["a", "b"], first_stage="f", max_length=256, depth=10, batch_size=32, path="torch/bf16")
    record_scoring_version(run, made)
    assert recorded_scoring_version(run) == SCORING_VERSION and recorded_provenance(run) == made
    (tmp_path / "run.txt.scoring").write_text("2\n{max_length: 256}\n")
    with pytest.raises(InputFormatError, match=r"run\.txt\.scoring:2: invalid JSON"):
        recorded_provenance(run)
    (tmp_path / "run.txt.scoring").write_text("two\n")
    with pytest.raises(InputFormatError, match=r"run\.txt\.scoring:1: expected a scoring version number"):
        recorded_scoring_version(run)


def test_the_config_files_length_and_precision_are_not_overridden_by_flag_defaults(tmp_path):
    """``--config`` settings reach training and reranking; only flags that are given override them."""
    from clir_ot.cli import build_parser
    from clir_ot.cli.xquad_teacher import training_config

    config = tmp_path / "teacher.json"
    config.write_text(json.dumps({"max_length": 512, "dtype": "fp32", "epochs": 2}), encoding="utf-8")
    parser = build_parser()
    given = training_config(parser.parse_args(["xquad-teacher", "--output", str(tmp_path), "--config", str(config)]))
    assert (given.max_length, given.dtype, given.epochs) == (512, "fp32", 2)
    flagged = training_config(parser.parse_args(["xquad-teacher", "--output", str(tmp_path), "--config", str(config),
                                                 "--max-length", "128", "--dtype", "bf16"]))
    assert (flagged.max_length, flagged.dtype, flagged.epochs) == (128, "bf16", 2)
    assert training_config(parser.parse_args(["xquad-teacher", "--output", str(tmp_path)])).max_length == 256
    with pytest.raises(SystemExit):  # fp16 is not a training precision (no loss scaling)
        parser.parse_args(["xquad-teacher", "--output", str(tmp_path), "--dtype", "fp16"])
