"""The bench's own arithmetic: the simulated ceiling, prompts cut to an exact length, the ratios."""

from __future__ import annotations

import pytest

from digest.bench.native import simulated_ceiling
from digest.bench.run import Report, Row
from digest.bench.workload import exact_prompt
from digest.config import Config
from digest.errors import EXIT_CONFIG

MODEL = Config().model_path


def test_ceiling_when_every_batch_size_decodes_at_the_same_per_sequence_rate():
    # 10 tok/s per live sequence at every batch size: each step costs 0.1 s whatever the batch.
    rates = {1: 10.0, 4: 40.0, 16: 160.0}
    lengths = [5, 20, 12, 3]
    assert simulated_ceiling(lengths, 0, rates, 100.0) == pytest.approx(20 * 0.1)
    # one slot: the sections one after another
    assert simulated_ceiling(lengths, 0, rates, 100.0, slots=1) == pytest.approx(sum(lengths) * 0.1)
    # prompt tokens at the prompt rate
    assert simulated_ceiling(lengths, 250, rates, 100.0) == pytest.approx(2.0 + 2.5)


def test_ceiling_rewards_batching_when_bigger_batches_are_faster():
    rates = {1: 100.0, 16: 800.0}
    lengths = [100] * 16
    together = simulated_ceiling(lengths, 0, rates, 1000.0)
    alone = simulated_ceiling(lengths, 0, rates, 1000.0, slots=1)
    assert together == pytest.approx(100 * 16 / 800.0)
    assert alone == pytest.approx(16 * 100 / 100.0)
    assert alone / together == pytest.approx(8.0)


def test_ratios_are_medians_of_per_run_ratios():
    loop = Row("sequential", 0, wall_s=[10.0, 20.0, 10.0], tokens=[100, 100, 100])
    fast = Row("batched", 0, wall_s=[5.0, 10.0, 2.0], tokens=[100, 100, 100])
    report = Report("m", 2, 3, 160, 14, [loop, fast])
    # per run: 2x, 2x, 5x: the median is 2x (a ratio of medians would say 10/5 = 2x too, but
    # the slow second run must not pair with a fast one)
    assert report.speedup(fast) == pytest.approx(2.0)
    other = Row("sequential", 0, "other.gguf", wall_s=[20.0, 20.0, 20.0], tokens=[100, 100, 100])
    report.rows.append(other)
    assert report.speedup(fast, other) == pytest.approx(4.0)
    assert [b.label for b in report.baselines] == ["sequential", "sequential [other]"]
    assert Row("sequential", 0, "SmolLM2-135M-Instruct.Q4_1.gguf").label == "sequential [Q4_1]"


def test_what_the_checks_cost_is_a_median_of_per_run_wall_ratios_and_sampled_per_kept():
    plain = Row("batched", 0, wall_s=[2.0, 4.0, 2.0], tokens=[100, 100, 100])
    checked = Row("batched+checks", 0, wall_s=[3.0, 4.0, 5.0], tokens=[150, 150, 150], sampled_tokens=260,
                  kept_tokens=200)
    report = Report("m", 2, 3, 160, 14, [plain, checked])
    # per run: 1.5x, 1x, 2.5x: the median is 1.5x
    assert report.checks_cost() == {"wall_ratio": 1.5, "sampled_per_kept": 1.3}
    assert Report("m", 2, 3, 160, 14, [plain]).checks_cost() == {}


