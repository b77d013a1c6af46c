"""digest.config: the default file, validation with file:line messages, loading, command-line flags."""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from digest.config import BEFORE_THE_KEY, CONFIG_NAME, Config, apply_flags, default_toml, load_config, parse_config
from digest.engine import Sampling
from digest.errors import EXIT_CONFIG, ConfigError


def line_of(text: str, needle: str) -> int:
    """1-based number of the only line of `text` that contains `needle`."""
    hits = [n for n, line in enumerate(text.splitlines(), start=1) if needle in line]
    assert len(hits) == 1, (needle, hits)
    return hits[0]


def config_error(text: str, path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, path)
    assert info.value.exit_code == EXIT_CONFIG
    message = str(info.value)
    assert "\n" not in message
    return message


SOURCE = Path("/site/digest.toml")


# ---------------------------------------------------------------------------------------------
# The default file


def test_default_toml_equals_dataclass_defaults():
    assert parse_config(default_toml()) == Config()


def dataclass_keys(cls, prefix=()) -> set[tuple[str, ...]]:
    keys = set()
    for f in dataclasses.fields(cls):
        if f.metadata.get("internal"):
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            keys |= dataclass_keys(type(default), (*prefix, f.name))
        else:
            keys.add((*prefix, f.name))
    return keys


def toml_keys(data: dict, prefix=()) -> set[tuple[str, ...]]:
    keys = set()
    for name, value in data.items():
        if isinstance(value, dict):
            keys |= toml_keys(value, (*prefix, name))
        else:
            keys.add((*prefix, name))
    return keys


UNSET = {("generation", name) for name in ("temperature", "top_k", "top_p", "min_p")}  # None: the model's


def test_default_toml_writes_out_every_setting():
    # Equality alone would pass with keys left out; the commented file documents every one. A setting
    # that is unset by default (the sampling the model registry recommends) is written commented out,
    # with the engines' default: uncommented, the file still reads, and sets it.
    text = default_toml()
    assert toml_keys(tomllib.loads(text)) == dataclass_keys(Config) - UNSET
    shown = re.sub(r"(?m)^# ((?:temperature|top_k|top_p|min_p) = )", r"\1", text)
    assert toml_keys(tomllib.loads(shown)) == dataclass_keys(Config)
    assert parse_config(shown).sampling == Sampling()  # the engines' defaults, as written
    assert all(getattr(Config().generation, name) is None for _, name in UNSET)


def test_parse_config_keeps_source_and_empty_text_is_defaults():
    config = parse_config("", SOURCE)
    assert config == Config()
    assert config.source == SOURCE


def test_values_are_read():
    text = '[generation]\nseed = 7\ntemperature = 0\n[feeds.topics]\ncount = 5\n[blog]\ntags = ["a", "b"]\n'
    config = parse_config(text)
    assert config.generation.seed == 7
    assert config.generation.temperature == 0.0 and isinstance(config.generation.temperature, float)
    assert config.feeds.topics.count == 5
    assert config.feeds.trending.count == Config().feeds.trending.count
    assert config.blog.tags == ["a", "b"]


def test_a_table_keeps_its_parents_defaults_for_keys_it_does_not_set():
    config = parse_config('[feeds.topics]\nurl = "http://127.0.0.1:9/feed"\n[feeds.trending]\nmirrors = ["http://m/"]\n')
    assert config.feeds.topics.url == "http://127.0.0.1:9/feed"
    assert config.feeds.topics.count == Config().feeds.topics.count == 6
    assert config.feeds.trending.url == Config().feeds.trending.url
    assert config.feeds.trending.urls == [Config().feeds.trending.url, "http://m/"]


# ---------------------------------------------------------------------------------------------
# Errors name the file and the line


def test_unknown_key_names_key_and_line():
    text = "# comment\n[blog]\nauthor = 'x'\n\n[generation]\nseed = 3\nsede = 4\ntop_k = 2\n"
    message = config_error(text, SOURCE)
    assert f"{SOURCE}:{line_of(text, 'sede')}" in message
    assert "generation.sede" in message


def test_unknown_section_names_its_header_line():
    text = "[blog]\ntitle = 'x'\n[blog.covr]\nimage = 'a.png'\n"
    message = config_error(text, SOURCE)
    assert f"{SOURCE}:{line_of(text, 'covr')}" in message
    assert "blog.covr" in message


