"""`digest replay MANIFEST`: regenerate a post from what its manifest names, and compare.

Every claim of the manifest is checked before anything is generated, cheapest first: the config
recorded in it, that it agrees with itself (its format, run seed and each section's seed), the post
(a post edited after it was written needs no regeneration to tell), the prompt templates, the model
file and the feed files (a snapshot's, or a feeds folder's). A missing or changed input, or a manifest
that contradicts itself, is an InputChangedError (exit 9) that names it, expected vs found. Only a
post that matches its manifest is regenerated: a difference then is the engine's (exit 1, a diff).
"""

from __future__ import annotations

import difflib
import json
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable

from . import pipeline
from .config import Config, apply_flags, config_from_dict
from .engine.base import Engine, ProgressCallback
from .errors import InputChangedError
from .files import sha256_bytes, sha256_file
from .prompts import template_sha256
from .manifest import SAMPLED, check_claims
from .select import Covered
from .site import Site
from .snapshot import SnapshotError


@dataclass
class Replay:
    post: Path
    identical: bool
    diff: str = ""
    # Said beside the result: what could not be checked (a model behind a server has no file to hash).
    note: str = ""


def _load(path: Path) -> dict:
    try:
        manifest = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputChangedError(f"manifest not found: {path}")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputChangedError(f"cannot read manifest {path}: {exc}") from exc
    if not isinstance(manifest, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(manifest), "a number")
        raise InputChangedError(f"{path} is not a digest manifest (it holds {kind}, not a JSON object)")
    return manifest


def _check_hash(what: str, path: Path, expected: str,
                hash_file: Callable[[Path], str] = lambda path: sha256_bytes(path.read_bytes())) -> None:
    """Raise InputChangedError unless `path` exists and its sha256 (by `hash_file`) is `expected`."""
    if not path.is_file():
        raise InputChangedError(f"{what} {path} is missing (the manifest names it with sha256 {expected})")
    found = hash_file(path)
    if found != expected:
        raise InputChangedError(f"{what} {path} has changed: sha256 expected {expected}, found {found}")


def check_inputs(manifest: dict, site: Site, where: Path) -> Config:
    """The run's config, with the model and prompts the manifest (at `where`) names, once the manifest
    agrees with itself and every input, the post included, checks out."""
    check_claims(manifest, where)
    _check_hash("post", site.root / manifest["post"]["path"], manifest["post"]["sha256"])
    config = _as_sampled(config_from_dict(manifest["config"]["effective"]), manifest, where)
    prompts = Path(manifest["prompts"]["dir"])
    for name, expected in manifest["prompts"]["sha256"].items():
        _check_hash("prompt template", prompts / f"{name}.txt", expected, template_sha256)
    model = manifest["model"]
    if model.get("server"):
        # A model behind a server: nothing here to hash; the run goes to the config's [model] url.
        config.generation.prompts_dir = str(prompts)
        return _check_family(config, manifest)
    path = Path(model["path"])
    if model["sha256"]:
        _check_hash("model", path, model["sha256"], lambda path: sha256_file(path, site.hash_cache))
    feeds = site.root / manifest["feeds"]["directory"]
    for name, entry in manifest["feeds"]["files"].items():
        if "sha256" in entry:
            _check_hash(f"feed '{name}' file", feeds / entry["file"], entry["sha256"])
    config.model.path = str(path)
    config.generation.prompts_dir = str(prompts)
    return _check_family(config, manifest)


def _as_sampled(config: Config, manifest: dict, where: Path) -> Config:
    """`config` with the sampling the run used (the manifest's "sampling", which agrees with its config:
    manifest.check_claims), each setting as set: one its config left unset took the model registry's
    recommendation of that day, which may have changed since (an older manifest's config sets every one,
    as it ran)."""
    for key, value in manifest["sampling"].items():
        if key in SAMPLED:
            apply_flags(config, {f"generation.{key}": (f"{where}: sampling.{key}", value)})
    return config


