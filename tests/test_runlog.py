"""`digest run --log-file`: one line per stage with timings, and the exit code, also for failures."""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import describe

LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ digest\[(\d+)\] (.*)$")
STAGE = re.compile(r"^(\w+) (ok|failed) (\d+\.\d)s(.*)$")
DAY = "2026-01-02"


def entries(log) -> list[tuple[int, str]]:
    lines = log.read_text(encoding="utf-8").splitlines()
    matches = [LINE.match(line) for line in lines]
    assert all(matches), lines
    return [(int(m.group(1)), m.group(2)) for m in matches]


def test_a_run_logs_each_stage_with_timings_and_exit_0(tmp_path):
    out, log = tmp_path / "site", tmp_path / "logs" / "digest.log"
    log.parent.mkdir()
    done = subprocess.run([sys.executable, "-m", "digest.cli", "run", "--engine", "fake", "--sample-feeds", "--out",
                           str(out), "--date", DAY, "--log-file", str(log)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    logged = entries(log)
    assert len({pid for pid, _ in logged}) == 1
    messages = [m for _, m in logged]
    assert messages[0].startswith(f"start out={out} engine=fake model=")
    stages = {STAGE.match(m).group(1): STAGE.match(m) for m in messages if STAGE.match(m)}
    assert list(stages) == ["lock", "feeds", "model", "generation", "write"]
    assert all(s.group(2) == "ok" for s in stages.values())
    assert stages["feeds"].group(4).startswith(" topics=6 trending=3")
    assert re.search(r" sections=14 tokens=\d+ tok/s=\d+\.\d passed=\d+$", stages["generation"].group(4))
    path = out / "content" / "posts" / f"{DAY}-ai-auto-summary.md"
    assert messages[-1] == f"exit 0 wrote {path}"

    # The file is appended to: a second run says it had nothing to do.
    again = subprocess.run([sys.executable, "-m", "digest.cli", "run", "--engine", "fake", "--sample-feeds", "--out",
                            str(out), "--date", DAY, "--log-file", str(log)], capture_output=True, text=True)
    assert again.returncode == 0
    more = entries(log)[len(logged):]
    assert more[-1][1].startswith("exit 0 nothing to do: a post for 2026-01-02 already exists")
    assert {pid for pid, _ in more} == {more[0][0]} != {logged[0][0]}  # another process, its own lines


def test_a_failing_stage_is_logged_with_the_error_and_exit_code(run_cli, tmp_path, write_feeds):
    feeds = write_feeds(topics=None)  # trending.xml only
    log = tmp_path / "digest.log"
    result = run_cli("run", "--engine", "fake", "--feeds-from", feeds, "--out", tmp_path / "site", "--log-file", log)
    assert result.exit_code == 4, describe(result)
    messages = [m for _, m in entries(log)]
    assert STAGE.match(messages[-3]).group(1, 2) == ("feeds", "failed")
    assert "digest: " + messages[-2] == result.stderr.strip().splitlines()[-1]
    assert messages[-1] == "exit 4"


def test_usage_and_config_errors_are_logged_too(run_cli, tmp_path):
    log = tmp_path / "digest.log"
    bad = tmp_path / "digest.toml"
    bad.write_text("[generation]\nseed = -1\n")
    result = run_cli("run", "--config", bad, "--log-file", log)
    assert result.exit_code == 3
    assert [m for _, m in entries(log)][-1] == "exit 3"
    result = run_cli("run", "--sample-feeds", "--feeds-from", tmp_path, "--log-file", log)
    assert result.exit_code == 2
    assert [m for _, m in entries(log)][-1] == "exit 2"


def test_an_unwritable_log_file_is_an_output_error(run_cli, tmp_path):
    result = run_cli("run", "--engine", "fake", "--sample-feeds", "--out", tmp_path, "--log-file", tmp_path)
    assert result.exit_code == 6, describe(result)
    assert result.stderr.startswith(f"digest: error: cannot open the log file {tmp_path}")
    assert not (tmp_path / "content").exists()


import pytest

from digest.errors import EXIT_INTERRUPTED, EXIT_TERMINATED, Terminated


@pytest.mark.parametrize("signal_error, code, word", [(KeyboardInterrupt, EXIT_INTERRUPTED, "interrupted"),
                                                       (Terminated, EXIT_TERMINATED, "terminated")])
def test_an_interrupted_run_logs_the_code_it_exits_with(run_cli, tmp_path, monkeypatch, signal_error, code, word):
    def stopped(*args, **kwargs):
        raise signal_error()

    monkeypatch.setattr("digest.pipeline.generate", stopped)
    log = tmp_path / "digest.log"
    result = run_cli("run", "--engine", "fake", "--sample-feeds", "--out", tmp_path / "site", "--log-file", log)
    assert result.exit_code == code, describe(result)
    assert [m for _, m in entries(log)][-1] == f"exit {code} {word}"


def test_a_log_file_on_a_full_disk_is_one_warning_and_the_post_is_still_written(tmp_path):
    """/dev/full takes the file open and fails every write with ENOSPC: logging's own traceback
    must not reach the user, and the run goes on without its log."""
    import os

    if not os.path.exists("/dev/full"):
        import pytest

        pytest.skip("no /dev/full on this system")
    out = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "digest.cli", "run", "--engine", "fake", "--sample-feeds", "--out",
                           str(out), "--date", DAY, "--log-file", "/dev/full"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "Logging error" not in done.stderr, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "log file" in line]
    assert warnings == ["digest: warning: cannot write the log file /dev/full: No space left on device; "
                        "the run goes on without it"], done.stderr
    assert (out / "content" / "posts" / f"{DAY}-ai-auto-summary.md").is_file()