def test_unknown_top_level_table():
    text = "\n\n[generaton]\nseed = 1\n"
    message = config_error(text, SOURCE)
    assert f"{SOURCE}:3" in message and "generaton" in message


def test_error_line_is_that_of_the_right_table():
    # The same key in two tables: the bad one is the second.
    text = "[feeds.topics]\ncount = 6\n\n[feeds.trending]\ncount = 999\n"
    message = config_error(text, SOURCE)
    assert f"{SOURCE}:5" in message
    assert "feeds.trending.count" in message and "999" in message


@pytest.mark.parametrize(
    "section, line, key",
    [
        ("[generation]", "seed = 'forty-two'", "generation.seed"),
        ("[generation]", "seed = true", "generation.seed"),
        ("[generation]", "temperature = 'hot'", "generation.temperature"),
        ("[blog]", "draft = 'no'", "blog.draft"),
        ("[blog]", "author = 3", "blog.author"),
        ("[blog]", "tags = 'one'", "blog.tags"),
        ("[blog]", "tags = ['a', 2]", "blog.tags"),
        ("[feeds.topics]", "count = 2.5", "feeds.topics.count"),
    ],
)
def test_wrong_type_names_key_and_line(section, line, key):
    text = f"# settings\n\n{section}\n# the next line is wrong\n{line}\n"
    message = config_error(text, SOURCE)
    assert f"{SOURCE}:5" in message
    assert key in message


@pytest.mark.parametrize(
    "section, line, key",
    [
        ("[feeds.topics]", "count = 0", "feeds.topics.count"),
        ("[feeds.trending]", "count = 51", "feeds.trending.count"),
        ("[generation]", "seed = -1", "generation.seed"),
        ("[generation]", "top_p = 1.5", "generation.top_p"),
        ("[generation]", "max_tokens = 0", "generation.max_tokens"),
        ("[feeds]", "timeout = 0", "feeds.timeout"),
        ("[generation]", "engine = 'turbo'", "generation.engine"),
    ],
)
def test_out_of_range_names_key_and_line(section, line, key):
    text = f"[blog]\nauthor = 'me'\n\n{section}\n{line}\n"
    message = config_error(text, SOURCE)
    assert f"{SOURCE}:5" in message
    assert key in message
    value = line.split("=", 1)[1].strip().strip("'")
    assert value in message


def test_table_expected():
    message = config_error("blog = 3\n", SOURCE)
    assert f"{SOURCE}:1" in message and "blog" in message


def test_invalid_toml():
    message = config_error("[generation\nseed = 1\n", SOURCE)
    assert str(SOURCE) in message
    assert "TOML" in message


@pytest.mark.parametrize(
    "text, needle",
    [
        ("[feeds]\ntimeout = 5.0\ntopics.cunt = 3\n", "cunt"),
        ("# top\n\ngeneration.seedd = 3\n", "seedd"),
    ],
)
def test_dotted_key_error_has_its_line(text, needle):
    message = config_error(text, SOURCE)
    assert f"{SOURCE}:{line_of(text, needle)}:" in message


@pytest.mark.parametrize("line", ["temperature = nan", "top_p = nan", "min_p = -nan"])
def test_nan_is_rejected(line):
    config_error(f"[generation]\n{line}\n", SOURCE)


# ---------------------------------------------------------------------------------------------
# load_config


def test_load_config_missing_explicit_path(tmp_path):
    missing = tmp_path / "nope" / "digest.toml"
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    message = str(info.value)
    assert str(missing) in message
    assert "digest init" in message


def test_load_config_without_file_gives_defaults(tmp_path):
    config = load_config(None, cwd=tmp_path)
    assert config == Config()
    assert config.source is None


def test_load_config_uses_digest_toml_in_cwd(tmp_path):
    (tmp_path / CONFIG_NAME).write_text('[blog]\nauthor = "Someone"\n[model]\npath = "weights/m.gguf"\n', encoding="utf-8")
    config = load_config(None, cwd=tmp_path)
    assert config.blog.author == "Someone"
    assert config.source == (tmp_path / CONFIG_NAME).resolve()
    # Relative paths are relative to the config file's folder, not to the working directory.
    assert config.model_path == tmp_path.resolve() / "weights" / "m.gguf"


