"""`digest eval` as a user runs it: the default inputs, the JSON report and the tables (fake engine;
the real model's figures are in the README)."""

from __future__ import annotations

import json

from conftest import PROJECT_ROOT, describe
from digest import evaluate
from digest.errors import EXIT_FEED

TUNE = sorted((PROJECT_ROOT / "tests" / "eval" / "tune").glob("*.xml"))
HOLDOUT = sorted((PROJECT_ROOT / "tests" / "eval" / "holdout").glob("*.xml"))
SAMPLE = PROJECT_ROOT / "digest" / "samples" / "topics.xml"


def test_the_eval_sets_have_30_topics_each_with_entry_text():
    from digest import feeds
    from digest.select import pick

    for files in (TUNE, HOLDOUT):
        stories = [s for path in files for s in pick(feeds.read_feed_file(path.parent, path.stem).entries, 100)]
        assert len(stories) >= 30
        assert all(len(s.excerpt.split()) >= 30 for s in stories)  # text the paragraphs can draw on
    titles = lambda files: {s.title for p in files for s in pick(feeds.read_feed_file(p.parent, p.stem).entries, 100)}  # noqa: E731
    assert not titles(TUNE) & titles(HOLDOUT)


def test_eval_json_scores_every_section_of_the_default_inputs(run_cli):
    result = run_cli("eval", "--engine", "fake", "--topics", 1, "--json")
    assert result.exit_code == 0, describe(result)
    report = json.loads(result.stdout)
    assert report["inputs"] == [str(p) for p in [SAMPLE, *TUNE, *HOLDOUT]]
    assert len(TUNE) >= 5 and len(HOLDOUT) >= 5
    # A fake run says so, and records no model file.
    assert report["engine"]["name"] == "fake" and "not a model" in report["engine"]["note"]
    assert report["model_file"] == {}
    assert set(report["prompts"]["sha256"]) == {"system", "benefits", "ramifications", "predictions", "examples"}
    assert report["prompts"]["examples_used"] and report["settings"]["examples"] is True
    assert report["settings"]["seed"] == 42 and report["settings"]["day"] == "2026-11-23"
    # Per input: one topic's Benefits and Ramifications, and the two predictions.
    assert report["sections"] == len(report["results"]) == 4 * len(report["inputs"])
    assert report["passed"] == sum(r["passed"] for r in report["results"])
    assert report["pass_rate"] == round(report["passed"] / report["sections"], 4)
    for name, totals in report["checks"].items():
        applied = [r for r in report["results"] if name in r["checks"]]
        assert totals["applied"] == len(applied) > 0
        assert totals["passed"] == sum(r["checks"][name] for r in applied)
    for r in report["results"]:
        assert r["passed"] == all(r["checks"].values()) == (not r["failures"])
        assert r["first_passed"] == all(r["first_checks"].values()) == (not r["first_failures"])
        assert r["set"] == ("holdout" if r["key"].startswith("holdout/") else "tune")
        if r["tries"] == 1:  # no retry: the first try is the final text
            assert r["first_checks"] == r["checks"]
    # First try and final, overall, per check and per set
    assert report["final"]["passed"] == report["passed"]
    assert report["first_try"]["passed"] == sum(r["first_passed"] for r in report["results"])
    assert report["first_try"]["passed"] <= report["final"]["passed"]
    for name, totals in report["checks"].items():
        assert totals["first_try"] == sum(r["first_checks"].get(name, False) for r in report["results"])
    assert set(report["sets"]) == {"tune", "holdout"}
    assert sum(s["sections"] for s in report["sets"].values()) == report["sections"]
    assert report["sets"]["holdout"]["sections"] == 4 * len(HOLDOUT)
    # The fake writes loops and near-copies: the checks must catch some, not wave everything through.
    assert 0 < report["passed"] < report["sections"]


def test_eval_of_one_set(run_cli):
    result = run_cli("eval", "--engine", "fake", "--topics", 1, "--json", "--set", "holdout", "--no-examples")
    assert result.exit_code == 0, describe(result)
    report = json.loads(result.stdout)
    assert report["inputs"] == [str(p) for p in HOLDOUT] and list(report["sets"]) == ["holdout"]
    assert report["settings"]["examples"] is False and not report["prompts"]["examples_used"]
    bad = run_cli("eval", "--engine", "fake", "--set", "everything")
    assert bad.exit_code == 2 and "--set" in bad.stderr


def test_eval_tables_name_every_check_and_show_the_worst_sections(run_cli):
    result = run_cli("eval", "--engine", "fake", "--topics", 1, "--worst", 2)
    assert result.exit_code == 0, describe(result)
    out = result.stdout
    for check in ("length", "on_topic", "no_loops", "complete", "clean", "faithful", "no_title_echo",
                  "on_the_point", "distinct", "date", "reasoning"):
        assert check in out
    n = 4 * (1 + len(TUNE) + len(HOLDOUT))
    assert f"pass every check: " in out and f" of {n} sections (" in out
    assert f"tune: pass every check: first try " in out and "holdout: pass every check: first try " in out
    assert "FAKE ENGINE" in out
    assert out.count(": fails ") == 2


def test_eval_without_its_evaluation_set_says_so(run_cli, monkeypatch, tmp_path):
    monkeypatch.setattr(evaluate, "EVAL_SET", tmp_path / "missing")
    result = run_cli("eval", "--engine", "fake", "--topics", 1, "--json")
    assert result.exit_code == 0, describe(result)
    assert "evaluation set" in result.stderr and "sample feed only" in result.stderr
    assert json.loads(result.stdout)["sections"] == 4


def test_eval_of_a_missing_input_is_one_clear_error(run_cli, tmp_path):
    result = run_cli("eval", "--engine", "fake", tmp_path / "nope.xml")
    assert result.exit_code == EXIT_FEED and "Traceback" not in result.stdout + result.stderr
    assert str(tmp_path / "nope.xml") in result.stderr
