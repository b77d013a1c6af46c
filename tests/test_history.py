"""History of covered topics (real SQLite): a story written up on one day is not picked again
within the window; --no-history, back-fills and --force of the same day still get their own."""

from __future__ import annotations

import sqlite3
from datetime import date

import pytest

from conftest import TOPIC_TITLES, describe
from digest.errors import OutputError
from digest.feeds import Entry
from digest.history import History
from digest.site import Site
from digest.select import Covered, Story, normalise_title, pick

from test_cli import topic_titles


def story(n: int) -> Story:
    return Story(title=TOPIC_TITLES[n], id=f"t3_{n}", link=f"https://example.com/{n}")


# ---------------------------------------------------------------------------------------------
# the database


def test_covered_is_other_days_within_the_window(tmp_path):
    history = History(tmp_path / "h.sqlite3", days=7)
    history.record(date(2026, 1, 10), [story(0), story(1)])
    history.record(date(2026, 1, 3), [story(2)])
    history.record(date(2026, 1, 2), [story(3)])
    history.record(date(2026, 1, 17), [story(4)])
    covered = history.covered(date(2026, 1, 10))
    assert covered.ids == {"t3_2", "t3_4"}  # 7 days either side; 2026-01-02 is 8 days off; its own day left out
    assert story(2) in covered and story(0) not in covered
    assert history.covered(date(2026, 1, 11)).ids == {"t3_0", "t3_1", "t3_4"}
    assert not History(history.path, days=0).covered(date(2026, 1, 11))


@pytest.mark.parametrize("edge", [date.min, date.max])
def test_the_window_stops_at_the_ends_of_the_calendar(tmp_path, edge):
    history = History(tmp_path / "h.sqlite3", days=7)
    near = date.fromordinal(edge.toordinal() + (3 if edge == date.min else -3))
    history.record(near, [story(0)])
    assert history.covered(edge).ids == {"t3_0"}


def test_recording_a_day_again_replaces_its_topics(tmp_path):
    history = History(tmp_path / "h.sqlite3", days=7)
    history.record(date(2026, 1, 10), [story(0), story(1)])
    history.record(date(2026, 1, 10), [story(5)])
    assert history.covered(date(2026, 1, 11)).ids == {"t3_5"}
    rows = sqlite3.connect(history.path).execute("SELECT day, item_id, title_key, title, link FROM topics").fetchall()
    assert rows == [("2026-01-10", "t3_5", normalise_title(TOPIC_TITLES[5]), TOPIC_TITLES[5], "https://example.com/5")]


def test_a_broken_database_is_an_output_error_naming_it(tmp_path):
    path = tmp_path / "h.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(OutputError, match=rf"history database {path}: .*--no-history"):
        History(path, days=7).covered(date(2026, 1, 1))


# ---------------------------------------------------------------------------------------------
# selection stays pure: it is told what is covered


def test_pick_skips_covered_ids_and_normalised_titles():
    entries = [Entry(title=f"[R] {t}", id=f"t3_{n}") for n, t in enumerate(TOPIC_TITLES)]
    covered = Covered(ids=frozenset({"t3_0"}), titles=frozenset({normalise_title(TOPIC_TITLES[2].upper() + "!")}))
    assert [s.id for s in pick(entries, 3, covered=covered)] == ["t3_1", "t3_3", "t3_4"]
    assert [s.id for s in pick(entries, 3)] == ["t3_0", "t3_1", "t3_2"]


def test_normalise_title_ignores_tags_case_and_punctuation():
    assert normalise_title("[D] Sparse  Experts, halve pretraining-compute!") == "sparse experts halve pretraining compute"
    assert normalise_title("GPT-4.5 beats v2.0") == "gpt 4.5 beats v2.0"


# ---------------------------------------------------------------------------------------------
# through `digest run`


@pytest.fixture
def feeds(write_feeds):
    return write_feeds(TOPIC_TITLES)  # eight topics, six wanted


def run_day(run_cli, out, feeds, day: str, *extra):
    result = run_cli("run", "--engine", "fake", "--feeds-from", feeds, "--out", out, "--date", day, *extra)
    assert result.exit_code == 0, describe(result)
    return topic_titles(open(result.stdout.splitlines()[-1], encoding="utf-8").read()), result