def test_load_config_error_names_the_file(tmp_path):
    path = tmp_path / "custom.toml"
    path.write_text("[generation]\n\nseed = 'x'\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert f"{path.resolve()}:3" in str(info.value)


def test_load_config_directory_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError):
        load_config(tmp_path)


def test_default_paths_point_into_the_project():
    config = Config()
    root = Path(__file__).resolve().parents[1]
    assert config.prompts_path == root / "prompts"
    assert config.model_path.parent == root / "models"
    assert config.model_path.suffix == ".gguf"


# ---------------------------------------------------------------------------------------------
# apply_flags


def test_apply_flags_sets_values_and_skips_none():
    config = Config()
    apply_flags(config, {
        "generation.seed": ("--seed", 123),
        "feeds.topics.count": ("--topics", 4),
        "generation.temperature": ("--temperature", 1),
        "blog.author": ("--author", None),
    })
    assert config.generation.seed == 123
    assert config.feeds.topics.count == 4
    assert config.generation.temperature == 1.0
    assert config.blog.author == Config().blog.author


@pytest.mark.parametrize(
    "dotted, flag, value",
    [
        ("feeds.topics.count", "--topics", 0),
        ("feeds.trending.count", "--trending", 51),
        ("generation.seed", "--seed", -5),
        ("generation.top_p", "--top-p", 2.0),
        ("generation.max_tokens", "--max-tokens", 0),
        ("generation.engine", "--engine", "warp"),
        ("generation.seed", "--seed", "abc"),
    ],
)
def test_apply_flags_rejects_bad_values_naming_the_flag(dotted, flag, value):
    config = Config()
    before = dataclasses.asdict(config)
    with pytest.raises(ConfigError) as info:
        apply_flags(config, {dotted: (flag, value)})
    message = str(info.value)
    assert message.startswith(flag)
    assert str(value) in message
    # The flag, not the config key, is what the user typed.
    assert dotted not in message
    assert dataclasses.asdict(config) == before


# ---------------------------------------------------------------------------------------------
# More bad values, each with its line


@pytest.mark.parametrize(
    "text, line, needle",
    [
        ("[blog]\ntitle = 'a'\ntitle = 'b'\n", 3, "invalid TOML"),  # a key given twice
        ("# top\n[generation\nseed = 1\n", 2, "invalid TOML"),
        ("[generation]\nseed = 1\n\nbad line here\n", 4, "invalid TOML"),
    ],
)
def test_invalid_toml_names_its_line(text, line, needle):
    message = config_error(text, SOURCE)
    assert message.startswith(f"{SOURCE}:{line}: {needle}")


@pytest.mark.parametrize(
    "text, key",
    [
        ("[[feeds]]\nurl = 'x'\n", "feeds"),  # an array of tables where a table belongs
        ("[blog]\ncover = 3\n", "blog.cover"),  # a value where a sub-table belongs
        ("[generation]\ntemperature = true\n", "generation.temperature"),  # a bool is not a number
        ("[model]\nn_ctx = 99999999999999999999\n", "model.n_ctx"),  # beyond any range
        ("[blog.cover]\nhidden = 'yes'\n", "blog.cover.hidden"),
        ("[output]\ndir = 5\n", "output.dir"),
    ],
)
def test_more_bad_values_name_key_and_line(text, key):
    message = config_error(text, SOURCE)
    assert f"'{key}'" in message
    assert message.startswith(f"{SOURCE}:{1 if text.startswith('[[') else 2}:")


def test_config_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "digest.toml"
    path.write_bytes("[blog]\nauthor = 'Jos\xe9'\n".encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value) and "UTF-8" in str(info.value)


