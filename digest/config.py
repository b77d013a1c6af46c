"""`digest.toml`: what a post is made from and how.

The defaults live in the dataclasses below; `digest/default.toml` is the same defaults written out
with comments for `digest init` (a test keeps the two equal). Loading checks every key and value and
names the file and line of anything wrong.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from . import embedded, resources
from .engine import ENGINES
from .errors import ConfigError
from .markdown import one_line
from .post import DEFAULT_NOTICE, DEFAULT_PREDICTIONS_HEADING, Cover

CONFIG_NAME = "digest.toml"


def _range(lo: float | None = None, hi: float | None = None) -> dict:
    return {"min": lo, "max": hi}


@dataclass
class Blog:
    title: str = "[Daily Automated AI Summary]"
    author: str = "Blog Agent"
    tags: list[str] = field(default_factory=lambda: ["daily ai summary", "automated content"])
    notice: str = field(default=DEFAULT_NOTICE, metadata={"visible": True})  # the post must have one
    predictions_heading: str = DEFAULT_PREDICTIONS_HEADING
    draft: bool = False
    cover: Cover = field(default_factory=Cover)


@dataclass
class FeedConfig:
    url: str = ""
    count: int = field(default=3, metadata=_range(1, 50))
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
    timeout: float = field(default=30.0, metadata=_range(0.1, 600))
    user_agent: str = "digest/0.1 (offline daily digest generator)"
    retries: int = field(default=2, metadata=_range(0, 10))
    backoff: float = field(default=1.0, metadata=_range(0.0, 60))
    max_wait: float = field(default=30.0, metadata=_range(0.0, 600))
    strict: bool = False

    def fetch_options(self) -> dict:
        """The keyword arguments of `feeds.fetch` that these settings give."""
        return {"timeout": self.timeout, "user_agent": self.user_agent, "retries": self.retries,
                "backoff": self.backoff, "max_wait": self.max_wait}


@dataclass
class Output:
    dir: str = "."
    lock_wait: float = field(default=5.0, metadata=_range(0.0, 86400.0))


@dataclass
class History:
    days: int = field(default=7, metadata=_range(0, 3650))


@dataclass
class Model:
    path: str = ""
    n_ctx: int = field(default=0, metadata=_range(0, 1 << 20))
    threads: int = field(default=0, metadata=_range(0, 1024))
    n_gpu_layers: int = field(default=0, metadata=_range(-1, 100000))


@dataclass
class Generation:
    engine: str = field(default="batched", metadata={"choices": ENGINES})
    seed: int = field(default=42, metadata=_range(0, 2**32 - 1))
    max_tokens: int = field(default=160, metadata=_range(1, 8192))
    temperature: float = field(default=0.7, metadata=_range(0.0, 5.0))
    top_k: int = field(default=40, metadata=_range(0, 100000))
    top_p: float = field(default=0.9, metadata=_range(0.0, 1.0))
    min_p: float = field(default=0.05, metadata=_range(0.0, 1.0))
    repeat_penalty: float = field(default=1.15, metadata=_range(0.5, 5.0))
    slots: int = field(default=0, metadata=_range(0, 256))
    prompts_dir: str = ""
    examples: bool = True
    min_words: int = field(default=40, metadata=_range(1, 1000))
    max_words: int = field(default=130, metadata=_range(1, 1000))
    # The paragraphs of each topic, in order: names of section kinds (digest.sections).
    sections: list[str] = field(default_factory=lambda: ["benefits", "ramifications"])
    candidates: int = field(default=1, metadata=_range(1, 8))
    retries: int = field(default=2, metadata=_range(0, 10))


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


class _Lines:
    """Finds the line of a key in TOML text, for error messages."""

    _HEADER = re.compile(r"^\s*\[+\s*([^\]]+?)\s*\]+")
    _KEY = re.compile(r"^\s*([A-Za-z0-9_\-\"'. ]+?)\s*=")

    def __init__(self, text: str):
        self.index: dict[tuple[str, ...], int] = {}
        section: tuple[str, ...] = ()
        for number, line in enumerate(text.splitlines(), start=1):
            header = self._HEADER.match(line)
            if header:
                section = tuple(p.strip().strip("\"'") for p in header.group(1).split("."))
                self.index.setdefault(section, number)
                continue
            key = self._KEY.match(line)
            if key:
                parts = tuple(p.strip().strip("\"'") for p in key.group(1).split("."))
                for end in range(1, len(parts) + 1):
                    self.index.setdefault((*section, *parts[:end]), number)

    def of(self, path: tuple[str, ...]) -> int | None:
        while path:
            if path in self.index:
                return self.index[path]
            path = path[:-1]
        return None


def _where(source: Path | None, lines: _Lines, path: tuple[str, ...]) -> str:
    line = lines.of(path)
    name = str(source) if source else "config"
    return f"{name}:{line}" if line else name


def _check_value(hint: Any, value: Any, meta: dict, subject: str) -> Any:
    """`value` checked against its type and limits; `subject` names it in errors ("file:3: 'seed'")."""
    origin = get_origin(hint)
    if origin is list:
        (item,) = get_args(hint)
        if not isinstance(value, list) or not all(isinstance(v, item) for v in value):
            raise ConfigError(f"{subject} must be a list of {item.__name__}s")
        return list(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if hint in (int, float) and isinstance(value, bool) or not isinstance(value, hint):
        expected = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}[hint]
        raise ConfigError(f"{subject} must be {expected}, not {value!r}")
    if isinstance(value, float) and value != value:
        raise ConfigError(f"{subject} must be a number, not nan")
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and value < lo or hi is not None and value > hi:
        raise ConfigError(f"{subject} = {value!r} is out of range ({lo} to {hi})")
    choices = meta.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"{subject} must be one of {', '.join(choices)}, not {value!r}")
    if meta.get("visible") and not one_line(value):
        raise ConfigError(f"{subject} must have visible text, not {value!r}")
    return value


def _build(cls: type, data: dict, path: tuple[str, ...], source: Path | None, lines: _Lines,
           base: Any = None) -> Any:
    """`data` over `base` (default: `cls()`): a table that sets some keys keeps its parent's defaults
    for the others (`[feeds.topics]` with only a url still wants 6 topics)."""
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    unknown = [key for key in data if key not in fields]
    if unknown:
        key = unknown[0]
        dotted = ".".join((*path, key))
        known = ", ".join(fields)
        raise ConfigError(f"{_where(source, lines, (*path, key))}: unknown key '{dotted}' (known here: {known})")
    instance = base if base is not None else cls()
    for name, value in data.items():
        hint, meta = hints[name], fields[name].metadata
        here = (*path, name)
        dotted = ".".join(here)
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ConfigError(f"{_where(source, lines, here)}: '{dotted}' must be a table")
            value = _build(hint, value, here, source, lines, getattr(instance, name))
        else:
            value = _check_value(hint, value, meta, f"{_where(source, lines, here)}: '{dotted}'")
        setattr(instance, name, value)
    return instance


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
        checked = _check_value(hint, value, spec.metadata, flag)
        setattr(target, name, checked)


def _toml_error(name: str, exc: Exception) -> str:
    """"FILE:LINE: invalid TOML: ..." with the line that tomllib names in its message."""
    match = re.search(r"\(at line (\d+), column \d+\)$", str(exc))
    return f"{name}{':' + match.group(1) if match else ''}: invalid TOML: {exc}"


def config_to_dict(config: Config) -> dict:
    """Every setting as plain data (what a manifest records), without the file it was read from."""
    data = dataclasses.asdict(config)
    data.pop("source", None)
    return data


def config_from_dict(data: dict) -> Config:
    """The inverse of `config_to_dict`, checked like a config file."""
    return _build(Config, data, (), None, _Lines(""))


def parse_config(text: str, source: Path | None = None) -> Config:
    name = str(source) if source else "config"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(_toml_error(name, exc)) from exc
    config = _build(Config, data, (), source, _Lines(text))
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
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path} (run 'digest init' to write one)")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot read config file {path}: it is not UTF-8 text ({exc.reason} at byte "
                          f"{exc.start}); save it as UTF-8") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    return parse_config(text, path.resolve())
