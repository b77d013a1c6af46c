"""digest.files: the one atomic writer, the one sha256 helper (with its cache), the JSON forms.

The full-disk case runs on a real, small tmpfs when the machine allows mounting one (as root);
elsewhere it is skipped with the reason, and the patched-fsync tests in test_output_faults.py
cover the same path."""

from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path

import pytest

from digest import files
from digest.errors import ModelError, OutputError


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(files.TEMP_SUFFIX))


# ---------------------------------------------------------------------------------------------
# the atomic writer


def test_write_atomic_writes_text_and_bytes_and_replaces(tmp_path):
    path = tmp_path / "deep" / "er" / "a.txt"
    files.write_atomic(path, "héllo\n")
    assert path.read_bytes() == "héllo\n".encode("utf-8")
    files.write_atomic(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert leftovers(path.parent) == []


def test_a_new_file_gets_the_umask_mode_and_a_replaced_one_keeps_its_own(tmp_path):
    old = os.umask(0o022)
    try:
        fresh = tmp_path / "fresh.md"
        files.write_atomic(fresh, "x")
        assert fresh.stat().st_mode & 0o777 == 0o644  # not the 0600 of a temporary file
        kept = tmp_path / "kept.md"
        kept.write_text("old")
        kept.chmod(0o640)
        files.write_atomic(kept, "new")
        assert kept.read_text() == "new" and kept.stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)


def test_a_failure_inside_the_block_keeps_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "model.gguf"
    path.write_bytes(b"old")
    with pytest.raises(OutputError, match=rf"cannot write {path}: No space left on device"):
        with files.atomic_file(path) as handle:
            handle.write(b"new, half written")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert path.read_bytes() == b"old" and leftovers(tmp_path) == []

    with pytest.raises(ModelError, match="custom: write"):
        with files.atomic_path(path, error=lambda action, where, exc: ModelError(f"custom: {action}")) as tmp:
            tmp.write_bytes(b"new")
            raise OSError(errno.EIO, "I/O error")
    assert path.read_bytes() == b"old" and leftovers(tmp_path) == []

    with pytest.raises(KeyboardInterrupt):
        with files.atomic_path(path) as tmp:
            tmp.write_bytes(b"new")
            raise KeyboardInterrupt
    assert path.read_bytes() == b"old" and leftovers(tmp_path) == []


def test_atomic_path_takes_what_a_library_wrote_by_name(tmp_path):
    path = tmp_path / "out.bin"
    with files.atomic_path(path) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".out.bin.") and tmp.name.endswith(files.TEMP_SUFFIX)
        assert not path.exists()
        with open(tmp, "wb") as handle:  # as llama.cpp's quantizer writes its output file
            handle.write(b"written by someone else")
    assert path.read_bytes() == b"written by someone else" and leftovers(tmp_path) == []


def test_a_folder_that_cannot_hold_the_file_is_one_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(OutputError, match=rf"cannot write to {blocker}"):
        files.write_atomic(blocker / "x.json", "{}")


def test_remove_stale_temp_removes_only_temporaries(tmp_path):
    (tmp_path / ".a.md.abc.part").write_text("left by a killed run")
    (tmp_path / "a.md").write_text("a post")
    assert [p.name for p in files.remove_stale_temp(tmp_path)] == [".a.md.abc.part"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.md"]


@pytest.fixture
def full_disk(small_tmpfs):
    """A real 256 KB tmpfs, mounted for the test (root only): conftest's small_tmpfs."""
    return small_tmpfs


def test_a_real_full_disk_is_one_error_and_keeps_the_old_file(full_disk):
    path = full_disk / "post.md"
    files.write_atomic(path, b"old post\n")
    with pytest.raises(OutputError) as caught:
        files.write_atomic(path, b"x" * 1_000_000)
    assert "No space left on device" in str(caught.value) and str(path) in str(caught.value)
    assert path.read_bytes() == b"old post\n"
    assert leftovers(full_disk) == []
    files.write_atomic(path, b"new post\n")  # and the space is free again
    assert path.read_bytes() == b"new post\n"


# ---------------------------------------------------------------------------------------------
# sha256


def test_sha256_file_reads_in_chunks(tmp_path):
    data = os.urandom(3 * files.CHUNK + 17)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    assert files.sha256_file(path) == hashlib.sha256(data).hexdigest() == files.sha256_bytes(data)


def test_sha256_cache_is_used_while_the_file_is_unchanged(tmp_path):
    path, cache = tmp_path / "model.gguf", tmp_path / "cache" / "sha256.json"
    path.write_bytes(b"one")
    first = files.sha256_file(path, cache)
    assert first == files.sha256_bytes(b"one")
    entry = json.loads(cache.read_text())[str(path.resolve())]
    assert entry["sha256"] == first
    # Same path, size, mtime and inode: the cache answers, the file is not read again.
    planted = "f" * 64
    cache.write_text(json.dumps({str(path.resolve()): {**entry, "sha256": planted}}))
    assert files.sha256_file(path, cache) == planted
    # Without a cache, the file is always read: what a corruption check needs.
    assert files.sha256_file(path) == first
    # Changed (here: other size), it is hashed again and the cache updated.
    path.write_bytes(b"other")
    assert files.sha256_file(path, cache) == files.sha256_bytes(b"other")
    assert json.loads(cache.read_text())[str(path.resolve())]["sha256"] == files.sha256_bytes(b"other")


def test_a_broken_or_unwritable_cache_costs_only_time(tmp_path):
    path = tmp_path / "model.gguf"
    path.write_bytes(b"data")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert files.sha256_file(path, broken) == files.sha256_bytes(b"data")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert files.sha256_file(path, blocker / "cache.json") == files.sha256_bytes(b"data")


# ---------------------------------------------------------------------------------------------
# JSON


def test_json_forms_do_not_depend_on_key_order(tmp_path):
    a = {"b": [1, {"z": "é", "a": None}], "a": 1.5}
    b = {"a": 1.5, "b": [1, {"a": None, "z": "é"}]}
    assert files.canonical_json(a) == files.canonical_json(b) == '{"a":1.5,"b":[1,{"a":null,"z":"é"}]}'
    assert files.pretty_json(a) == files.pretty_json(b) and files.pretty_json(a).endswith("}\n")
    files.write_json(tmp_path / "x.json", a)
    assert json.loads((tmp_path / "x.json").read_text(encoding="utf-8")) == a