def test_a_recorded_config_without_a_newer_key_means_what_it_did_before_the_key():
    """A manifest of an older release was made with the f16 K cache and every example before every
    section: without the keys, those are the values, not today's defaults; with them, theirs."""
    from digest.config import config_from_dict, config_to_dict

    today = config_to_dict(Config())
    assert (today["model"]["cache_type_k"], today["generation"]["example_kinds"]) == ("q8_0", "own")
    assert config_from_dict(today) == Config()
    older = config_to_dict(Config())
    for table, key in BEFORE_THE_KEY:
        del older[table][key]
    read = config_from_dict(older)
    assert (read.model.cache_type_k, read.generation.example_kinds) == ("f16", "all")
    assert (Config().generation.fact_rule, read.generation.fact_rule) == (2, 1)  # 0.4 to 0.6's rule
    assert dataclasses.replace(read.model, cache_type_k="q8_0") == Config().model
    assert (read.generation.guard, read.generation.sentence_attempts, read.generation.point_bias,
            read.generation.topic_bias, read.generation.hold_to_min_words) == (False, 1, 0.0, 0.0, False)
    explicit = config_to_dict(Config())
    for (table, key), value in BEFORE_THE_KEY.items():
        explicit[table][key] = value
    assert config_from_dict(explicit) == read


def test_a_recorded_config_without_the_guard_keys_replays_without_prevention():
    """A 0.2 manifest (no guard keys) ran without the fact guard, rollback, point or topic bias."""
    from digest.config import config_from_dict, config_to_dict

    older = config_to_dict(Config())
    for key in ("guard", "sentence_attempts", "point_bias", "topic_bias", "hold_to_min_words"):
        del older["generation"][key]
    read = config_from_dict(older)
    assert (read.generation.guard, read.generation.sentence_attempts, read.generation.point_bias,
            read.generation.topic_bias, read.generation.hold_to_min_words) == (False, 1, 0.0, 0.0, False)
    assert read.model == Config().model and read.generation.example_kinds == "own"


def test_a_recorded_config_from_before_the_topic_bias_replays_without_it_and_without_the_hold():
    """A manifest with the guard keys but not `topic_bias` and `hold_to_min_words` (written before
    they came) ran with the guard, rollback and point bias it records, no topic bias, and a model
    free to end a paragraph early."""
    from digest.config import config_from_dict, config_to_dict

    older = config_to_dict(Config())
    for key in ("topic_bias", "hold_to_min_words"):
        del older["generation"][key]
    read = config_from_dict(older)
    g = read.generation
    assert (g.guard, g.sentence_attempts, g.point_bias, g.topic_bias, g.hold_to_min_words) == (True, 4, 2.0, 0.0, False)


def test_the_new_choices_are_checked_with_their_line():
    with pytest.raises(ConfigError, match=r"config:2.*cache_type_k.*q8_0, f16"):
        parse_config('[model]\ncache_type_k = "q4_0"\n')
    with pytest.raises(ConfigError, match=r"config:3.*example_kinds.*own, all"):
        parse_config('[generation]\nseed = 1\nexample_kinds = "mine"\n')
    with pytest.raises(ConfigError, match=r"config:2.*fact_rule.*must be one of 1, 2, not 3"):
        parse_config('[generation]\nfact_rule = 3\n')  # choices that are numbers, not words


# ---------------------------------------------------------------------------------------------
# Settings that contradict each other, or that no run could use, are refused when the file is read


@pytest.mark.parametrize("text, key, words", [
    ("[generation]\nmin_words = 200\nmax_words = 130\n", "min_words",
     "'generation.min_words' = 200 is more than 'generation.max_words' = 130 (min_words must be 1 to max_words)"),
    ("[generation]\nmax_words = 60\nmin_words = 61\n", "min_words", "'generation.min_words' = 61 is more than"),
    ("[generation]\nmin_words = 131\n", "min_words", "'generation.max_words' = 130"),
    ("[generation]\nmax_words = 5\n", "max_words", "'generation.max_words' = 5 is out of range (45 to 1000)"),
    ("[generation]\nmax_words = 44\n", "max_words", "out of range (45 to 1000)"),
    ("[generation]\nsections = []\n", "sections", "[generation] sections is empty: name at least one topic section"),
    ("[generation]\nsections = ['benefits', 'benefits']\n", "sections", "'benefits' is named twice"),
    ("[generation]\nsections = ['ramifications', 'benefits']\n", "sections", "must come after 'benefits'"),
    ("[generation]\nsections = ['nope']\n", "sections", "unknown section kind 'nope'"),
    ("[feeds.topics]\nurl = 'ftp://example.com/feed.xml'\n", "url",
     "'feeds.topics.url' must be an http:// or https:// URL, not 'ftp://example.com/feed.xml'"),
    ("[feeds.trending]\nurl = 'example.com/feed.xml'\n", "url", "must be an http:// or https:// URL"),
    ("[feeds.trending]\nurl = 'https://'\n", "url", "must be an http:// or https:// URL"),
    ("[feeds.trending]\nurl = 'file:///etc/hosts'\n", "url", "must be an http:// or https:// URL"),
    ("[feeds.topics]\nmirrors = ['https://ok.example/feed', 'ftp://mirror.example/feed']\n", "mirrors",
     "'feeds.topics.mirrors': each one must be an http:// or https:// URL, not 'ftp://mirror.example/feed'"),
])
def test_settings_no_run_could_use_are_refused_at_their_line(text, key, words):
    text = "# my digest\n\n[blog]\ntitle = 'x'\n" + text
    message = config_error(text, SOURCE)
    assert message.startswith(f"{SOURCE}:{line_of(text, key)}: "), message
    assert words in message, message


