"""tools/teacher_recipe_search.py: how each trial's recipe is composed (greedy on the best screen)."""
from __future__ import annotations


import pytest

from clir_ot.datasets.layout import XQuADLayout
from clir_ot.errors import ConfigError
from tools_loader import load_tool


@pytest.fixture(scope="module")
def search():
    return load_tool("teacher_recipe_search")


def _finished(recipe, mrr, screen=True):
    return {"recipe": recipe, "best_mrr": mrr, "finished": True, "screen": screen}


def test_a_trial_builds_on_the_best_finished_screen(search):
    trial = search.Trial("t", {"lr": 3e-5})
    results = {"a": _finished({"negatives": 3, "lr": 1e-4}, 0.8), "b": _finished({"negatives": 7, "lr": 1e-4}, 0.9),
               "long": _finished({"negatives": 1, "lr": 1e-4}, 0.99, screen=False)}
    recipe = search._recipe(trial, results)
    assert recipe["negatives"] == 7 and recipe["lr"] == 3e-5 and recipe["max_steps"] == search.SCREEN_STEPS


def test_a_base_recipe_is_the_base_of_every_trial(search):
    trial = search.Trial("t", {"max_length": 512})
    base = {"negatives": 7, "pooling": "mean"}
    recipe = search._recipe(trial, {}, base)
    assert recipe["negatives"] == 7 and recipe["pooling"] == "mean" and recipe["max_length"] == 512
    assert recipe["negatives_run"] == search.BASE_DATA["negatives_run"]  # not in a training config
    # a trial finished in this folder does not replace the given base (each trial is one change on it)
    assert search._recipe(trial, {"b": _finished({"negatives": 5}, 0.9)}, base)["negatives"] == 7
    with pytest.raises(SystemExit, match="--base-recipe"):
        search._recipe(trial, {})


def test_unscreened_trials_train_to_the_end(search):
    recipe = search._recipe(search.Trial("t", {"epochs": 3}, screen=False), {"b": _finished({"max_steps": 80}, 0.9)})
    assert "max_steps" not in recipe and recipe["epochs"] == 3


def test_runs_are_the_layouts(search, tmp_path):
    paths = search.Paths(tmp_path, tmp_path / "search", 0)
    layout = XQuADLayout(tmp_path)
    assert paths.run("dense", "th") == layout.first_stage_run("th")
    assert paths.run("fused") == layout.negatives_run
    assert paths.collection.topics("en") == layout.collection.topics("en")
    with pytest.raises(ConfigError, match="dense or fused"):
        paths.run("dens")
