"""`digest.toml`: what a post is made from and how.

The defaults live in the dataclasses below; `digest/default.toml` is the same defaults written out
with comments for `digest init` (a test keeps the two equal). Loading checks every key and value
against them (digest/tomlcheck.py) and names the file and line of anything wrong.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints
from urllib.parse import urlsplit

from . import __version__, resources
from .models import embedded
from .models.registry import SAMPLING_KEYS, family_chat_format, family_sampling, family_thinks
from .engine import CACHE_TYPES_K, ENGINES, EngineSettings, Sampling
from .engine.chat import is_template_file
from .engine.openai import GRAMMAR_MODES, ServerOptions
from .http import DEFAULT_USER_AGENT
from .markdown import one_line
from .prompts import EXAMPLE_KINDS
from .facts import RULE, RULES
from .prevention import SENTENCE_MAX_WORDS
from .sections import DEFAULT_SECTIONS, kinds_of
from .post import DEFAULT_NOTICE, DEFAULT_PREDICTIONS_HEADING, Cover
from .errors import ConfigError
from .tomlcheck import Document, build, check_value, parse, read_text, rules

CONFIG_NAME = "digest.toml"


def _fetchable(url: str) -> bool:
    """A feed URL digest can fetch: http:// or https:// with a host and no white space (or none: "")."""
    if not url:
        return True
    if any(char.isspace() or not char.isprintable() for char in url):
        return False
    try:
        parts = urlsplit(url)
        return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
    except ValueError:  # a malformed host ("http://[::1")
        return False


FEED_URL = rules(check=(_fetchable, "must be an http:// or https:// URL"))


@dataclass
class Blog:
    title: str = "[Daily Automated AI Summary]"
    author: str = "Blog Agent"
    tags: list[str] = field(default_factory=lambda: ["daily ai summary", "automated content"])
    # The post must have one.
    notice: str = field(default=DEFAULT_NOTICE, metadata=rules(check=(one_line, "must have visible text")))
    predictions_heading: str = DEFAULT_PREDICTIONS_HEADING
    draft: bool = False
    # Each topic's title and each trending headline a link to its story (http and https URLs only);
    # false keeps the published layout.
    source_links: bool = False
    cover: Cover = field(default_factory=Cover)


@dataclass
class FeedConfig:
    url: str = field(default="", metadata=FEED_URL)
    count: int = field(default=3, metadata=rules(1, 50))
    # Other URLs of the same feed, tried in order when `url` fails.
    mirrors: list[str] = field(default_factory=list, metadata=FEED_URL)

    @property
    def urls(self) -> list[str]:
        return [u for u in (self.url, *self.mirrors) if u]


@dataclass
class Feeds:
    topics: FeedConfig = field(
        default_factory=lambda: FeedConfig("https://www.reddit.com/r/MachineLearning/top/.rss?t=day", 6)
    )
    trending: FeedConfig = field(
        default_factory=lambda: FeedConfig("https://www.reddit.com/r/machinelearningnews/top/.rss?t=day", 3)
    )
    timeout: float = field(default=30.0, metadata=rules(0.1, 600))
    user_agent: str = DEFAULT_USER_AGENT
    retries: int = field(default=2, metadata=rules(0, 10))
    backoff: float = field(default=1.0, metadata=rules(0.0, 60))
    max_wait: float = field(default=30.0, metadata=rules(0.0, 600))
    strict: bool = False

    def fetch_options(self) -> dict:
        """The keyword arguments of `feeds.fetch` that these settings give."""
        return {"timeout": self.timeout, "user_agent": self.user_agent, "retries": self.retries,
                "backoff": self.backoff, "max_wait": self.max_wait}


@dataclass
class Output:
    dir: str = "."
    lock_wait: float = field(default=5.0, metadata=rules(0.0, 86400.0))


@dataclass
class History:
    days: int = field(default=7, metadata=rules(0, 3650))


