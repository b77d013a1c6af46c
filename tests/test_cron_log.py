"""Without a terminal (cron, systemd, a pipe), long work writes a log on stderr: one plain line per
phase and per finished section, each with the UTC time, and a heartbeat while tokens are generated;
no bar, colour or markup. `--quiet` still prints the post's path alone. (In-process: the CLI runner's
stderr is not a terminal; the heartbeat is driven by an injected clock, never by sleeping.)"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

from conftest import describe
from digest.engine.base import Progress
from digest.progress import Reporter

DAY = "2026-01-02"
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
LOGGED = re.compile(rf"^({STAMP}) digest: (.*)$")


def logged(stderr: str) -> list[str]:
    """The messages of the timestamped lines; every other line must be a warning or an error."""
    assert "\x1b" not in stderr, stderr  # no ANSI colour or cursor movement
    messages = []
    for line in stderr.splitlines():
        match = LOGGED.match(line)
        if match is None:
            assert line.startswith(("digest: warning:", "digest: error:")), line
            continue
        stamp = datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        assert abs(datetime.now(timezone.utc) - stamp) < timedelta(minutes=5), line
        assert not re.search(r"\[/?(dim|bold|red|green|yellow)\]|…", match.group(2)), line  # no rich markup
        messages.append(match.group(2))
    return messages


def fake_run(run_cli, out, *flags):
    """`digest run` of the fake engine on 2 topics of the sample feeds, with a small stand-in model file
    (the manifest hashes it)."""
    model = out.parent / "tiny.gguf"
    model.write_bytes(b"GGUF" + bytes(range(256)) * 8)
    return run_cli("run", "--engine", "fake", "--sample-feeds", "--topics", 2, "--model", model, "--out", out,
                   "--date", DAY, *flags)


def sections_done(messages: list[str]) -> list[str]:
    return [m for m in messages if re.match(r"generating: \d+/\d+ sections", m)]


def test_run_without_a_terminal_logs_each_phase_and_each_section(run_cli, tmp_path):
    result = fake_run(run_cli, tmp_path / "site")
    assert result.exit_code == 0, describe(result)
    # (The fake engine applies none of the prevention, and the run says so, as a phase and a warning.)
    messages = [m for m in logged(result.stderr) if not m.startswith("the fake engine cannot apply")]
    assert messages[:3] == ["reading feeds", "loading model", "generating 6 sections with tiny (fake engine)"]
    done = sections_done(messages)
    assert [int(re.match(r"generating: (\d+)/6 ", m).group(1)) for m in done] == list(range(1, 7)), messages
    assert all(re.fullmatch(r"generating: \d+/6 sections, \d+ tokens(, \d+ tok/s)?", m) for m in done), done
    # The fake engine's canned text fails some checks: their retry round is heard too.
    assert any(re.fullmatch(r"generating \(round 2\): \d+/\d+ sections.*", m) for m in messages), messages
    assert re.match(r"wrote 2 topics: ", messages[-1]), messages
    assert result.stdout.strip().splitlines()[-1].endswith(".md")


def test_quiet_prints_the_path_alone(run_cli, tmp_path):
    result = fake_run(run_cli, tmp_path / "site", "--quiet")
    assert result.exit_code == 0, describe(result)
    # Nothing but the warnings a user must hear (here: the fake engine applies no prevention).
    assert all(line.startswith("digest: warning: ") for line in result.stderr.splitlines()), result.stderr
    assert result.stdout.splitlines() == [str(tmp_path / "site" / "content" / "posts" / f"{DAY}-ai-auto-summary.md")]


def test_eval_without_a_terminal_logs_its_phases_and_sections(run_cli, tmp_path):
    from digest.resources import samples_dir

    result = run_cli("eval", "--engine", "fake", "--json", "--topics", 2, samples_dir() / "topics.xml")
    assert result.exit_code == 0, describe(result)
    assert result.stdout.lstrip().startswith("{")  # the report alone on stdout
    messages = logged(result.stderr)
    assert messages[:2] == ["reading 1 input", "loading model"]
    assert re.fullmatch(r"generating 6 sections of 1 input with \S+ \(fake engine\)", messages[2]), messages
    assert len(sections_done(messages)) == 6


def test_replay_without_a_terminal_logs_its_phases(run_cli, tmp_path):
    out = tmp_path / "site"
    written = fake_run(run_cli, out, "--quiet")
    assert written.exit_code == 0, describe(written)
    result = run_cli("replay", out / ".digest" / "manifests" / f"{DAY}.json")
    assert result.exit_code == 0, describe(result)
    messages = logged(result.stderr)
    assert messages[:2] == ["checking the inputs the manifest names", "reading feeds"], messages
    assert len(sections_done(messages)) == 6


class Clock:
    def __init__(self):
        self.seconds = 0.0

    def __call__(self) -> float:
        return self.seconds


def reporter(stderr_lines: list[str], clock: Clock, **options) -> Reporter:
    report = Reporter(terminal=False, clock=clock, now=lambda: datetime(2026, 12, 7, 10, 15, 2, tzinfo=timezone.utc),
                      **options)
    report.line = lambda message: stderr_lines.append(message)  # type: ignore[method-assign]
    return report


def test_heartbeat_while_tokens_are_generated_at_most_every_five_seconds():
    lines: list[str] = []
    clock = Clock()
    with reporter(lines, clock).progress() as progress:
        # One call per decode step, as the batching engine makes them: 0.25 s apart, 22 s in all.
        for step in range(1, 89):
            clock.seconds = step * 0.25
            done = 1 if step >= 30 else 0
            progress(Progress(done, 3, step * 4, clock.seconds))
    assert lines == [
        "generating: 0/3 sections, 80 tokens, 16 tok/s",   # 5 s: nothing finished yet, a heartbeat
        "generating: 1/3 sections, 120 tokens, 16 tok/s",  # 7.5 s: the first section
        "generating: 1/3 sections, 200 tokens, 16 tok/s",  # 12.5 s: 5 s after the last line
        "generating: 1/3 sections, 280 tokens, 16 tok/s",  # 17.5 s (and at 22 s, 4.5 s after it: nothing)
    ]


def test_a_retry_round_is_a_new_batch_and_says_so():
    lines: list[str] = []
    clock = Clock()
    with reporter(lines, clock).progress() as progress:
        for done in (1, 2, 3):
            progress(Progress(done, 3, done * 50, 1.0))
        progress(Progress(0, 2, 0, 0.0))  # pipeline.generate's second round: the 2 sections that failed
        progress(Progress(1, 2, 40, 1.0))
    assert lines == [
        "generating: 1/3 sections, 50 tokens, 50 tok/s",
        "generating: 2/3 sections, 100 tokens, 100 tok/s",
        "generating: 3/3 sections, 150 tokens, 150 tok/s",
        "generating (round 2): 0/2 sections, 0 tokens",
        "generating (round 2): 1/2 sections, 40 tokens, 40 tok/s",
    ]


def test_the_log_line_is_timestamped_utc_and_plain(capsys):
    report = Reporter(terminal=False, now=lambda: datetime(2026, 12, 7, 11, 15, 2, tzinfo=timezone(timedelta(hours=1))))
    report.say("reading [dim]feeds[/dim] :100:")  # text of a feed or a path is printed as it is
    assert capsys.readouterr().err == "2026-12-07T10:15:02Z digest: reading [dim]feeds[/dim] :100:\n"


def test_quiet_says_nothing_and_gives_no_progress(capsys):
    report = Reporter(quiet=True, terminal=False)
    report.say("reading feeds")
    report.tell("wrote 7 topics")
    with report.progress() as progress:
        assert progress is None
    assert capsys.readouterr().err == ""


@pytest.mark.model
def test_the_batching_engine_reports_while_it_reads_the_prompts(batched_engine):
    """Before the first token the engine reads every prompt (seconds on a busy machine): the progress
    callback hears each prompt read, so that a log's heartbeat does not fall silent there."""
    from digest.engine.base import Message, Request

    requests = [Request(key=f"r{n}", messages=(Message("user", f"Say the number {n}."),), seed=n, max_tokens=2)
                for n in range(3)]
    heard: list[Progress] = []
    batched_engine.generate(requests, heard.append)
    before_a_token = [p for p in heard if p.completion_tokens == 0]
    assert len(before_a_token) >= len(requests) and all(p.done == 0 and p.total == 3 for p in before_a_token)
    assert heard[-1].done == 3


def test_where_nothing_reports_the_log_still_says_what_goes_on_every_heartbeat():
    lines: list[str] = []
    clock = Clock()
    report = reporter(lines, clock)
    report.say("loading model")
    for clock.seconds in (3.0, 4.9, 5.0, 7.0, 9.9, 10.0):
        report.watch_tick()
    assert lines == ["loading model", "still loading model (5 s)", "still loading model (10 s)"]


def test_the_watch_thread_writes_while_the_work_is_silent():
    """Inside a block of work with no progress at all (the sequential engine's long section, a model
    loading), the watch thread writes the line: waited for as an event, not slept for."""
    import threading

    written = threading.Event()
    lines: list[str] = []
    report = Reporter(terminal=False, every=0.05)
    report.line = lambda message: (lines.append(message), written.set())  # type: ignore[method-assign]
    report.say("generating 2 sections")
    written.clear()
    with report.progress():
        assert written.wait(timeout=30)
    assert lines[0] == "generating 2 sections" and lines[1].startswith("still generating 2 sections (")