def test_next_day_skips_yesterdays_topics(run_cli, tmp_path, feeds):
    out = tmp_path / "site"
    first, _ = run_day(run_cli, out, feeds, "2026-01-01")
    assert first == TOPIC_TITLES[:6]
    second, result = run_day(run_cli, out, feeds, "2026-01-02")
    assert second == TOPIC_TITLES[6:]
    assert "fewer than the 6 wanted" in result.stderr
    unfiltered, _ = run_day(run_cli, out, feeds, "2026-01-03", "--no-history")
    assert unfiltered == TOPIC_TITLES[:6]
    later, _ = run_day(run_cli, out, feeds, "2026-01-20")  # outside the 7-day window
    assert later == TOPIC_TITLES[:6]


def test_force_and_backfill_of_the_same_day_keep_their_own_topics(run_cli, tmp_path, feeds):
    out = tmp_path / "site"
    run_day(run_cli, out, feeds, "2026-01-01")
    again, _ = run_day(run_cli, out, feeds, "2026-01-01", "--force")
    assert again == TOPIC_TITLES[:6]
    # A back-filled day before it avoids what that later day covered.
    backfill, _ = run_day(run_cli, out, feeds, "2025-12-31")
    assert backfill == TOPIC_TITLES[6:]


def test_history_days_zero_turns_it_off(run_cli, tmp_path, feeds):
    (tmp_path / "digest.toml").write_text("[history]\ndays = 0\n")
    out = tmp_path / "site"
    run_day(run_cli, out, feeds, "2026-01-01", "--config", tmp_path / "digest.toml")
    second, _ = run_day(run_cli, out, feeds, "2026-01-02", "--config", tmp_path / "digest.toml")
    assert second == TOPIC_TITLES[:6]


def test_all_topics_covered_is_a_feed_error_that_says_why(run_cli, tmp_path, write_feeds):
    feeds = write_feeds(TOPIC_TITLES[:6])
    out = tmp_path / "site"
    run_day(run_cli, out, feeds, "2026-01-01")
    result = run_cli("run", "--engine", "fake", "--feeds-from", feeds, "--out", out, "--date", "2026-01-02")
    assert result.exit_code == 4, describe(result)
    assert "covered in the last 7 days" in result.stderr and "--no-history" in result.stderr


def test_a_failed_run_records_nothing(run_cli, tmp_path, feeds):
    out = tmp_path / "site"
    failed = run_cli("run", "--engine", "batched", "--model", tmp_path / "missing.gguf", "--feeds-from", feeds,
                     "--out", out, "--date", "2026-01-01")
    assert failed.exit_code == 5, describe(failed)
    assert not History(Site(out).history, days=7).covered(date(2026, 1, 2))
    second, _ = run_day(run_cli, out, feeds, "2026-01-02")
    assert second == TOPIC_TITLES[:6]


def test_make_run_on_three_days_writes_three_whole_posts(run_cli, tmp_path, monkeypatch):
    """`make run` (its recipe's own arguments, read from the Makefile) with RUN_ARGS="--date ..." on
    three days running, the model replaced by the fake engine: the bundled sample feeds neither read
    nor write the history, so every post has all six topics, the same every day (before, day two had
    three and day three failed: every one covered)."""
    import shlex
    from pathlib import Path

    from conftest import PROJECT_ROOT
    from digest import engine as engine_pkg
    from digest.engine.fake import FakeEngine
    from digest.feeds import read_feed_file
    from digest.resources import samples_dir

    recipe = (PROJECT_ROOT / "Makefile").read_text(encoding="utf-8").split("\nrun:", 1)[1].split("\n")[1]
    args = shlex.split(recipe.split("/bin/digest", 1)[1].replace("$(RUN_ARGS)", ""))
    assert args == ["run", "--sample-feeds", "--out", "site"], recipe
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(engine_pkg, "create_engine",
                        lambda name, model_path, **kw: FakeEngine(model_name=Path(model_path).stem))
    whole = [s.title for s in pick(read_feed_file(samples_dir(), "topics").entries, 6)]
    for day in ("2026-11-20", "2026-11-21", "2026-11-22"):
        result = run_cli(*args, "--date", day)
        assert result.exit_code == 0, describe(result)
        post = tmp_path / "site" / "content" / "posts" / f"{day}-ai-auto-summary.md"
        assert post.is_file()
        assert topic_titles(post.read_text(encoding="utf-8")) == whole
        assert "fewer than" not in result.stderr
    assert not Site(tmp_path / "site").history.exists()