@dataclass
class Model:
    path: str = ""
    n_ctx: int = field(default=0, metadata=rules(0, 1 << 20))
    threads: int = field(default=0, metadata=rules(0, 1024))
    n_gpu_layers: int = field(default=0, metadata=rules(-1, 100000))
    # The batching engine's K cache format: q8_0 (faster, same text for a reader) or f16.
    cache_type_k: str = field(default=CACHE_TYPES_K[0], metadata=rules(choices=CACHE_TYPES_K))
    # --engine openai: an OpenAI-compatible server (llama-server, vLLM, Ollama) instead of a local file.
    url: str = ""
    name: str = ""
    api_key_env: str = ""
    concurrency: int = field(default=ServerOptions.concurrency, metadata=rules(0, 4096))
    timeout: float = field(default=ServerOptions.timeout, metadata=rules(0.1, 86400.0))
    retries: int = field(default=ServerOptions.retries, metadata=rules(0, 10))
    grammar: str = field(default=ServerOptions.grammar, metadata=rules(choices=GRAMMAR_MODES))
    stream: bool = ServerOptions.stream
    # Thinking models (Qwen3, SmolLM3, DeepSeek-R1 distills): `enable_thinking` for a template that takes
    # it, and the reasoning block's token budget, apart from [generation] max_tokens.
    thinking: bool = False
    thinking_tokens: int = field(default=1024, metadata=rules(0, 32768))
    # The chat template where the GGUF has none, or instead of its own: the name of one of llama.cpp's
    # built-in templates (chatml, gemma, llama3, ...) or a Jinja file (relative to this file). "": the
    # GGUF's own, or the one the model registry names for the model (Gemma 3 270M: gemma).
    chat_format: str = ""

    def server_options(self):
        """The server of --engine openai (its `ServerOptions`, whose defaults these are); a URL missing or holding a
        password is a ConfigError."""
        if not self.url:
            raise ConfigError("--engine openai needs [model] url, the server's base URL (e.g. http://gpu-box:8000/v1)")
        if "@" in self.url.split("//", 1)[-1].split("/", 1)[0]:
            raise ConfigError("[model] url must not hold a user name or password (a manifest records the URL): "
                              "put the key in an environment variable and name it in [model] api_key_env")
        return ServerOptions(url=self.url, model=self.name, api_key_env=self.api_key_env, concurrency=self.concurrency,
                             timeout=self.timeout, retries=self.retries, grammar=self.grammar, stream=self.stream,
                             thinking=self.thinking, thinking_tokens=self.thinking_tokens)


@dataclass(frozen=True)
class Prevention:
    """Prevention before the checks (docs/quality.md), as one value: `[generation] guard`,
    `sentence_attempts`, `point_bias`, `topic_bias` and `hold_to_min_words` (see there), given whole
    to the run, the eval and the bench (`Generation.prevention`), made into each request's guard,
    sentence rule and bias (pipeline.protect) and recorded whole in the manifest. The defaults are
    none of it: what a run without the settings (digest 0.1's, an older manifest's: BEFORE_THE_KEY) did."""

    guard: bool = False
    sentence_attempts: int = 1
    point_bias: float = 0.0
    topic_bias: float = 0.0
    hold_to_min_words: bool = False

    def asked(self) -> dict[str, tuple[str, ...]]:
        """What an engine must apply while it writes for this prevention (the names of `Engine.prevents`:
        "guard", "sentences", "bias"), each with the settings that ask for it."""
        asked = {"guard": ("guard",) if self.guard else (),
                 "sentences": ("sentence_attempts",) if self.sentence_attempts > 1 else (),
                 "bias": tuple(name for name in ("point_bias", "topic_bias") if getattr(self, name))}
        return {what: names for what, names in asked.items() if names}


@dataclass
class Generation:
    engine: str = field(default="batched", metadata=rules(choices=ENGINES))
    seed: int = field(default=42, metadata=rules(0, 2**32 - 1))
    max_tokens: int = field(default=160, metadata=rules(1, 8192))
    # The sampling settings. Each of the first four left unset (None, the default: a file leaves the key
    # out) is what the model registry's entry recommends for the model, else the engines' default
    # (engine.base.Sampling); `Config.sampling` is what a run uses.
    temperature: float | None = field(default=None, metadata=rules(0.0, 5.0))
    top_k: int | None = field(default=None, metadata=rules(0, 100000))
    top_p: float | None = field(default=None, metadata=rules(0.0, 1.0))
    min_p: float | None = field(default=None, metadata=rules(0.0, 1.0))
    repeat_penalty: float = field(default=Sampling.repeat_penalty, metadata=rules(0.5, 5.0))
    # The tokens of recent history the repeat penalty looks at.
    repeat_last_n: int = field(default=Sampling.repeat_last_n, metadata=rules(0, 4096))
    slots: int = field(default=0, metadata=rules(0, 256))
    prompts_dir: str = ""
    examples: bool = True
    # Which examples a section is shown: "own" (those of its kind) or "all" (every one, as before 0.2).
    example_kinds: str = field(default=EXAMPLE_KINDS[0], metadata=rules(choices=EXAMPLE_KINDS))
    # Words of a paragraph: min_words at most max_words (checked in `check_together`), and max_words
    # room for at least one sentence as long as the sentence rule lets one be.
    min_words: int = field(default=40, metadata=rules(1, 1000))
    max_words: int = field(default=130, metadata=rules(SENTENCE_MAX_WORDS, 1000))
    # The paragraphs of each topic, in order: names of section kinds (digest.sections).
    sections: list[str] = field(default_factory=lambda: list(DEFAULT_SECTIONS))
    candidates: int = field(default=1, metadata=rules(1, 8))
    retries: int = field(default=2, metadata=rules(0, 10))
    # Prevent before checking (docs/quality.md): the fact guard keeps every number and name of a
    # paragraph to its story, token by token; a finished sentence that fails the sentence checks is
    # undone and written again, up to `sentence_attempts` tries (1: never undone).
    guard: bool = True
    # The fact rule's version (digest.facts: 1 is digest 0.4 to 0.6's), what the guard and the faithful
    # check hold a paragraph to; a manifest records it, so an older post replays as it ran.
    fact_rule: int = field(default=RULE, metadata=rules(choices=RULES))
    sentence_attempts: int = field(default=4, metadata=rules(1, 16))
    # The point bias: added to the logits of the words that make a paragraph's point (a Benefits
    # paragraph's who and gain words, a Ramifications paragraph's risk words) and taken from the
    # words against it. 0: none.
    point_bias: float = field(default=2.0, metadata=rules(0.0, 10.0))
    # The topic bias: added to the logits of the words of a paragraph's title (its content words of four
    # letters or more) from its second sentence on, so that it keeps to its story. 0: none.
    topic_bias: float = field(default=1.5, metadata=rules(0.0, 10.0))
    # Under sentence rollback, the model may not end a paragraph before it has min_words words, nor
    # inside a sentence (its end-of-text tokens are refused there). false: it may, and the checks or
    # the rollback fail it.
    hold_to_min_words: bool = True

    @property
    def prevention(self) -> Prevention:
        """The prevention these settings ask for, as one value."""
        return Prevention(**{spec.name: getattr(self, spec.name) for spec in dataclasses.fields(Prevention)})