def test_each_row_keeps_its_own_ceiling_and_whole_label_in_the_json_and_the_table(capsys, monkeypatch):
    """Two batched rows with the same slots (plain, and without the examples) each carry their own
    ceiling and share of it, and every row its wall time against llama-server: no arithmetic for a
    reader, no row overwriting another's ceiling; the table prints each label whole."""
    import json

    from digest.reports import show_bench

    plain = Row("batched", 0, wall_s=[10.0, 10.0, 10.0], tokens=[100] * 3, ceiling_s=8.5)
    bare = Row("batched", 0, variant="no examples", wall_s=[6.0, 6.0, 6.0], tokens=[100] * 3, ceiling_s=3.0)
    server = Row("llama-server", 0, wall_s=[20.0, 15.0, 30.0], tokens=[100] * 3)
    old = Row("batched", 0, variant="f16 K, all examples: 0.1", wall_s=[12.5] * 3, tokens=[100] * 3)
    remote = Row("openai", 0, variant="http://a-very-long-host-name.inference.internal.example.org:8000/v1/with/a/path/prefix", wall_s=[9.25] * 3,
                 tokens=[100] * 3)
    report = Report("m", 2, 3, 160, 14, [plain, bare, server, old, remote])
    rows = {row["label"]: row for row in json.loads(report.to_json())["rows"]}
    assert (rows["batched"]["ceiling_s"], rows["batched"]["of_ideal"]) == (8.5, 0.85)
    assert (rows["batched [no examples]"]["ceiling_s"], rows["batched [no examples]"]["of_ideal"]) == (3.0, 0.5)
    assert rows["batched"]["wall_vs_llama_server"] == 0.5  # median of 10/20, 10/15, 10/30
    assert rows["llama-server"]["median_wall_s"] == 20.0 and "wall_vs_llama_server" not in rows["llama-server"]
    monkeypatch.setenv("COLUMNS", "40")  # a narrow terminal: the table is as wide as its longest label needs
    show_bench(report)
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if line.startswith("│")]
    assert len(table) == 5 and all("…" not in line for line in table)
    assert "│ batched [f16 K, all examples: 0.1] " in out and "12.50" in out
    assert "│ openai [http://a-very-long-host-name.inference.internal.example.org:8000/v1/with/a/path/prefix] │" in out and "9.25" in out
    assert "openai [http://a-very-long-host-name.inference.internal.example.org:8000/v1/with/a/path/prefix] against llama-server" in out  # no slots=
    assert "batched [no examples]" in out
    assert "simulated ceiling, batched [no examples] slots=all: 3.00 s" in out and "(50% of ideal)" in out
    assert "simulated ceiling, batched slots=all: 8.50 s" in out and "(85% of ideal)" in out
    assert "batched slots=all against llama-server: 2.00x as fast" in out


@pytest.mark.model
def test_prompts_cut_or_padded_to_exactly_128_tokens(batched_engine):
    from digest.bench.workload import bench_inputs

    for request in bench_inputs(Config(), examples=False)[0][:4]:
        for n in (128, 200):
            fitted = exact_prompt(batched_engine, request, n)
            assert len(batched_engine.tokenize(fitted)) == n


def test_the_memory_step_measures_the_run_not_the_bench_that_forked_it():
    """Linux counts in a child's peak RSS the RSS of the process it was forked from: a bench holding
    models would report its own size for any run. The go-between reports the run's own peak."""
    import os
    import subprocess
    import sys

    from digest.bench.memory import PEAK_OF_CHILD

    ballast = bytearray(400 * 2**20)
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1  # touched, so resident
    small = [sys.executable, "-c", "import sys; sys.exit(3)"]
    child = subprocess.Popen(small)
    _, _, usage = os.wait4(child.pid, 0)
    assert usage.ru_maxrss * 1024 > 400 * 2**20  # what a plain fork reports: the parent's size
    done = subprocess.run([sys.executable, "-c", PEAK_OF_CHILD, *small], capture_output=True, text=True)
    code, peak = (int(x) for x in done.stdout.split())
    assert code == 3
    assert 1 * 2**20 < peak < 100 * 2**20
    del ballast


@pytest.mark.model
def test_a_run_that_fails_is_not_within_the_memory_limit(tmp_path):
    """A failed run stops early and holds little: its small peak must not pass as a run within the limit."""
    import dataclasses

    from digest.bench.memory import measure_run_memory

    broken = tmp_path / "digest.toml"
    broken.write_text("[generation\n", encoding="utf-8")  # the child `digest run` stops on it
    memory = measure_run_memory(dataclasses.replace(Config(), source=broken), MODEL)
    assert memory["exit_code"] == EXIT_CONFIG
    assert memory["peak_rss_bytes"] <= memory["limit_bytes"]  # small: the run stopped before loading the model
    assert memory["within_limit"] is False


