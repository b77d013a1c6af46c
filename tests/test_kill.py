"""A real `digest run` (real model) killed with SIGKILL mid-generation leaves no post and nothing
Hugo would read, and the next run succeeds: the operating system released the lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest


pytestmark = pytest.mark.model
DIGEST = [sys.executable, "-m", "digest.cli"]
DAY = "2026-11-23"


def test_sigkill_mid_generation_leaves_no_post_and_the_next_run_writes(tmp_path):
    out, log = tmp_path / "site", tmp_path / "digest.log"
    args = [*DIGEST, "run", "--sample-feeds", "--out", str(out), "--date", DAY, "--log-file", str(log)]
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1795000000"}
    run = subprocess.Popen([*args, "--max-tokens", "400"], stderr=subprocess.PIPE, text=True, env=env)
    try:
        for line in run.stderr:
            if line.startswith("generating"):
                break
        else:
            pytest.fail(f"the run ended before generating (exit {run.wait()})")
        time.sleep(1.0)
        assert run.poll() is None, "the run finished before it could be killed"
        # Mid-generation, the run holds the lock: a second run is turned away.
        second = subprocess.run([*args, "--engine", "fake", "--lock-wait", "0"], capture_output=True, text=True, env=env)
        assert second.returncode == 8, second.stderr
        assert f"pid {run.pid}" in second.stderr
        os.kill(run.pid, signal.SIGKILL)
        assert run.wait() == -signal.SIGKILL
    finally:
        run.kill()
        run.wait()

    posts = out / "content" / "posts"
    leftovers = sorted(p.name for p in posts.iterdir()) if posts.exists() else []
    assert not [name for name in leftovers if name.endswith(".md")], leftovers
    lines = log.read_text().splitlines()
    assert any(" model ok " in l for l in lines) and not any(" generation ok " in l or " write " in l for l in lines)

    no_retries = tmp_path / "digest.toml"  # the writing's retries are not what this test is about
    no_retries.write_text("[generation]\nretries = 0\n", encoding="utf-8")
    again = subprocess.run([*args, "--config", str(no_retries), "--max-tokens", "64", "--lock-wait", "0"],
                           capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().splitlines()[-1] == str(posts / f"{DAY}-ai-auto-summary.md")
    assert sorted(p.name for p in posts.iterdir()) == [f"{DAY}-ai-auto-summary.md"]
    assert log.read_text().splitlines()[-1].endswith(f"exit 0 wrote {posts / f'{DAY}-ai-auto-summary.md'}")