@dataclass
class Config:
    blog: Blog = field(default_factory=Blog)
    feeds: Feeds = field(default_factory=Feeds)
    output: Output = field(default_factory=Output)
    model: Model = field(default_factory=Model)
    generation: Generation = field(default_factory=Generation)
    history: History = field(default_factory=History)
    source: Path | None = field(default=None, compare=False, metadata={"internal": True})

    def resolve(self, value: str) -> Path:
        """A path from the config: relative to the config file's folder, or the working directory."""
        path = Path(value).expanduser()
        if not path.is_absolute() and self.source is not None:
            path = self.source.parent / path
        return path

    @property
    def model_path(self) -> Path:
        if self.model.path:
            return self.resolve(self.model.path)
        return resources.models_dir() / embedded.FILE_NAME

    @property
    def engine_settings(self) -> EngineSettings:
        """Every setting that makes this config's engine, as one value (engine.EngineSettings): the one
        place where a config's settings are read for an engine, to build it (engine_of), to compare two
        configs that would share one (check_one_engine), and so in the manifest."""
        m, name = self.model, self.generation.engine
        server = m.server_options() if m.url or name == "openai" else None
        model_path = None if name == "openai" else self.model_path
        return EngineSettings(
            name=name, model_path=model_path, server=server, n_ctx=m.n_ctx, threads=m.threads,
            n_gpu_layers=m.n_gpu_layers, slots=self.generation.slots, cache_type_k=m.cache_type_k,
            thinking=m.thinking, thinking_tokens=m.thinking_tokens,
            thinking_family=family_thinks(model_path, server.model if server else ""),
            chat_format=self.chat_format if model_path is not None else "")

    @property
    def sampling(self) -> Sampling:
        """The sampling of every request this config makes: each of [generation] temperature, top_k, top_p
        and min_p as the config or a flag sets it, else as the model registry's entry for the model
        recommends (its `sampling`; a model behind a server by its [model] name), else the engines'
        default (engine.base.Sampling); the repeat penalty and its window as set. A manifest records it."""
        g = self.generation
        path = None if g.engine == "openai" else self.model_path
        recommended = family_sampling(path, self.model.name if path is None else "")
        chosen = {key: getattr(g, key) if getattr(g, key) is not None else recommended.get(key, getattr(Sampling, key))
                  for key in SAMPLING_KEYS}
        return Sampling(**chosen, repeat_penalty=g.repeat_penalty, repeat_last_n=g.repeat_last_n)

    @property
    def chat_format(self) -> str:
        """The chat template that overrides the GGUF's: [model] chat_format (a Jinja file as its absolute
        path), else the one the model registry names for the model file (""; none)."""
        value = self.model.chat_format
        if not value:
            return family_chat_format(self.model_path)
        return str(self.resolve(value).resolve()) if is_template_file(value) else value

    @property
    def prompts_path(self) -> Path:
        if self.generation.prompts_dir:
            return self.resolve(self.generation.prompts_dir)
        return resources.prompts_dir()


def default_toml() -> str:
    """The default digest.toml, as `digest init` writes it (the User-Agent with this version in it)."""
    return resources.default_config_text().replace("@VERSION@", __version__)