def test_the_edges_of_the_word_limits_and_feed_urls_are_accepted():
    config = parse_config("[generation]\nmin_words = 45\nmax_words = 45\n[feeds.topics]\nurl = 'HTTPS://Example.com/x'\n"
                          "mirrors = ['http://127.0.0.1:8000/feed']\n[feeds.trending]\nurl = ''\n")
    assert (config.generation.min_words, config.generation.max_words) == (45, 45)
    assert config.feeds.topics.urls == ["HTTPS://Example.com/x", "http://127.0.0.1:8000/feed"]


def test_a_run_with_contradicting_word_limits_exits_with_the_config_code(run_cli, tmp_path):
    path = tmp_path / "digest.toml"
    path.write_text("[generation]\nengine = 'fake'\nmin_words = 200\nmax_words = 130\n", encoding="utf-8")
    result = run_cli("run", "--config", path, "--sample-feeds", "--out", tmp_path / "site")
    assert result.exit_code == EXIT_CONFIG, result.stderr
    assert f"{path}:3: 'generation.min_words' = 200 is more than" in result.stderr
    assert not (tmp_path / "site").exists()


# ---------------------------------------------------------------------------------------------
# One value each: the engine's settings, the prevention


@pytest.mark.parametrize("table, key, value", [("model", "cache_type_k", "f16"), ("model", "thinking", True),
                                               ("model", "thinking_tokens", 64), ("generation", "engine", "sequential")])
def test_two_configs_that_differ_in_any_engine_setting_may_not_share_an_engine(table, key, value):
    """`digest run --config a --config b` runs b's sections on a's engine: b must ask for the same
    engine, or its post is written by settings its manifest does not name (and does not replay)."""
    from digest.config import check_one_engine

    a, b = Config(), Config()
    setattr(getattr(b, table), key, value)
    with pytest.raises(ConfigError) as info:
        check_one_engine([("a.toml", a), ("b.toml", b)])
    assert info.value.exit_code == EXIT_CONFIG and f"[{table}] {key}" in str(info.value)
    check_one_engine([("a.toml", a), ("a2.toml", Config())])


def test_the_engine_settings_are_read_from_a_config_in_one_place():
    from digest.engine import EngineSettings

    config = parse_config('[model]\ncache_type_k = "f16"\nthinking = true\nthinking_tokens = 64\nn_ctx = 4096\n'
                          '[generation]\nslots = 3\n')
    settings = config.engine_settings
    assert settings == EngineSettings("batched", config.model_path, None, n_ctx=4096, slots=3, cache_type_k="f16",
                                      thinking=True, thinking_tokens=64)
    served = parse_config('[model]\nurl = "http://gpu:8000/v1"\nthinking = true\n[generation]\nengine = "openai"\n')
    assert served.engine_settings.model_path is None and served.engine_settings.server.url == "http://gpu:8000/v1"
    assert served.engine_settings.server.thinking is True


