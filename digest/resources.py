"""Where digest's own files are: the prompts, the model registry, the sample feeds, the default config,
and the folder that holds model weights.

In a checkout (and its editable install) they are the project's folders: prompts/ and models/ at the
top, digest/samples/ and digest/default.toml in the package. A wheel carries copies of prompts/ and of
models/registry.toml inside the package, as digest/_data/ (mapped in pyproject.toml), read through
importlib.resources; weights are never in a wheel, so an installed digest keeps them in the user's data
folder: $DIGEST_MODELS, else $XDG_DATA_HOME/digest/models, else ~/.local/share/digest/models.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
CHECKOUT = PACKAGE.parent
MODELS_ENV = "DIGEST_MODELS"


def in_checkout() -> bool:
    """True when digest runs from its source tree (a clone, an editable install)."""
    return (CHECKOUT / "pyproject.toml").is_file() and (CHECKOUT / "prompts").is_dir()


def _package_file(*parts: str) -> Path:
    return Path(str(resources.files("digest").joinpath(*parts)))


def _data(name: str) -> Path:
    return CHECKOUT / name if in_checkout() else _package_file("_data", name)


def prompts_dir() -> Path:
    """The prompt templates digest ships (a config's [generation] prompts_dir replaces them)."""
    return _data("prompts")


def registry_file() -> Path:
    """The model registry digest ships."""
    return _data("models") / "registry.toml"


def models_dir() -> Path:
    """Where the models of the shipped registry are kept (downloaded, derived, verified)."""
    if os.environ.get(MODELS_ENV):
        return Path(os.environ[MODELS_ENV]).expanduser()
    if in_checkout():
        return CHECKOUT / "models"
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "digest" / "models"


def samples_dir() -> Path:
    """The bundled sample feeds (`--sample-feeds`)."""
    return _package_file("samples")


def default_config_text() -> str:
    """The default digest.toml, every key with its built-in value."""
    return _package_file("default.toml").read_text(encoding="utf-8")
