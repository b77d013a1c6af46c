"""`digest eval` as a user runs it: the default inputs, the JSON report and the tables (fake engine;
the real model's figures are in the README)."""

from __future__ import annotations

import json

from conftest import PROJECT_ROOT, describe
from digest import evaluate
from digest.errors import EXIT_FEED

EVAL_FILES = sorted((PROJECT_ROOT / "tests" / "eval").glob("*.xml"))


def test_eval_json_scores_every_section_of_the_default_inputs(run_cli):
    result = run_cli("eval", "--engine", "fake", "--topics", 1, "--json")
    assert result.exit_code == 0, describe(result)
    report = json.loads(result.stdout)
    assert report["inputs"] == [str(p) for p in [PROJECT_ROOT / "digest" / "samples" / "topics.xml", *EVAL_FILES]]
    assert len(EVAL_FILES) >= 5
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
    # The fake writes loops and near-copies: the checks must catch some, not wave everything through.
    assert 0 < report["passed"] < report["sections"]


def test_eval_tables_name_every_check_and_show_the_worst_sections(run_cli):
    result = run_cli("eval", "--engine", "fake", "--topics", 1, "--worst", 2)
    assert result.exit_code == 0, describe(result)
    out = result.stdout
    for check in ("length", "on_topic", "no_loops", "complete", "clean", "distinct", "date", "reasoning"):
        assert check in out
    assert "pass every check: " in out and " of 24 sections (" in out
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
