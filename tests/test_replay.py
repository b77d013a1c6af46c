"""Manifests and `digest replay`, with the fake engine (the real model's replay is in test_e2e.py)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import frontmatter
import pytest

from conftest import TOPIC_TITLES, TRENDING_TITLES, describe, news_rss, reddit_atom, titled
from digest.config import Config
from digest.errors import EXIT_INPUT_CHANGED, EXIT_INVALID
from digest.files import canonical_json
from digest.manifest import config_sha256

DAY = "2026-01-02"
TOPICS = reddit_atom(titled(TOPIC_TITLES, "[R] "))
TRENDING = news_rss(titled(TRENDING_TITLES))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def site(run_cli, http_server, tmp_path, monkeypatch):
    """A live run (fake engine) against feeds on 127.0.0.1, with its own prompts and model file."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767323045")  # 2026-01-02T03:04:05Z
    topics = http_server.add("/topics.rss", TOPICS)
    trending = http_server.add("/trending.rss", TRENDING)
    config = tmp_path / "digest.toml"
    config.write_text(f'[feeds.topics]\nurl = "{topics}"\n[feeds.trending]\nurl = "{trending}"\n'
                      '[generation]\nengine = "fake"\nseed = 11\ntemperature = 0.5\n', encoding="utf-8")
    prompts = tmp_path / "prompts"
    shutil.copytree(Config().prompts_path, prompts)
    model = tmp_path / "tiny.gguf"
    model.write_bytes(b"GGUF" + bytes(range(256)) * 8)
    out = tmp_path / "site"
    result = run_cli("run", "--config", config, "--prompts", prompts, "--model", model, "--out", out, "--date", DAY)
    assert result.exit_code == 0, describe(result)
    manifest = out / ".digest" / "manifests" / f"{DAY}.json"
    return {"out": out, "manifest": manifest, "prompts": prompts, "model": model, "config": config,
            "post": Path(result.stdout.strip().splitlines()[-1])}


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_manifest_records_what_the_post_was_made_from(site):
    m = load(site["manifest"])
    post = site["post"]
    assert post == site["out"] / "content" / "posts" / f"{DAY}-ai-auto-summary.md"
    assert m["post"] == {"path": f"content/posts/{DAY}-ai-auto-summary.md", "sha256": sha(post.read_bytes())}

    import importlib.metadata as md
    import digest
    assert m["versions"]["digest"] == digest.__version__  # the code's own (an editable install's metadata may lag)
    assert m["versions"]["llama_cpp_python"] == md.version("llama-cpp-python")
    model = site["model"]
    assert m["model"] == {"path": str(model.resolve()), "file": "tiny.gguf", "size": model.stat().st_size,
                          "sha256": sha(model.read_bytes())}
    assert m["prompts"]["dir"] == str(site["prompts"].resolve())
    assert m["prompts"]["sha256"] == {p.stem: sha(p.read_bytes()) for p in site["prompts"].glob("*.txt")}
    effective = m["config"]["effective"]
    assert m["config"]["sha256"] == sha(canonical_json(effective).encode("utf-8"))
    assert effective["generation"]["seed"] == m["seed"] == 11
    # The sampling as used: the config's temperature; top_k unset (null), a GGUF the registry does not know:
    # the engines' default.
    assert m["sampling"]["temperature"] == effective["generation"]["temperature"] == 0.5
    assert effective["generation"]["top_k"] is None and m["sampling"]["top_k"] == 40
    assert m["engine"]["name"] == "fake" and m["generation"]["max_tokens"] == 160

    # The feeds a live run fetched are kept as a snapshot that the manifest points to.
    snap = site["out"] / m["feeds"]["directory"]
    assert m["feeds"]["snapshot"] is True and m["feeds"]["directory"].startswith(".digest/snapshots/")
    assert (snap / "topics.xml").read_bytes() == TOPICS and (snap / "trending.xml").read_bytes() == TRENDING
    assert m["feeds"]["files"]["topics"] == {"file": "topics.xml", "sha256": sha(TOPICS), "size": len(TOPICS)}

    front = frontmatter.loads(post.read_text(encoding="utf-8"))
    assert m["front_matter_time"] == "2026-01-02T03:04:05+00:00" and front["date"].isoformat().startswith("2026-01-02T03:04:05")
    assert [t["title"] for t in m["topics"]] == TOPIC_TITLES[:6]
    assert [t["title"] for t in m["trending"]] == TRENDING_TITLES[:3]
    assert len(m["sections"]) == 14 and all(s["completion_tokens"] > 0 and s["seed"] for s in m["sections"])
    assert all(s["tries"] >= 1 and isinstance(s["failed_checks"], list) for s in m["sections"])
    # The run's totals count every try; the sections list the one kept.
    assert m["stats"]["completion_tokens"] >= sum(s["completion_tokens"] for s in m["sections"])