def test_n_digests_in_one_batch_are_timed_against_the_same_n_one_by_one(monkeypatch):
    """`digest bench --configs 2`: its two rows run the very same requests of two digests (two run
    seeds), all in one batch and one digest after the other. The fake engine here: the bench's other rows
    run the real model in test_e2e, and that the real engine writes each digest of a batch as its own
    run is test_many's test_two_posts_in_one_batch_are_the_bytes_of_their_own_runs."""
    from pathlib import Path

    from digest import engine as engine_pkg
    from digest.bench.run import run_bench
    from digest.engine.fake import FakeEngine

    engines: list[FakeEngine] = []

    def fake(name, model_path, **settings):
        engines.append(FakeEngine(model_name=Path(model_path).stem))
        return engines[-1]

    monkeypatch.setattr(engine_pkg, "create_engine", fake)
    report = run_bench(Config(), runs=1, sequential=False, checks=False, memory=False, configs=2)
    rows = {row.label: row for row in report.rows}
    together, apart, one = (rows["batched [2 digests, one batch]"], rows["batched [2 digests, one by one]"],
                            rows["batched"])
    assert together.prompt_tokens == apart.prompt_tokens == 2 * one.prompt_tokens
    assert together.completion_tokens == apart.completion_tokens > one.completion_tokens
    batched = engines[0]  # the bench's batching engine, which every one of these rows runs on
    calls = [[r.key for r in call] for call in batched.calls if len(call) > 1]
    digests = [keys for keys in calls if not keys[0].startswith("digest")]
    in_one = [keys for keys in calls if keys[0].startswith("digest")]
    assert in_one and all(len(keys) == 2 * report.requests for keys in in_one)
    assert {key.split("/", 1)[1] for key in in_one[-1]} == set(digests[-1])
    seeds = {r.key: r.seed for r in next(c for c in reversed(batched.calls) if c[0].key.startswith("digest"))}
    assert seeds[f"digest0/{digests[-1][0]}"] != seeds[f"digest1/{digests[-1][0]}"]  # two run seeds


def test_a_rows_phases_are_those_of_its_median_run_and_add_up_to_its_wall_time(capsys):
    """`digest bench` shows the batching engine's own timers (Stats.phases) of each row's median run,
    in engine.timing.PHASES' order, with `other` the wall time no timer covers: in --json and in a
    line under the table. A row whose engine times nothing (llama-server) has none."""
    import json

    from digest.reports import show_bench

    runs = [{"decode": 6.0, "prompt": 2.0, "guard": 0.5}, {"decode": 9.0, "prompt": 2.5, "guard": 0.5},
            {"guard": 0.25, "decode": 7.0, "prompt": 2.0}]
    plain = Row("batched", 0, wall_s=[9.0, 12.5, 10.0], tokens=[100] * 3, phase_s=runs)
    server = Row("llama-server", 0, wall_s=[20.0] * 3, tokens=[100] * 3, phase_s=[{}, {}, {}])
    report = Report("m", 2, 3, 160, 14, [plain, server])
    assert plain.phases == {"prompt": 2.0, "decode": 7.0, "guard": 0.25, "other": 0.75}  # the 10.0 s run
    assert list(plain.phases) == ["prompt", "decode", "guard", "other"]
    assert sum(plain.phases.values()) == pytest.approx(plain.median_wall_s)
    assert server.phases == {} and Row("batched", 0).phases == {}
    rows = {row["label"]: row for row in json.loads(report.to_json())["rows"]}
    assert rows["batched"]["phases"] == plain.phases and rows["batched"]["phase_s"] == runs
    assert rows["llama-server"]["phases"] == {}
    show_bench(report)
    out = capsys.readouterr().out
    assert ("phases, batched slots=all (its median run, 10.00 s): prompt 2.00 s (20%), decode 7.00 s (70%), "
            "guard 0.25 s (2%), other 0.75 s (8%)") in out
    assert "phases, llama-server" not in out


def test_the_phase_clock_counts_each_phase_its_own_time(monkeypatch):
    """A span inside another counts for the inner phase alone; a phase entered twice adds up; an
    unknown phase name is refused. (A clock that ticks one second a reading, not a real one.)"""
    import itertools

    from digest.engine import timing

    ticks = itertools.count()
    monkeypatch.setattr(timing, "perf_counter", lambda: float(next(ticks)))
    clock = timing.PhaseClock()
    with clock("advance"):  # 0
        with clock("rollback"):  # 1
            with clock("guard"):  # 2 .. 3
                pass
        # rollback leaves at 4: 3 s, 1 of them guard's
        with clock("guard"):  # 5 .. 6
            pass
    # advance leaves at 7: 7 s, 3 + 1 of them the inner phases'
    assert clock.seconds == {"guard": 2.0, "rollback": 2.0, "advance": 3.0}
    with pytest.raises(ValueError, match="unknown phase"):
        clock("lunch")
