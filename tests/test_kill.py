"""A real `digest run` (real model) killed with SIGKILL mid-generation leaves no post and nothing
Hugo would read, and the next run succeeds: the operating system released the lock."""

from __future__ import annotations

import signal

import pytest

from conftest import AtATerminal, describe
from digest.errors import EXIT_LOCKED

pytestmark = pytest.mark.model
DAY = "2026-11-23"


def test_sigkill_mid_generation_leaves_no_post_and_the_next_run_writes(tmp_path, run_cli, monkeypatch):
    out, log = tmp_path / "site", tmp_path / "digest.log"
    args = ["run", "--sample-feeds", "--out", out, "--date", DAY, "--log-file", log]
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1795000000")
    # One topic (four sections): the first decode step comes soon, and 400 tokens each leave the run
    # generating long after it.
    run = AtATerminal([*args, "--topics", "1", "--max-tokens", "400"])
    try:
        # The progress bar's rate appears once the model has decoded tokens: the run is generating.
        run.wait_for("tok/s", timeout=600)
        # Mid-generation, the run holds the lock: a second run is turned away.
        second = run_cli(*args, "--engine", "fake", "--lock-wait", "0")
        assert second.exit_code == EXIT_LOCKED, describe(second)
        assert f"pid {run.pid}" in second.stderr
        run.process.send_signal(signal.SIGKILL)
        assert run.process.wait() == -signal.SIGKILL
    finally:
        run.kill()

    posts = out / "content" / "posts"
    leftovers = sorted(p.name for p in posts.iterdir()) if posts.exists() else []
    assert not [name for name in leftovers if name.endswith(".md")], leftovers
    lines = log.read_text().splitlines()
    assert any(" model ok " in l for l in lines) and not any(" generation ok " in l or " write " in l for l in lines)

    # The next run on the same output takes the lock at once and writes (what the lock guards is the
    # same whichever engine writes; the fake one keeps this test to one generation by the model).
    again = run_cli(*args, "--engine", "fake", "--lock-wait", "0")
    assert again.exit_code == 0, describe(again)
    assert again.stdout.strip().splitlines()[-1] == str(posts / f"{DAY}-ai-auto-summary.md")
    assert sorted(p.name for p in posts.iterdir()) == [f"{DAY}-ai-auto-summary.md"]
    assert log.read_text().splitlines()[-1].endswith(f"exit 0 wrote {posts / f'{DAY}-ai-auto-summary.md'}")