def test_prevention_is_one_value_whose_defaults_are_what_ran_before_its_keys():
    """[generation]'s prevention settings as one `Prevention`; BEFORE_THE_KEY names each of them, at
    Prevention's defaults (none of it), so a manifest without them replays as it ran."""
    from digest.config import Prevention

    assert Config().generation.prevention == Prevention(True, 4, 2.0, 1.5, True)
    assert {key: value for (table, key), value in BEFORE_THE_KEY.items() if table == "generation"
            and key in {f.name for f in dataclasses.fields(Prevention)}} == dataclasses.asdict(Prevention())
    assert Prevention().asked() == {}
    assert Prevention(guard=True, topic_bias=1.0).asked() == {"guard": ("guard",), "bias": ("topic_bias",)}


# ---------------------------------------------------------------------------------------------
# Sampling: the model registry's recommendation where the config leaves a setting unset


QWEN3 = Sampling(temperature=0.7, top_k=20, top_p=0.8, min_p=0.0)  # the registry's qwen3-4b (its model card)


def qwen3(text: str = "") -> Config:
    """A config of `text` for the registry's qwen3-4b (its file need not be here: the entry is found by path)."""
    from digest.resources import models_dir

    return parse_config(f"[model]\npath = '{models_dir() / 'Qwen3-4B-Q4_K_M.gguf'}'\n{text}")


def test_unset_sampling_is_what_the_registry_recommends_for_the_model():
    """qwen3-4b's entry recommends four settings; the embedded model's two (what digest measured for it:
    temperature 0.5, top_p 0.9), and no top_k or min_p, which keep the engines' defaults; the repeat
    penalty is the config's, whatever the model."""
    assert qwen3().sampling == QWEN3 != Sampling()
    assert Config().sampling == Sampling(temperature=0.5, top_p=0.9) != Sampling()
    assert Config().sampling.repeat_penalty == Sampling().repeat_penalty == 1.1


def test_the_config_and_the_flags_win_over_the_recommendation():
    config = qwen3("[generation]\ntop_p = 0.5\nmin_p = 0.05\n")
    assert config.sampling == Sampling(temperature=0.7, top_k=20, top_p=0.5, min_p=0.05)
    apply_flags(config, {"generation.temperature": ("--temperature", 0.2), "generation.top_k": ("--top-k", 0)})
    assert config.sampling == Sampling(temperature=0.2, top_k=0, top_p=0.5, min_p=0.05)
    assert qwen3("[generation]\ntop_k = 0\n").sampling.top_k == 0  # 0 is set, not unset
    window = qwen3("[generation]\nrepeat_penalty = 1.0\nrepeat_last_n = 256\n").sampling
    assert (window.repeat_penalty, window.repeat_last_n, window.top_k) == (1.0, 256, 20)


def test_a_gguf_the_registry_does_not_know_keeps_the_engines_defaults(tmp_path):
    model = tmp_path / "Qwen3-4B-Q4_K_M.gguf"  # qwen3-4b's file name, in another folder
    model.write_bytes(b"GGUF")
    config = parse_config(f"[model]\npath = '{model}'\n")
    assert config.sampling == Sampling()


def test_a_model_behind_a_server_takes_its_entrys_recommendation_by_name():
    config = parse_config('[model]\nurl = "http://127.0.0.1:9/v1"\nname = "qwen3-4b"\n[generation]\nengine = "openai"\n')
    assert config.sampling == Sampling(temperature=0.7, top_k=20, top_p=0.8, min_p=0.0)
    config.model.name = "some-other-model"
    assert config.sampling == Sampling()


def test_unset_sampling_is_recorded_as_null_and_read_back_unset():
    """A manifest's config records an unset setting as null (JSON; TOML has none), and reads it back
    unset; a config file cannot write null, nor a value out of range."""
    from digest.config import config_from_dict, config_to_dict

    data = config_to_dict(Config())
    assert data["generation"]["temperature"] is None and data["generation"]["repeat_last_n"] == 64
    assert config_from_dict(data) == Config()
    data["generation"]["temperature"] = 0.7  # an older manifest's: every value written out
    assert config_from_dict(data).sampling.temperature == 0.7
    data["generation"]["temperature"] = 9.0
    with pytest.raises(ConfigError, match="temperature"):
        config_from_dict(data)
    data["generation"]["temperature"] = None
    data["generation"]["seed"] = None  # a setting that is never unset
    with pytest.raises(ConfigError, match="seed"):
        config_from_dict(data)
