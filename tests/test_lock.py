"""Two runs on the same output never both write: the lock, with real processes (and SIGKILL)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from digest.errors import EXIT_LOCKED, LockedError
from digest.lock import output_lock
from digest.site import Site

DIGEST = [sys.executable, "-m", "digest.cli"]
DAY = "2026-01-02"
# Holds the lock of argv[1] for argv[2] seconds, saying so on stdout first.
HOLDER = """
import sys, time
from pathlib import Path
from digest.lock import output_lock
with output_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def holder(root: Path, seconds: float) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(root), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    return process


def fake_run(root: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([*DIGEST, "run", "--engine", "fake", "--sample-feeds", "--out", str(root), "--date", DAY, *extra],
                          capture_output=True, text=True, timeout=120)


def post(root: Path) -> Path:
    return root / "content" / "posts" / f"{DAY}-ai-auto-summary.md"


def test_second_run_exits_8_naming_the_lock_and_its_holder(tmp_path):
    process = holder(tmp_path, 60)
    try:
        start = time.monotonic()
        done = fake_run(tmp_path, "--lock-wait", "0.5")
        waited = time.monotonic() - start
        assert done.returncode == EXIT_LOCKED, done.stderr
        error = done.stderr.strip().splitlines()[-1]
        assert error.startswith("digest: error: another digest run") and "Traceback" not in done.stderr
        assert f"pid {process.pid}" in error and str(Site(tmp_path).lock) in error and "--lock-wait" in error
        assert waited >= 0.5
        assert not post(tmp_path).exists()
    finally:
        process.kill()
        process.wait()
    # SIGKILL: the operating system released the lock, and the next run writes.
    again = fake_run(tmp_path, "--lock-wait", "0")
    assert again.returncode == 0, again.stderr
    assert post(tmp_path).is_file()


def test_a_waiting_run_writes_once_the_holder_is_done(tmp_path):
    process = holder(tmp_path, 600)
    run = subprocess.Popen([*DIGEST, "run", "--engine", "fake", "--sample-feeds", "--out", str(tmp_path), "--date", DAY,
                            "--lock-wait", "300"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        said = run.stderr.readline()  # the run's first words: it is waiting
        assert f"waiting up to 300 s for another digest run (pid {process.pid}) to finish" in said, said
        assert run.poll() is None and not post(tmp_path).exists()
        process.kill()  # the holder ends: the waiting run goes on
        process.wait()
        stdout, stderr = run.communicate(timeout=120)
        assert run.returncode == 0, said + stderr
        assert stdout.strip() == str(post(tmp_path)) and post(tmp_path).is_file()
    finally:
        for proc in (process, run):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_lock_wait_comes_from_the_config(tmp_path):
    (tmp_path / "digest.toml").write_text("[output]\nlock_wait = 0.2\n")
    process = holder(tmp_path / "site", 60)
    try:
        done = fake_run(tmp_path / "site", "--config", str(tmp_path / "digest.toml"))
        assert done.returncode == EXIT_LOCKED and "waited 0.2 s" in done.stderr
    finally:
        process.kill()
        process.wait()


def test_lock_in_one_process_is_exclusive_and_released(tmp_path):
    with output_lock(tmp_path) as path:
        assert path.read_text().strip() == str(os.getpid())
        with pytest.raises(LockedError, match=f"pid {os.getpid()}"):
            with output_lock(tmp_path, wait=0.2):
                pass
    assert Site(tmp_path).lock.read_text() == ""  # no stale pid
    with output_lock(tmp_path):
        pass


def test_stale_temp_files_of_a_killed_run_are_removed(tmp_path):
    site = Site(tmp_path)
    posts = site.posts
    posts.mkdir(parents=True)
    site.manifests.mkdir(parents=True)
    stale = posts / f".{DAY}-ai-auto-summary.md.k2j4h1.part"
    stale.write_text("half a post")
    stale_manifest = site.manifests / f".{DAY}.json.x8d0q2.part"
    stale_manifest.write_text("{")
    keep = posts / "2025-12-31-ai-auto-summary.md"
    keep.write_text("an older post")
    log = tmp_path / "run.log"
    done = fake_run(tmp_path, "--log-file", str(log))
    assert done.returncode == 0, done.stderr
    assert not stale.exists() and not stale_manifest.exists() and keep.read_text() == "an older post"
    assert sorted(p.name for p in posts.iterdir()) == [keep.name, post(tmp_path).name]
    assert "lock ok" in log.read_text() and f"removed_stale_temp={stale},{stale_manifest}" in log.read_text()


def test_the_pipeline_takes_the_lock_whoever_calls_it(tmp_path):
    """Not only `digest run`: any caller of pipeline.run (replay, a script) waits for the lock."""
    from digest import pipeline
    from digest.config import Config
    from digest.engine import create_engine
    from digest.resources import samples_dir

    config = Config()
    config.output.lock_wait = 0.2
    process = holder(tmp_path, 60)
    try:
        with pytest.raises(LockedError, match=f"pid {process.pid}"):
            pipeline.run(config, lambda: create_engine("fake", config.model_path), out=tmp_path,
                         feeds_from=samples_dir())
    finally:
        process.kill()
        process.wait()
    assert not Site(tmp_path).posts.exists()

