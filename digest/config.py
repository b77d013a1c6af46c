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

from . import resources
from .models import embedded
from .engine import CACHE_TYPES_K, ENGINES, Sampling
from .engine.openai import GRAMMAR_MODES, ServerOptions
from .http import DEFAULT_USER_AGENT
from .markdown import one_line
from .prompts import EXAMPLE_KINDS
from .sections import DEFAULT_SECTIONS
from .post import DEFAULT_NOTICE, DEFAULT_PREDICTIONS_HEADING, Cover
from .errors import ConfigError
from .tomlcheck import Document, build, check_value, parse, read_text, rules

CONFIG_NAME = "digest.toml"


@dataclass
class Blog:
    title: str = "[Daily Automated AI Summary]"
    author: str = "Blog Agent"
    tags: list[str] = field(default_factory=lambda: ["daily ai summary", "automated content"])
    # The post must have one.
    notice: str = field(default=DEFAULT_NOTICE, metadata=rules(check=(one_line, "must have visible text")))
    predictions_heading: str = DEFAULT_PREDICTIONS_HEADING
    draft: bool = False
    cover: Cover = field(default_factory=Cover)


@dataclass
class FeedConfig:
    url: str = ""
    count: int = field(default=3, metadata=rules(1, 50))
    # Other URLs of the same feed, tried in order when `url` fails.
    mirrors: list[str] = field(default_factory=list)

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


@dataclass
class Generation:
    engine: str = field(default="batched", metadata=rules(choices=ENGINES))
    seed: int = field(default=42, metadata=rules(0, 2**32 - 1))
    max_tokens: int = field(default=160, metadata=rules(1, 8192))
    # The sampling settings; their defaults are the engines' (engine.base.Sampling).
    temperature: float = field(default=Sampling.temperature, metadata=rules(0.0, 5.0))
    top_k: int = field(default=Sampling.top_k, metadata=rules(0, 100000))
    top_p: float = field(default=Sampling.top_p, metadata=rules(0.0, 1.0))
    min_p: float = field(default=Sampling.min_p, metadata=rules(0.0, 1.0))
    repeat_penalty: float = field(default=Sampling.repeat_penalty, metadata=rules(0.5, 5.0))
    slots: int = field(default=0, metadata=rules(0, 256))
    prompts_dir: str = ""
    examples: bool = True
    # Which examples a section is shown: "own" (those of its kind) or "all" (every one, as before 0.2).
    example_kinds: str = field(default=EXAMPLE_KINDS[0], metadata=rules(choices=EXAMPLE_KINDS))
    min_words: int = field(default=40, metadata=rules(1, 1000))
    max_words: int = field(default=130, metadata=rules(1, 1000))
    # The paragraphs of each topic, in order: names of section kinds (digest.sections).
    sections: list[str] = field(default_factory=lambda: list(DEFAULT_SECTIONS))
    candidates: int = field(default=1, metadata=rules(1, 8))
    retries: int = field(default=2, metadata=rules(0, 10))
    # Prevent before checking (docs/quality.md): the fact guard keeps every number and name of a
    # paragraph to its story, token by token; a finished sentence that fails the sentence checks is
    # undone and written again, up to `sentence_attempts` tries (1: never undone).
    guard: bool = True
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
    def prompts_path(self) -> Path:
        if self.generation.prompts_dir:
            return self.resolve(self.generation.prompts_dir)
        return resources.prompts_dir()


def default_toml() -> str:
    return resources.default_config_text()


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
BEFORE_THE_KEY = {("model", "cache_type_k"): "f16", ("generation", "example_kinds"): "all",
                  ("generation", "guard"): False, ("generation", "sentence_attempts"): 1,
                  ("generation", "point_bias"): 0.0, ("generation", "topic_bias"): 0.0,
                  ("generation", "hold_to_min_words"): False}


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


def parse_config(text: str, source: Path | None = None) -> Config:
    doc = parse(text, str(source) if source else "config")
    config = build(Config, doc.data, doc, base=Config())
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


def _engine_settings(config: Config) -> tuple:
    m = config.model
    return (config.generation.engine, str(config.model_path.resolve()) if not m.url else "", m.url, m.name,
            m.n_ctx, m.threads, m.n_gpu_layers, config.generation.slots)


def check_one_engine(configs: list[tuple[str, Config]]) -> None:
    """Several configs of one run (`digest run --config a --config b`) share one engine: a ConfigError
    unless each names the same engine and model settings as the first; `configs`: (name, config) pairs."""
    first_name, first = configs[0]
    for name, config in configs[1:]:
        if _engine_settings(config) != _engine_settings(first):
            raise ConfigError(f"{name}: every config of one run must use the same engine and model settings as "
                              f"{first_name} (engine, model, server, ctx, threads, GPU layers, slots)")