def apply_flags(config: Config, flags: dict[str, tuple[str, Any]]) -> None:
    """Set dotted settings from command-line flags, checked like config values.

    `flags` maps a dotted setting ("generation.seed") to (flag name, value); None means not given.
    """
    for dotted, (flag, value) in flags.items():
        if value is None:
            continue
        *parents, name = dotted.split(".")
        target = config
        for part in parents:
            target = getattr(target, part)
        spec = next(f for f in dataclasses.fields(target) if f.name == name)
        hint = get_type_hints(type(target))[name]
        checked = check_value(hint, value, spec.metadata, flag)
        setattr(target, name, checked)


def config_to_dict(config: Config) -> dict:
    """Every setting as plain data (what a manifest records), without the file it was read from."""
    data = dataclasses.asdict(config)
    data.pop("source", None)
    return data


# Settings whose default changed when the key was added: a recorded config without the key (a manifest
# of an older release) ran with this value, not with today's default.
# (Every prevention setting: none of it, Prevention's defaults.)
BEFORE_THE_KEY = {("model", "cache_type_k"): "f16", ("generation", "example_kinds"): "all",
                  ("generation", "fact_rule"): 1,  # 0.4 to 0.6's (0.3's older rule is not kept)
                  **{("generation", spec.name): spec.default for spec in dataclasses.fields(Prevention)}}


def as_before_the_keys(config: Config, data: dict | None = None) -> Config:
    """`config` with the value of each BEFORE_THE_KEY setting that `data` (a recorded config) lacks:
    every one of them without `data` (the settings as digest 0.1 ran). A copy; `config` is unchanged."""
    tables = {table: dataclasses.replace(getattr(config, table)) for table, _ in BEFORE_THE_KEY}
    for (table, key), value in BEFORE_THE_KEY.items():
        if data is None or key not in data.get(table, {}):
            setattr(tables[table], key, value)
    return dataclasses.replace(config, **tables)


def config_from_dict(data: dict) -> Config:
    """The inverse of `config_to_dict`, checked like a config file. Keys added since the data was
    recorded take their defaults, or the value they stood for before they existed (BEFORE_THE_KEY)."""
    return as_before_the_keys(build(Config, data, Document("config", data), base=Config()), data)


def check_together(config: Config, doc: Document) -> None:
    """The rules between settings, each one alone being in range: a ConfigError at the line of the
    key that breaks one. min_words at most max_words; `sections` names at least one topic kind, each
    once, a kind after the one it pairs with (digest.sections.kinds_of)."""
    g = config.generation
    if g.min_words > g.max_words:
        raise doc.error(("generation", "min_words"), f"'generation.min_words' = {g.min_words} is more than "
                        f"'generation.max_words' = {g.max_words} (min_words must be 1 to max_words)")
    try:
        kinds_of(g.sections)
    except ConfigError as exc:
        raise doc.error(("generation", "sections"), str(exc)) from None


def parse_config(text: str, source: Path | None = None) -> Config:
    doc = parse(text, str(source) if source else "config")
    config = build(Config, doc.data, doc, base=Config())
    check_together(config, doc)
    config.source = source
    return config


def load_config(path: Path | None = None, *, cwd: Path | None = None) -> Config:
    """Load `path`, or `digest.toml` in the working directory, or the built-in defaults."""
    if path is None:
        candidate = (cwd or Path.cwd()) / CONFIG_NAME
        if not candidate.is_file():
            return Config()
        path = candidate
    path = Path(path)
    text = read_text(path, "config file", "run 'digest init' to write one")
    return parse_config(text, path.resolve())


def check_one_engine(configs: list[tuple[str, Config]]) -> None:
    """Several configs of one run (`digest run --config a --config b`) share one engine: a ConfigError
    unless each has the same engine settings (`Config.engine_settings`) as the first, naming those that
    differ; `configs`: (name, config) pairs."""
    first_name, first = configs[0]
    ours = first.engine_settings.shared_by()
    for name, config in configs[1:]:
        theirs = config.engine_settings.shared_by()
        if theirs != ours:
            differ = [_SETTING.get(spec.name, f"[model] {spec.name}") for spec in dataclasses.fields(ours)
                      if getattr(ours, spec.name) != getattr(theirs, spec.name)]
            raise ConfigError(f"{name}: every config of one run must use the same engine and model settings as "
                              f"{first_name}, whose engine it shares ({', '.join(differ)} differ)")


# Where each field of EngineSettings comes from, for check_one_engine's message ("[model] NAME" elsewhere).
_SETTING = {"name": "[generation] engine", "model_path": "[model] path", "server": "[model] url and its server settings",
            "slots": "[generation] slots", "thinking_family": "the model registry's thinking"}