def test_nothing_but_the_post_goes_where_hugo_looks(site):
    files = {p.relative_to(site["out"]).as_posix() for p in site["out"].rglob("*") if p.is_file()}
    published = {f for f in files if not f.startswith(".digest/")}
    assert published == {f"content/posts/{DAY}-ai-auto-summary.md"}
    assert f".digest/manifests/{DAY}.json" in files


def test_replay_is_identical(run_cli, site, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1")  # the manifest's time wins
    result = run_cli("replay", site["manifest"], "--slots", 3)
    assert result.exit_code == 0, describe(result)
    assert result.stdout.startswith("identical")


def edit_by_hand(post: Path) -> str:
    """Replace one trending line of the post; return that line."""
    text = post.read_text(encoding="utf-8")
    line = next(x for x in text.splitlines() if x.startswith("- ") and "**" not in x)
    post.write_text(text.replace(line, "- Edited by hand"), encoding="utf-8")
    return line


def test_replay_checks_the_post_against_its_manifest_before_regenerating(run_cli, site):
    """The manifest says which bytes were written: a post whose sha256 is not the manifest's (the
    manifest's edited, or the post edited by hand since) is exit 9, both hashes named, nothing
    regenerated. A post that is as its manifest says, yet not what its inputs make, is the engine's
    failure to reproduce it: exit 1 and the diff."""
    post, written = site["post"], site["manifest"].read_text(encoding="utf-8")
    before = sha(post.read_bytes())
    edit_manifest(site, lambda m: m["post"].update(sha256="0" * 64))
    refused(run_cli, site, f"post {post} has changed", "0" * 64, before)
    site["manifest"].write_text(written, encoding="utf-8")

    line = edit_by_hand(post)
    result = refused(run_cli, site, f"post {post} has changed", before, sha(post.read_bytes()))
    assert result.stdout == ""

    edit_manifest(site, lambda m: m["post"].update(sha256=sha(post.read_bytes())))
    result = run_cli("replay", site["manifest"])
    assert result.exit_code == EXIT_INVALID, describe(result)
    assert "-- Edited by hand\n" in result.stdout and f"+{line}\n" in result.stdout
    assert result.stdout.startswith(f"--- {post}")


def refused(run_cli, site, *needles: str):
    result = run_cli("replay", site["manifest"])
    assert result.exit_code == EXIT_INPUT_CHANGED, describe(result)
    error = [x for x in result.stderr.splitlines() if x.startswith("digest: error: ")]
    assert len(error) == 1 and "Traceback" not in result.stderr
    for needle in needles:
        assert needle in error[0], (needle, error[0])
    return result


def edit_manifest(site, edit) -> dict:
    m = load(site["manifest"])
    edit(m)
    site["manifest"].write_text(json.dumps(m), encoding="utf-8")
    return m


def other_section_seed(m: dict) -> list[str]:
    section = m["sections"][3]
    section["seed"] += 1
    return ["contradicts itself", f"section '{section['key']}' has seed {section['seed']}",
            f"run seed 11 gives it {section['seed'] - 1}"]


CONTRADICTIONS = {
    "run seed": lambda m: m.update(seed=999) or ["contradicts itself", "its seed is 999", "config's [generation] seed 11"],
    "section seed": other_section_seed,
    "newer format": lambda m: m.update(format=99) or ["format 99, newer than this digest reads (1)", "release that wrote it"],
    "format a string": lambda m: m.update(format="1") or ["unknown format '1'", "reads format 1"],
    "format 0": lambda m: m.update(format=0) or ["unknown format 0"],
    "sampling": lambda m: m["sampling"].update(temperature=0.6) or [
        "contradicts itself", "its sampling has temperature 0.6", "config's [generation] temperature 0.5"],
    # The case: with the seed 999 and the post's sha256 zeros, replay said 'identical'.
    "seed and post": lambda m: m.update(seed=999) or m["post"].update(sha256="0" * 64) or ["its seed is 999"],
}


def test_replay_refuses_a_manifest_that_contradicts_itself(run_cli, site):
    """Each claim edited alone is refused (exit 9, its own line), and before the post, the prompts or
    the model are looked at: the manifest's own claims come first."""
    written = site["manifest"].read_text(encoding="utf-8")
    site["model"].unlink()
    edit_by_hand(site["post"])
    for edit in CONTRADICTIONS.values():
        m = json.loads(written)
        needles = edit(m)
        site["manifest"].write_text(json.dumps(m), encoding="utf-8")
        refused(run_cli, site, str(site["manifest"]), *needles)


def test_replay_refuses_a_changed_prompt(run_cli, site):
    template = site["prompts"] / "benefits.txt"
    before = sha(template.read_bytes())
    template.write_text(template.read_text(encoding="utf-8") + "\nBe brief.\n", encoding="utf-8")
    refused(run_cli, site, str(template.resolve()), before, sha(template.read_bytes()))


def test_replay_refuses_a_missing_model(run_cli, site):
    site["model"].unlink()
    refused(run_cli, site, str(site["model"].resolve()), "missing")


def test_replay_refuses_a_changed_model(run_cli, site):
    site["model"].write_bytes(site["model"].read_bytes()[:-1] + b"!")
    refused(run_cli, site, str(site["model"].resolve()), "sha256 expected")


def test_replay_refuses_a_changed_snapshot_file(run_cli, site):
    m = load(site["manifest"])
    target = site["out"] / m["feeds"]["directory"] / "trending.xml"
    target.write_bytes(TRENDING + b"\n")
    refused(run_cli, site, str(target), sha(TRENDING), sha(TRENDING + b"\n"))


def test_replay_refuses_an_edited_config_in_the_manifest(run_cli, site):
    m = load(site["manifest"])
    m["config"]["effective"]["generation"]["seed"] = 12
    site["manifest"].write_text(json.dumps(m), encoding="utf-8")
    refused(run_cli, site, "config", m["config"]["sha256"])


def test_a_manifest_of_an_older_release_replays(run_cli, site):
    """Written before [generation] sections, example_kinds and the server and cache settings of [model]
    existed: those keys are missing from its config, which hashed without them, and take their defaults
    on replay, or what they stood for then (config.BEFORE_THE_KEY). The post is made as that release
    made it: every example before every section (the fake engine's text depends on the prompt)."""
    config = site["config"]
    config.write_text(config.read_text(encoding="utf-8") + 'example_kinds = "all"\nguard = false\n'
                      'sentence_attempts = 1\n[model]\ncache_type_k = "f16"\n', encoding="utf-8")
    out = site["out"].parent / "older"
    made = run_cli("run", "--config", config, "--prompts", site["prompts"], "--model", site["model"], "--out", out,
                   "--date", DAY)
    assert made.exit_code == 0, describe(made)
    site["manifest"] = out / ".digest" / "manifests" / f"{DAY}.json"
    m = load(site["manifest"])
    effective = m["config"]["effective"]
    del effective["generation"]["sections"]
    for key in ("example_kinds", "guard", "sentence_attempts", "point_bias", "topic_bias", "hold_to_min_words"):
        del effective["generation"][key]
    for key in ("url", "name", "api_key_env", "concurrency", "timeout", "retries", "grammar", "stream", "cache_type_k"):
        del effective["model"][key]
    m["config"]["sha256"] = config_sha256(effective)
    site["manifest"].write_text(json.dumps(m), encoding="utf-8")
    result = run_cli("replay", site["manifest"])
    assert result.exit_code == 0, describe(result)
    assert result.stdout.startswith("identical")


def test_replay_of_a_missing_or_foreign_manifest(run_cli, tmp_path):
    result = run_cli("replay", tmp_path / "nope.json")
    assert result.exit_code == EXIT_INPUT_CHANGED and str(tmp_path / "nope.json") in result.stderr
    other = tmp_path / "other.json"
    other.write_text('{"format": 1}', encoding="utf-8")
    result = run_cli("replay", other)
    assert result.exit_code == EXIT_INPUT_CHANGED, describe(result)
    assert "not a digest manifest" in result.stderr and "Traceback" not in result.stderr


def test_run_from_an_outside_snapshot_replays_from_it(run_cli, site, tmp_path, http_server):
    """A --snapshot run's manifest names the snapshot where it lies, and replay reads it there,
    neither of them asking the feeds' server for anything."""
    fetched = len(http_server.seen)
    m = load(site["manifest"])
    outside = tmp_path / "carried"
    shutil.copytree(site["out"] / m["feeds"]["directory"], outside)
    out = tmp_path / "server-site"
    result = run_cli("run", "--config", site["config"], "--prompts", site["prompts"], "--model", site["model"],
                     "--snapshot", outside, "--out", out, "--date", DAY)
    assert result.exit_code == 0, describe(result)
    assert Path(result.stdout.strip()).read_bytes() == site["post"].read_bytes()
    manifest = out / ".digest" / "manifests" / f"{DAY}.json"
    assert load(manifest)["feeds"]["directory"] == str(outside.resolve())
    assert not (out / ".digest" / "snapshots").exists()
    assert run_cli("replay", manifest).exit_code == 0
    assert len(http_server.seen) == fetched


def test_replay_skips_what_history_skipped(run_cli, site):
    """Day two skips day one's topics (history); its replay, in a folder with no history, must too."""
    args = ["--config", site["config"], "--prompts", site["prompts"], "--model", site["model"], "--out", site["out"],
            "--topics", 3]
    assert run_cli("run", *args, "--date", "2026-03-01").exit_code == 0
    second = run_cli("run", *args, "--date", "2026-03-02")
    assert second.exit_code == 0, describe(second)
    m = load(site["out"] / ".digest" / "manifests" / "2026-03-02.json")
    assert [t["title"] for t in m["topics"]] == TOPIC_TITLES[3:6]
    assert len(m["covered"]["ids"]) >= 3
    result = run_cli("replay", site["out"] / ".digest" / "manifests" / "2026-03-02.json")
    assert result.exit_code == 0, describe(result)
