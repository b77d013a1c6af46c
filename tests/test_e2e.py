"""The real `digest` command on the bundled samples with the real embedded model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import frontmatter
import pytest

from conftest import describe, made_once
from digest.config import Config
from digest.feeds import read_feed_file
from digest.resources import samples_dir
from digest.markdown import unescape_inline
from digest.select import pick

pytestmark = pytest.mark.model
DIGEST = [sys.executable, "-m", "digest.cli"]
EPOCH = "1795000000"  # 2026-11-18T...Z


def digest(*args: str, epoch: str | None = EPOCH, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env or {})}
    env.pop("SOURCE_DATE_EPOCH", None)
    if epoch:
        env["SOURCE_DATE_EPOCH"] = epoch
    return subprocess.run([*DIGEST, *args], capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """The post of one `digest run` (made once for the whole run, whichever worker asks first: made_once).
    Without quality retries: these tests are about the command, not the writing (the retries have tests
    of their own), and 64 tokens are too few for most paragraphs to pass every check."""

    def make(folder: Path) -> None:
        config = folder / "digest.toml"
        config.write_text("[generation]\nretries = 0\n", encoding="utf-8")
        done = digest("run", "--config", str(config), "--sample-feeds", "--out", str(folder / "site"),
                      "--date", "2026-11-23", "--max-tokens", "64")
        assert done.returncode == 0, done.stderr
        (folder / "stdout").write_text(done.stdout, encoding="utf-8")

    folder = made_once(tmp_path_factory, "e2e-post", make)
    return folder / "site", subprocess.CompletedProcess([], 0, (folder / "stdout").read_text(encoding="utf-8"), "")


def test_run_writes_a_post_that_passes_strict_check(written, run_cli):
    out, done = written
    path = Path(done.stdout.strip().splitlines()[-1])
    assert path == out / "content" / "posts" / "2026-11-23-ai-auto-summary.md"
    check = run_cli("check", "--strict", path)  # in-process: the post is what a real process wrote
    assert check.exit_code == 0, describe(check)


def test_post_topics_are_the_sample_feeds_titles_and_tags_name_the_model(written):
    out, done = written
    post = frontmatter.load(done.stdout.strip().splitlines()[-1])
    assert post["tags"][-1] == Config().model_path.stem
    assert post["date"].isoformat().startswith("2026-11-23T")
    from digest.check import parse_post

    parsed, problems = parse_post(Path(done.stdout.strip().splitlines()[-1]).read_text(encoding="utf-8"))
    assert not problems
    expected = [s.title for s in pick(read_feed_file(samples_dir(), "topics").entries, 6)]
    assert [unescape_inline(t.title) for t in parsed.topics] == expected
    for topic in parsed.topics:
        assert list(topic.paragraphs) == ["Benefits", "Ramifications"]
        assert all(len(p.split()) >= 5 for p in topic.paragraphs.values())


def test_second_run_for_the_same_day_keeps_the_post(written, run_cli):
    out, done = written
    path = Path(done.stdout.strip().splitlines()[-1])
    before = path.read_bytes()
    again = run_cli("run", "--sample-feeds", "--out", out, "--date", "2026-11-23", "--seed", "7")
    assert again.exit_code == 0, describe(again)
    assert "already exists" in again.stderr
    assert path.read_bytes() == before


def test_bench_times_both_engines_and_the_checks_on_the_same_requests(tmp_path):
    # The smallest workload that shows every row's point: two topics (6 sections: two share each
    # kind's example; with one topic, 0.1's shared examples would be no cheaper than one a section)
    # and 8 tokens each; every row times the very same requests; one retry round for the checks' row.
    config = tmp_path / "digest.toml"
    config.write_text("[feeds.topics]\ncount = 2\n\n[generation]\nretries = 1\n", encoding="utf-8")
    done = digest("bench", "--config", str(config), "--runs", "1", "--slots", "4", "--decode", "", "--no-memory",
                  "--max-tokens", "8", "--json")
    assert done.returncode == 0, done.stderr
    import json

    report = json.loads(done.stdout)
    rows = {row["label"]: row for row in report["rows"]}
    # (--configs N's two rows: test_bench's test_n_digests_in_one_batch_are_timed_against_the_same_n_one_by_one)
    assert set(rows) == {"sequential", "sequential-reread", "batched", "batched [no examples]", "batched+checks",
                         "batched [f16 K, all examples: 0.1]"}
    # each section is shown its own kind's example, which the two sections of a kind share: decoded once
    # a kind (3 times), not once a section (6 times); 0.1 showed all three to every section, decoded once
    plain, full, older = rows["batched [no examples]"], rows["batched"], rows["batched [f16 K, all examples: 0.1]"]
    examples = full["prompt_tokens"] - plain["prompt_tokens"]  # their tokens in all 6 prompts
    assert examples > 6 * 60
    assert full["prompt_tokens_decoded"] - plain["prompt_tokens_decoded"] < 0.85 * examples  # per section: > 1.0
    assert older["prompt_tokens"] - plain["prompt_tokens"] > 2.5 * examples  # three examples, not one
    assert older["prompt_tokens_decoded"] - plain["prompt_tokens_decoded"] < 0.75 * examples
    assert report["requests"] == 6 and report["max_tokens"] == 8
    rate = {label: row["completion_tokens"] / row["median_wall_s"] for label, row in rows.items()}
    for label, row in rows.items():
        assert row["completion_tokens"] > 0
        # one run: the speedup is the row's tokens per second over the sequential loop's
        assert row["speedup"] == pytest.approx(rate[label] / rate["sequential"], rel=0.02), label
    for name in ("sequential-reread", "batched"):
        assert rows[name]["prompt_tokens"] == rows["sequential"]["prompt_tokens"]  # the very same prompts
    # the checks' extra tries send their prompts again, on top of the first try's
    assert rows["batched+checks"]["prompt_tokens"] > rows["batched"]["prompt_tokens"]
    # ... and decode none of them again (each puts its first try's prompt back), where each row's run
    # starts with none kept from another row's: the checks row decodes the plain row's prompt tokens
    assert rows["batched+checks"]["prompt_tokens_decoded"] == rows["batched"]["prompt_tokens_decoded"]
    assert rows["batched"]["prompt_tokens_decoded"] < rows["batched"]["prompt_tokens"]  # the shared prefix, once
    assert rows["sequential-reread"]["prompt_tokens_decoded"] == rows["sequential"]["prompt_tokens"]
    # 8 tokens are too few for a 40-word paragraph: the checks ask for more tries than the plain run
    assert rows["batched+checks"]["completion_tokens"] > rows["batched"]["completion_tokens"]


def test_live_fetch_snapshot_and_replay_with_the_real_model(tmp_path, http_server):
    """The air-gapped chain end to end: feeds fetched from a real HTTP server on 127.0.0.1, the post
    written by the real model, the fetched feeds kept as a snapshot; then, with the server answering
    nothing, replay regenerates the post from the snapshot alone, at another slot count, in another
    process: the same bytes. (Replay is `digest run`'s pipeline on the manifest's inputs with the slot
    count changed; that `run --slots N` sets the same slot count is test_cli's
    test_the_slots_flag_is_the_runs_slot_count.)"""
    topics = http_server.add("/topics.rss", (samples_dir() / "topics.xml").read_bytes())
    trending = http_server.add("/trending.rss", (samples_dir() / "trending.xml").read_bytes())
    config = tmp_path / "digest.toml"
    config.write_text(f'[feeds.topics]\nurl = "{topics}"\ncount = 1\n[feeds.trending]\nurl = "{trending}"\n'
                      # Retries on: a 48-token prediction can fail its checks on one CPU and pass on
                      # another (the kernels' rounding differs), and this test is about the chain, not
                      # the writing; a retry regenerates only the section that failed.
                      '[generation]\nmax_tokens = 48\nretries = 2\n', encoding="utf-8")
    out = tmp_path / "site"
    done = digest("run", "--config", str(config), "--out", str(out), "--date", "2026-11-24")
    assert done.returncode == 0, done.stderr
    assert {seen.path for seen in http_server.seen} == {"/topics.rss", "/trending.rss"}
    manifest = out / ".digest" / "manifests" / "2026-11-24.json"
    import json

    recorded = json.loads(manifest.read_text(encoding="utf-8"))
    assert recorded["feeds"]["snapshot"] and (out / recorded["feeds"]["directory"] / "topics.xml").is_file()
    http_server.routes.clear()  # from here on, a fetch would get a 404
    fetched = len(http_server.seen)
    again = digest("replay", str(manifest), "--slots", "3", epoch=None)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.startswith("identical")
    assert len(http_server.seen) == fetched


def test_a_manifest_replays_with_the_sampling_it_ran_with(tmp_path, run_cli, monkeypatch):
    """The sampling a post was made with is the manifest's, whatever the registry recommends when it is
    replayed: a post made where the registry's entry for the embedded model recommended temperature 0.2
    (the config leaving it unset) replays identical under the shipped registry (0.5); and a manifest of
    an older release (its config sets temperature 0.7, as every one then did, its repeat penalty is 0.5's
    1.15, and it lacks repeat_last_n)
    replays identical under a registry that recommends 0.2."""
    import json

    from digest.manifest import config_sha256
    from digest.models.registry import DEFAULT_REGISTRY

    folder = tmp_path / "registry"
    folder.mkdir()
    text = DEFAULT_REGISTRY.read_text(encoding="utf-8")
    colder = text.replace("sampling = { temperature = 0.5, top_p = 0.9, source = \"digest's own", "sampling = { "
                          "temperature = 0.2, top_p = 0.9, source = \"digest's own", 1)
    assert colder != text
    (folder / "registry.toml").write_text(colder, encoding="utf-8")
    model = Config().model_path
    (folder / model.name).symlink_to(model.resolve())
    at_02 = str(folder / "registry.toml")

    def cli(*args: str, epoch: str | None = EPOCH, registry: str | None = None):
        """`digest ARGS` in-process (each run loads the model as a process would), with the environment
        a process would be given: SOURCE_DATE_EPOCH, and DIGEST_REGISTRY where a registry is named."""
        for name, value in (("SOURCE_DATE_EPOCH", epoch), ("DIGEST_REGISTRY", registry)):
            if value:
                monkeypatch.setenv(name, value)
            else:
                monkeypatch.delenv(name, raising=False)
        return run_cli(*args)

    today = tmp_path / "today.toml"
    today.write_text("[feeds.topics]\ncount = 1\n[feeds.trending]\ncount = 1\n"
                     "[generation]\nmax_tokens = 48\nretries = 0\n", encoding="utf-8")
    older = tmp_path / "older.toml"
    older.write_text(today.read_text(encoding="utf-8") + "temperature = 0.7\nrepeat_penalty = 1.15\n", encoding="utf-8")
    posts, manifests = {}, {}
    for name, config, registry in (("older", older, None), ("today", today, at_02)):
        out = tmp_path / name
        done = cli("run", "--config", str(config), "--sample-feeds", "--out", str(out), "--date", "2026-11-24",
                   registry=registry)
        assert done.exit_code == 0, describe(done)
        posts[name] = Path(done.stdout.strip().splitlines()[-1]).read_bytes()
        manifests[name] = out / ".digest" / "manifests" / "2026-11-24.json"
    assert posts["older"] != posts["today"]  # the temperature matters to these bytes
    recorded = json.loads(manifests["today"].read_text(encoding="utf-8"))
    assert recorded["config"]["effective"]["generation"]["temperature"] is None
    assert (recorded["sampling"]["temperature"], recorded["sampling"]["top_p"]) == (0.2, 0.9)
    again = cli("replay", str(manifests["today"]), "--slots", "1", epoch=None)  # the shipped registry: 0.5
    assert again.exit_code == 0 and again.stdout.startswith("identical"), describe(again)

    m = json.loads(manifests["older"].read_text(encoding="utf-8"))
    assert m["sampling"]["temperature"] == m["config"]["effective"]["generation"]["temperature"] == 0.7
    assert m["sampling"]["repeat_penalty"] == 1.15
    del m["config"]["effective"]["generation"]["repeat_last_n"]  # as 0.4 wrote it
    m["config"]["sha256"] = config_sha256(m["config"]["effective"])
    manifests["older"].write_text(json.dumps(m), encoding="utf-8")
    again = cli("replay", str(manifests["older"]), epoch=None, registry=at_02)
    assert again.exit_code == 0 and again.stdout.startswith("identical"), describe(again)
