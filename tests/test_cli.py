"""The `digest` command, end to end with the fake engine (no model), plus the errors a user meets first."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import date, datetime
from pathlib import Path

import frontmatter
import pytest

from conftest import TOPIC_TITLES, TRENDING_TITLES, describe
from digest.config import CONFIG_NAME, Config, load_config
from digest.errors import EXIT_CONFIG, EXIT_FEED, EXIT_MODEL, EXIT_OUTPUT, EXIT_USAGE
from digest.resources import samples_dir
from digest.markdown import unescape_inline

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DAY = "2026-01-02"
POST_NAME = f"{DAY}-ai-auto-summary.md"
ATOM = "{http://www.w3.org/2005/Atom}"
DEFAULT_MODEL_STEM = Config().model_path.stem

TOPIC_LINE = re.compile(r"^(\d+)\. \*\*(.*)\*\*$", re.M)
TRENDING_SECTION = re.compile(r"^## Currently trending topics\n+((?:- .*\n)+)", re.M)
PREDICTION_LINE = re.compile(r"^- \*\*(.+?)\*\* \(([A-Z][a-z]+) (\d{4})\): (.+)$", re.M)


def post_file(out: Path) -> Path:
    return out / "content" / "posts" / POST_NAME


def fake_run(run_cli, out: Path, *extra):
    return run_cli("run", "--engine", "fake", "--sample-feeds", "--out", out, "--date", DAY, *extra)


def without_date_line(text: str) -> str:
    lines = text.split("\n")
    dated = [n for n, line in enumerate(lines) if line.startswith("date: ")]
    assert len(dated) == 1
    del lines[dated[0]]
    return "\n".join(lines)


def topic_titles(text: str) -> list[str]:
    found = TOPIC_LINE.findall(text)
    assert [int(n) for n, _ in found] == list(range(1, len(found) + 1))
    return [unescape_inline(title) for _, title in found]


def trending_items(text: str) -> list[str]:
    match = TRENDING_SECTION.search(text)
    assert match, text
    return [unescape_inline(line[2:]) for line in match.group(1).splitlines()]


def sample_titles(name: str) -> list[str]:
    root = ET.parse(samples_dir() / f"{name}.xml").getroot()
    return [e.findtext(f"{ATOM}title") for e in root.findall(f"{ATOM}entry")]


def no_post_written(out: Path) -> bool:
    return not (out / "content").exists() or not any((out / "content").rglob("*.md"))


# ---------------------------------------------------------------------------------------------
# A successful run


def test_run_writes_post_and_prints_its_path(run_cli, tmp_path):
    out = tmp_path / "site"
    result = fake_run(run_cli, out)
    assert result.exit_code == 0, describe(result)
    path = post_file(out)
    assert path.is_file()
    assert result.stdout.splitlines()[-1] == str(path)
    assert "Traceback" not in result.stdout + result.stderr
    assert not list(path.parent.glob("*.part")), "temporary file left behind"


def test_written_post_front_matter(run_cli, tmp_path):
    result = fake_run(run_cli, tmp_path)
    assert result.exit_code == 0, describe(result)
    post = frontmatter.loads(post_file(tmp_path).read_text(encoding="utf-8"))
    meta = post.metadata
    defaults = Config().blog
    assert meta["title"] == defaults.title
    assert meta["author"] == defaults.author
    assert meta["draft"] is False
    assert meta["tags"] == [*defaults.tags, DEFAULT_MODEL_STEM]
    assert meta["showToc"] is True and meta["tocOpen"] is False
    assert set(meta["cover"]) == {"image", "alt", "hidden"}
    when = meta["date"]
    if isinstance(when, str):
        when = datetime.fromisoformat(when.replace("Z", "+00:00"))
    assert when.date() == date.fromisoformat(DAY)
    assert post.content.startswith("> *Notice:* ")


def test_model_stem_is_the_last_tag(run_cli, tmp_path):
    model = tmp_path / "models" / "TinyLlama-1.1B-Chat.Q8_0.gguf"
    result = fake_run(run_cli, tmp_path / "site", "--model", model)
    assert result.exit_code == 0, describe(result)
    meta = frontmatter.loads(post_file(tmp_path / "site").read_text(encoding="utf-8")).metadata
    assert meta["tags"][-1] == model.stem


def test_title_and_author_flags(run_cli, tmp_path):
    result = fake_run(run_cli, tmp_path, "--title", 'My "daily" digest', "--author", "Test Bot")
    assert result.exit_code == 0, describe(result)
    meta = frontmatter.loads(post_file(tmp_path).read_text(encoding="utf-8")).metadata
    assert meta["title"] == 'My "daily" digest'
    assert meta["author"] == "Test Bot"


def test_post_body_from_sample_feeds(run_cli, tmp_path):
    result = fake_run(run_cli, tmp_path)
    assert result.exit_code == 0, describe(result)
    text = post_file(tmp_path).read_text(encoding="utf-8")

    raw_topics = sample_titles("topics")
    untagged = [re.sub(r"^\[[A-Za-z]+\]\s*", "", t) for t in raw_topics]
    # The fourth sample entry retells the first; the post has the six others, in feed order.
    assert topic_titles(text) == [untagged[i] for i in (0, 1, 2, 4, 5, 6)]
    for title in topic_titles(text):
        assert not re.search(r"\[[A-Z]\]", title)

    # Trending: the sample's first headline is the first topic again, so it is left out.
    assert trending_items(text) == sample_titles("trending")[1:4]

    # Every topic has both paragraphs, each a finished sentence, and they differ.
    paragraphs = re.findall(r"^   - \*(Benefits|Ramifications):\*\n\n     (.+)$", text, re.M)
    assert [kind for kind, _ in paragraphs] == ["Benefits", "Ramifications"] * 6
    assert all(p.endswith((".", "!", "?")) for _, p in paragraphs)
    for i in range(0, len(paragraphs), 2):
        assert paragraphs[i][1] != paragraphs[i + 1][1]

    predictions = PREDICTION_LINE.findall(text)
    assert [p[0] for p in predictions] == ["Artificial general intelligence", "Technological singularity"]
    assert all(int(year) > 2026 for _, _, year, _ in predictions)


def test_feeds_from_folder_with_counts(run_cli, tmp_path, write_feeds):
    feeds = write_feeds()
    out = tmp_path / "site"
    result = run_cli("run", "--engine", "fake", "--feeds-from", feeds, "--out", out, "--date", DAY,
                     "--topics", 3, "--trending", 2, "--quiet")
    assert result.exit_code == 0, describe(result)
    assert result.stdout.strip() == str(post_file(out))  # --quiet: only the path
    text = post_file(out).read_text(encoding="utf-8")
    assert topic_titles(text) == TOPIC_TITLES[:3]
    assert trending_items(text) == TRENDING_TITLES[:2]


def test_fewer_entries_than_wanted_warns(run_cli, tmp_path, write_feeds):
    feeds = write_feeds(topics=TOPIC_TITLES[:2])
    result = run_cli("run", "--engine", "fake", "--feeds-from", feeds, "--out", tmp_path, "--date", DAY)
    assert result.exit_code == 0, describe(result)
    assert topic_titles(post_file(tmp_path).read_text(encoding="utf-8")) == TOPIC_TITLES[:2]
    # (The fake engine's own warning aside: it applies none of the prevention.)
    warnings = [line for line in result.stderr.splitlines() if "warning" in line and "fake engine" not in line]
    assert len(warnings) == 1, describe(result)
    assert "topics" in warnings[0] and "2" in warnings[0] and str(len(TOPIC_TITLES[:6])) in warnings[0]


def test_second_run_keeps_existing_post(run_cli, tmp_path):
    first = fake_run(run_cli, tmp_path)
    assert first.exit_code == 0, describe(first)
    path = post_file(tmp_path)
    before = path.read_bytes()
    mtime = path.stat().st_mtime_ns

    second = fake_run(run_cli, tmp_path, "--seed", 999)
    assert second.exit_code == 0, describe(second)
    assert path.read_bytes() == before
    assert path.stat().st_mtime_ns == mtime
    assert "exists" in second.stderr
    assert second.stdout.splitlines()[-1] == str(path)


def test_force_rewrites(run_cli, tmp_path):
    assert fake_run(run_cli, tmp_path).exit_code == 0
    path = post_file(tmp_path)
    original = path.read_text(encoding="utf-8")
    path.write_text("scribbled over\n", encoding="utf-8")

    result = fake_run(run_cli, tmp_path, "--force")
    assert result.exit_code == 0, describe(result)
    rewritten = path.read_text(encoding="utf-8")
    assert rewritten != "scribbled over\n"
    assert without_date_line(rewritten) == without_date_line(original)


def test_same_seed_same_post_other_seed_other_text(run_cli, tmp_path):
    texts = {}
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        result = fake_run(run_cli, tmp_path / name, "--seed", seed)
        assert result.exit_code == 0, describe(result)
        texts[name] = post_file(tmp_path / name).read_text(encoding="utf-8")
    assert without_date_line(texts["a"]) == without_date_line(texts["b"])
    assert without_date_line(texts["a"]) != without_date_line(texts["c"])
    # A new seed changes the generated text, not what the feeds decided.
    assert topic_titles(texts["a"]) == topic_titles(texts["c"])
    assert trending_items(texts["a"]) == trending_items(texts["c"])


def test_run_uses_digest_toml_in_working_directory(run_cli, tmp_path, monkeypatch):
    (tmp_path / CONFIG_NAME).write_text(
        '[blog]\nauthor = "Config Author"\n\n[feeds.topics]\ncount = 5\n\n[output]\ndir = "hugo"\n',
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    result = run_cli("run", "--engine", "fake", "--sample-feeds", "--date", DAY)
    assert result.exit_code == 0, describe(result)
    path = post_file(tmp_path / "hugo")
    assert result.stdout.splitlines()[-1] == str(path) or Path(result.stdout.splitlines()[-1]).resolve() == path
    text = path.read_text(encoding="utf-8")
    assert frontmatter.loads(text).metadata["author"] == "Config Author"
    assert len(topic_titles(text)) == 5


# ---------------------------------------------------------------------------------------------
# init


def test_init_writes_loadable_default_config(run_cli, tmp_path):
    path = tmp_path / "conf" / CONFIG_NAME
    result = run_cli("init", path)
    assert result.exit_code == 0, describe(result)
    assert path.is_file()
    assert load_config(path) == Config()


def test_init_default_path_is_cwd(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_cli("init")
    assert result.exit_code == 0, describe(result)
    assert (tmp_path / CONFIG_NAME).is_file()
    assert load_config(None, cwd=tmp_path) == Config()


def test_init_refuses_to_overwrite(run_cli, tmp_path):
    path = tmp_path / CONFIG_NAME
    path.write_text("# mine\n[blog]\nauthor = 'me'\n", encoding="utf-8")
    before = path.read_bytes()

    result = run_cli("init", path)
    assert result.exit_code == EXIT_OUTPUT, describe(result)
    assert path.read_bytes() == before
    assert result.stderr.startswith("digest: error:") and "--force" in result.stderr

    result = run_cli("init", path, "--force")
    assert result.exit_code == 0, describe(result)
    assert path.read_bytes() != before
    assert load_config(path) == Config()


# ---------------------------------------------------------------------------------------------
# Help


def test_run_help_lists_options(run_cli):
    result = run_cli("run", "--help")
    assert result.exit_code == 0, describe(result)
    for option in ("--seed", "--date", "--feeds-from", "--out", "--model", "--engine", "--force", "--sample-feeds"):
        assert option in result.stdout, option


def digest_executable() -> Path:
    for candidate in (Path(sys.executable).parent / "digest", PROJECT_ROOT / ".venv" / "bin" / "digest"):
        if candidate.is_file():
            return candidate
    pytest.skip("no installed `digest` script")


def test_installed_script_help():
    proc = subprocess.run([str(digest_executable()), "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for command in ("run", "init", "check"):
        assert re.search(rf"^\s+{command}\s", proc.stdout, re.M), proc.stdout
    assert proc.stderr == ""


def test_installed_script_error_is_one_line(tmp_path):
    missing = tmp_path / "missing.toml"
    proc = subprocess.run([str(digest_executable()), "run", "--config", str(missing), "--engine", "fake",
                           "--sample-feeds", "--out", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == EXIT_CONFIG
    assert proc.stderr.splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith("digest: error:") and str(missing) in proc.stderr
    assert proc.stdout == ""
    assert no_post_written(tmp_path)


# ---------------------------------------------------------------------------------------------
# The errors a user meets first: one line, a specific exit code, no traceback, no post


def assert_one_error(result, code: int, *needles: str) -> str:
    assert result.exit_code == code, describe(result)
    assert result.stdout == "", describe(result)
    everything = result.stdout + result.stderr
    assert "Traceback" not in everything
    lines = result.stderr.splitlines()
    errors = [line for line in lines if line.startswith("digest: error:")]
    assert len(errors) == 1, describe(result)
    assert lines[-1] == errors[0], "the error is the last thing said"
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]


def error_cases(tmp_path: Path, write_feeds) -> dict[str, tuple[list, int, tuple[str, ...]]]:
    empty = tmp_path / "empty-feeds"
    empty.mkdir()
    not_gguf = tmp_path / "model.gguf"
    not_gguf.write_bytes(b"PK\x03\x04 this is a zip, not a model" * 10)
    bad_config = tmp_path / "bad.toml"
    bad_config.write_text("[generation]\nseed = 1\nsede = 2\n", encoding="utf-8")
    html_feeds = write_feeds(directory=tmp_path / "html-feeds")
    (html_feeds / "topics.xml").write_bytes(b"<!DOCTYPE html><html><body><p>Too many requests</p></body></html>")
    half_feeds = write_feeds(trending=None, directory=tmp_path / "half-feeds")
    fake = ["--engine", "fake", "--sample-feeds"]
    return {
        "missing-config": (["--config", tmp_path / "nope.toml", *fake], EXIT_CONFIG,
                           (str(tmp_path / "nope.toml"), "digest init")),
        "bad-config-line": (["--config", bad_config, *fake], EXIT_CONFIG, (f"{bad_config.resolve()}:3", "sede")),
        "topics-0": (["--topics", 0, *fake], EXIT_CONFIG, ("--topics",)),
        "trending-99": (["--trending", 99, *fake], EXIT_CONFIG, ("--trending",)),
        "unknown-engine": (["--engine", "warp", "--sample-feeds"], EXIT_CONFIG, ("--engine", "warp")),
        "empty-feeds-dir": (["--engine", "fake", "--feeds-from", empty], EXIT_FEED, (str(empty / "topics.xml"),)),
        "missing-trending": (["--engine", "fake", "--feeds-from", half_feeds], EXIT_FEED,
                             (str(half_feeds / "trending.xml"),)),
        "html-feed": (["--engine", "fake", "--feeds-from", html_feeds], EXIT_FEED, (str(html_feeds / "topics.xml"),)),
        "missing-model": (["--engine", "sequential", "--sample-feeds", "--model", "/nonexistent.gguf"], EXIT_MODEL,
                          ("/nonexistent.gguf", "make install", "--model")),
        "not-gguf": (["--engine", "sequential", "--sample-feeds", "--model", not_gguf], EXIT_MODEL,
                     (str(not_gguf), "GGUF")),
    }


CASES = ["missing-config", "bad-config-line", "topics-0", "trending-99", "unknown-engine", "empty-feeds-dir",
         "missing-trending", "html-feed", "missing-model", "not-gguf"]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("quiet", [False, True], ids=["verbose", "quiet"])
def test_user_errors(run_cli, tmp_path, write_feeds, case, quiet):
    args, code, needles = error_cases(tmp_path, write_feeds)[case]
    out = tmp_path / "site"
    result = run_cli("run", *args, "--out", out, "--date", DAY, *(["--quiet"] if quiet else []))
    line = assert_one_error(result, code, *needles)
    if quiet:
        assert result.stderr.splitlines() == [line]
    assert no_post_written(out)
    assert not out.exists() or not any(out.rglob("*.part"))


def test_bad_date_is_a_usage_error(run_cli, tmp_path):
    result = fake_run_with_date(run_cli, tmp_path, "2026-13-45")
    assert result.exit_code == EXIT_USAGE, describe(result)
    assert "Traceback" not in result.stdout + result.stderr
    assert "--date" in result.stdout + result.stderr
    assert no_post_written(tmp_path)


def fake_run_with_date(run_cli, out: Path, day: str):
    return run_cli("run", "--engine", "fake", "--sample-feeds", "--out", out, "--date", day)


def test_existing_post_is_checked_before_the_model(run_cli, tmp_path):
    # A post already there: nothing to do, so a missing model does not matter.
    assert fake_run(run_cli, tmp_path).exit_code == 0
    result = run_cli("run", "--sample-feeds", "--model", "/nonexistent.gguf", "--out", tmp_path, "--date", DAY)
    assert result.exit_code == 0, describe(result)
    assert "exists" in result.stderr


# ---------------------------------------------------------------------------------------------
# Structure: where a run writes, and who imports whom


def test_the_slots_flag_is_the_runs_slot_count(run_cli, tmp_path):
    """`run --slots 3` runs and records 3 slots (test_e2e shows the real model's bytes unchanged by it)."""
    import json

    assert fake_run(run_cli, tmp_path, "--slots", 3).exit_code == 0
    manifest = json.loads((tmp_path / ".digest" / "manifests" / f"{DAY}.json").read_text(encoding="utf-8"))
    assert manifest["generation"]["slots"] == manifest["engine"]["slots"] == 3


def test_every_file_a_run_writes_is_a_path_of_the_site_layout(run_cli, tmp_path, write_feeds):
    from digest.site import Site

    out = tmp_path / "site"
    # (From a feeds folder: a run from the bundled samples leaves the history alone.)
    assert run_cli("run", "--engine", "fake", "--feeds-from", write_feeds(), "--out", out, "--date", DAY).exit_code == 0
    site, day = Site(out), date.fromisoformat(DAY)
    written = {p for p in out.rglob("*") if p.is_file()}
    # (The hash cache is there when the embedded model is: the manifest records the model's sha256.)
    assert written - {site.hash_cache} == {site.post(day), site.manifest(day), site.lock, site.history}, written


def test_models_commands_do_not_import_the_main_cli():
    """`digest models` reaches the console through digest.console, not through digest.cli (no cycle)."""
    code = "import sys, digest.models.cli; print('digest.cli' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=PROJECT_ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
