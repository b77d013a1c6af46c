"""A manifest for every post: what it was made from (versions, model, prompts, config, feeds, seed,
time) and how the run went (topics, per-section tokens and timings).

A manifest lives in the site's state folder (`site.Site.manifest`: ROOT/.digest/manifests/YYYY-MM-DD.json),
which Hugo does not publish. Paths inside ROOT are written relative to it, so the whole site folder can move.
"""

from __future__ import annotations

import ctypes
import dataclasses
import importlib.metadata
import platform
from datetime import datetime
from pathlib import Path
from typing import Callable, Sequence

from . import __version__
from .config import Config, config_to_dict
from .engine.base import Generation, Request, Sampling, derive_seed
from .errors import InputChangedError, OutputError
from .select import Covered, Story
from .site import Site
from .files import canonical_json, sha256_bytes, sha256_file, write_atomic, write_json
from .prompts import template_sha256

FORMAT = 1
# The settings of "sampling" (engine.base.Sampling), each a [generation] setting of the same name: where
# the config sets one, the two agree; where it leaves one unset, "sampling" says what the run used.
SAMPLED = tuple(spec.name for spec in dataclasses.fields(Sampling))


def check_claims(manifest: dict, path: Path) -> None:
    """Raise InputChangedError where the manifest at `path` is of a format this release does not read
    or contradicts itself: its config against the config's sha256, its run seed against its config's,
    each section's seed against the one the run derives from the run seed. A missing key: KeyError."""
    found = manifest["format"]
    if isinstance(found, bool) or not isinstance(found, int) or found < 1:
        raise InputChangedError(f"manifest {path} has an unknown format {found!r}: this digest reads format {FORMAT}")
    if found > FORMAT:
        versions = manifest.get("versions")
        wrote = versions.get("digest") if isinstance(versions, dict) else None
        raise InputChangedError(f"manifest {path} has format {found}, newer than this digest reads ({FORMAT}): "
                                f"replay it with the release that wrote it (digest {wrote or 'unknown'})")
    # The recorded config as it was written, not as this release reads it back: a manifest of an older
    # release lacks the keys added since, which then take their defaults (its behaviour then).
    config = manifest["config"]
    hashed = config_sha256(config["effective"])
    if hashed != config["sha256"]:
        raise InputChangedError(f"the config recorded in manifest {path} has been edited: sha256 expected "
                                f"{config['sha256']}, found {hashed}")
    seed = manifest["seed"]
    recorded = config["effective"]["generation"]["seed"]
    if seed != recorded:
        raise InputChangedError(f"manifest {path} contradicts itself: its seed is {seed!r}, its config's "
                                f"[generation] seed {recorded!r}")
    generation = config["effective"]["generation"]
    for key, value in manifest["sampling"].items():
        if key in SAMPLED and generation.get(key) is not None and generation[key] != value:
            raise InputChangedError(f"manifest {path} contradicts itself: its sampling has {key} {value!r}, its "
                                    f"config's [generation] {key} {generation[key]!r}")
    for section in manifest["sections"]:
        derived = derive_seed(seed, section["key"])
        if section["seed"] != derived:
            raise InputChangedError(f"manifest {path} contradicts itself: section '{section['key']}' has seed "
                                    f"{section['seed']!r}, but run seed {seed} gives it {derived}")


def _dist_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _c_string(library: Path, symbol: str) -> str | None:
    function = getattr(ctypes.CDLL(str(library)), symbol)
    function.restype = ctypes.c_char_p
    return function().decode("utf-8", "replace")


def llama_cpp_build() -> dict:
    """The llama.cpp build inside llama-cpp-python (ggml commit and versions), where it says so."""
    try:
        import llama_cpp
    except ImportError:
        return {}
    found = {}
    lib = Path(llama_cpp.__file__).resolve().parent / "lib"
    for key, pattern, symbol in (("ggml_commit", "*ggml-base.*", "ggml_commit"),
                                 ("ggml_version", "*ggml-base.*", "ggml_version"),
                                 ("llama_version", "*llama.*", "llama_version")):
        for library in sorted(lib.glob(pattern)):
            try:
                found[key] = _c_string(library, symbol)
                break
            except (OSError, AttributeError):
                continue
    return found


def versions() -> dict:
    return {
        "digest": __version__,  # the code's own, even where the installed metadata is older (an editable install)
        "python": platform.python_version(),
        "llama_cpp_python": _dist_version("llama-cpp-python"),
        "llama_cpp": llama_cpp_build(),
        "feedparser": _dist_version("feedparser"),
    }