def _check_family(config: Config, manifest: dict) -> Config:
    """`config`, once the engine settings that are not its own agree with the manifest's: what the
    model registry says of the model's family (`thinking`, `chat_format`; a manifest written before
    they were read ran without them), and a chat format's Jinja file has the text it had."""
    engine = manifest.get("engine") or {}
    recorded = engine.get("thinking_family", False)
    found = config.engine_settings.thinking_family
    if found != recorded:
        raise InputChangedError(f"the model registry has changed: its [[model]] thinking for this model is now "
                                f"{str(found).lower()}, the run took it as {str(recorded).lower()}")
    # The chat template that wrote the prompts, where it was not the GGUF's: the same name (a registry
    # entry's may have changed), and a Jinja file with the same text.
    recorded_format, found_format = engine.get("chat_format", ""), config.engine_settings.chat_format
    if found_format != recorded_format:
        own = "the GGUF's own template"
        raise InputChangedError(f"the chat format has changed: the run's prompts were written by "
                                f"{recorded_format or own}, now it would be "
                                f"{found_format or own} (the model registry's chat_format)")
    template = engine.get("chat_template") or {}
    if found_format and template.get("builtin") is False and template.get("sha256"):
        _check_hash("chat template", Path(found_format), template["sha256"],
                    lambda path: sha256_bytes(path.read_text(encoding="utf-8").encode("utf-8")))  # as chat.py reads it
    return config


def replay(manifest_path: Path, make_engine: Callable[[Config], Engine], *, slots: int | None = None,
           progress: ProgressCallback | None = None, status: Callable[[str], None] = lambda message: None) -> Replay:
    manifest = _load(manifest_path)
    site = Site.of_manifest(manifest_path)
    status("checking the inputs the manifest names")
    try:
        config = check_inputs(manifest, site, manifest_path)
        post = site.root / manifest["post"]["path"]
        feeds = site.root / manifest["feeds"]["directory"]
        snapshot = feeds if manifest["feeds"]["snapshot"] else None
        when = datetime.fromisoformat(manifest["front_matter_time"])
        # (Manifests written before history existed have no "covered": nothing was skipped.)
        skipped = manifest.get("covered", {"ids": [], "titles": []})
        covered = Covered(frozenset(skipped["ids"]), frozenset(skipped["titles"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise InputChangedError(f"{manifest_path} is not a digest manifest ({exc.__class__.__name__}: {exc})") from exc
    if slots is not None:
        config.generation.slots = slots
    with tempfile.TemporaryDirectory(prefix="digest-replay-") as tmp:
        try:
            result = pipeline.run(config, lambda: make_engine(config), now=when, out=Path(tmp),
                                  feeds_from=None if snapshot else feeds, snapshot=snapshot, force=True, record=False,
                                  covered=covered, progress=progress, status=status)
        except SnapshotError as exc:
            raise InputChangedError(str(exc)) from exc
        again = result.path.read_bytes()
    before = post.read_bytes()
    server = manifest["model"].get("server")
    note = (f"the model is behind a server ({server.get('url')}, model '{server.get('model_id')}'): digest cannot "
            "check that it is the same model, so only the bytes are compared" if server else "")
    template = (manifest.get("engine") or {}).get("chat_template") or {}
    if template.get("reads_date"):
        dated = ("the model's chat template writes the day it runs on into the prompt (strftime_now): run on "
                 f"{template.get('date_read') or 'another day'}, replayed on {datetime.now().date()}, so on another "
                 "day the model reads another prompt and its text may differ")
        note = f"{note}; {dated}" if note else dated
    if again == before:
        return Replay(post, identical=True, note=note)
    diff = difflib.unified_diff(before.decode("utf-8", "replace").splitlines(keepends=True),
                                again.decode("utf-8", "replace").splitlines(keepends=True),
                                fromfile=str(post), tofile="regenerated from the manifest")
    return Replay(post, identical=False, note=note, diff="".join(line if line.endswith("\n") else line + "\n" for line in diff))