def model_record(path: Path, cache: Path) -> dict:
    """The model file (path, size, sha256) and, for a file of the model registry, its name there and,
    for a derived one (the default Q8_0), its source's name, file and sha256 and the recipe."""
    from .models.registry import describe

    path = Path(path).resolve()
    if not path.is_file():
        return {"path": str(path), "file": path.name, "size": None, "sha256": None}
    record = {"path": str(path), "file": path.name, "size": path.stat().st_size, "sha256": sha256_file(path, cache)}
    known = describe(path)
    if known is not None:
        record["registry"] = known
    return record


def server_record(server: dict) -> dict:
    """A model behind a server (--engine openai): what the server says about itself. digest cannot see
    the file, so no size or sha256 is claimed for it."""
    return {"path": None, "file": None, "size": None, "sha256": None, "server": server}


def prompts_record(directory: Path, names: Sequence[str]) -> dict:
    directory = Path(directory).resolve()
    return {"dir": str(directory), "sha256": {name: template_sha256(directory / f"{name}.txt") for name in names}}


def config_sha256(effective: dict) -> str:
    """The sha256 a manifest records for its effective config (canonical JSON)."""
    return sha256_bytes(canonical_json(effective).encode("utf-8"))


def config_record(config: Config) -> dict:
    effective = config_to_dict(config)
    return {"sha256": config_sha256(effective), "effective": effective}


def _story(story: Story) -> dict:
    return {"title": story.title, "link": story.link, "id": story.id}


def build(
    config: Config,
    *,
    site: Site,
    post: Path,
    post_text: str,
    when: datetime,
    feeds: dict,
    prompt_names: Sequence[str],
    sampling: Sampling,
    engine: dict,
    requests: Sequence[Request],
    server: dict | None = None,
    chosen,
    topics: Sequence[Story],
    trending: Sequence[Story],
    covered: Covered,
    warnings: Sequence[str],
) -> dict:
    generation: Generation = chosen.generation
    seeds = {r.key: r.seed for r in requests}
    sections = [{"key": r.key, "seed": seeds.get(r.key), "tries": chosen.tries.get(r.key),
                 "failed_checks": [c.name for c in chosen.scores[r.key].failures] if r.key in chosen.scores else None,
                 "prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
                 "finish_reason": r.finish_reason, "seconds": round(r.seconds, 4),
                 **({"sampled_tokens": r.sampled_tokens, "rollbacks": r.rollbacks} if r.sampled_tokens else {}),
                 **({"thinking_tokens": r.thinking_tokens} if r.thinking_tokens else {}),
                 **({"first_token_seconds": r.first_token_seconds} if r.first_token_seconds is not None else {})}
                for r in generation.results]
    stats = dataclasses.asdict(generation.stats)
    return {
        "format": FORMAT,
        "post": {"path": site.portable(post), "sha256": sha256_bytes(post_text.encode("utf-8"))},
        "date": when.date().isoformat(),
        "front_matter_time": when.isoformat(),
        "versions": versions(),
        "model": server_record(server) if server else model_record(config.model_path, site.hash_cache),
        "prompts": prompts_record(config.prompts_path, prompt_names),
        "config": config_record(config),
        "feeds": {**feeds, "directory": site.portable(feeds["directory"])},
        "seed": config.generation.seed,
        "sampling": dataclasses.asdict(sampling),
        "generation": {"max_tokens": config.generation.max_tokens, "slots": config.generation.slots,
                       "candidates": config.generation.candidates, "retries": config.generation.retries,
                       "min_words": config.generation.min_words, "max_words": config.generation.max_words,
                       # The prevention, whole (config.Prevention; a manifest of 0.3 has its first two keys).
                       **dataclasses.asdict(config.generation.prevention)},
        "engine": engine,
        "topics": [_story(s) for s in topics],
        "trending": [_story(s) for s in trending],
        # The stories history said were covered on other days, and so were skipped.
        "covered": {"ids": sorted(covered.ids), "titles": sorted(covered.titles)},
        "sections": sections,
        "stats": {**stats, "tokens_per_second": round(generation.stats.tokens_per_second, 2)},
        "warnings": list(warnings),
    }


def write(site: Site, day, manifest: dict) -> tuple[Path, Callable[[], None]]:
    """Write the day's manifest; return its path and a function that puts back what was there before."""
    path = site.manifest(day)
    try:
        before: bytes | None = path.read_bytes()
    except OSError:
        before = None
    write_json(path, manifest)

    def undo() -> None:
        try:
            if before is None:
                path.unlink(missing_ok=True)
            else:
                write_atomic(path, before)
        except (OSError, OutputError):
            pass

    return path, undo
