"""Output faults: a missing output folder is created; an unwritable one, a full disk or an
interrupt (Ctrl-C, SIGTERM) stops the run with one line and leaves no partial or changed post."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import PROJECT_ROOT, AtATerminal, describe
from digest import files
from digest.config import Config
from digest.errors import EXIT_FEED, EXIT_INTERRUPTED, EXIT_OUTPUT, EXIT_TERMINATED
from test_cli import DAY, assert_one_error, fake_run, no_post_written, post_file


def leftovers(folder: Path) -> list[Path]:
    # `.digest/` is where the manifest goes; a temporary file inside it still counts.
    return [p for p in folder.rglob("*") if p.name.startswith(".") and p.name != ".digest"] if folder.exists() else []


# ---------------------------------------------------------------------------------------------
# Missing and unwritable output folders


def test_missing_output_folder_is_created(run_cli, tmp_path):
    out = tmp_path / "not" / "there" / "yet"
    result = fake_run(run_cli, out)
    assert result.exit_code == 0, describe(result)
    assert post_file(out).is_file()
    assert leftovers(out) == [], "the writability probe is removed"


@pytest.mark.parametrize("blocked", ["out", "content", "posts"])
def test_output_path_blocked_by_a_file_is_exit_6(run_cli, tmp_path, blocked):
    out = tmp_path / "site"
    target = {"out": out, "content": out / "content", "posts": out / "content" / "posts"}[blocked]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("a file where a folder should be\n", encoding="utf-8")
    result = fake_run(run_cli, out)
    assert_one_error(result, EXIT_OUTPUT, "cannot write to", str(target), "--out")
    assert target.read_text(encoding="utf-8") == "a file where a folder should be\n"


def test_unwritable_output_folder_is_exit_6(run_cli, tmp_path, monkeypatch):
    # Permission bits do not stop root (the tests may run as root): refuse the file creation itself.
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    out = tmp_path / "site"
    result = fake_run(run_cli, out)
    assert_one_error(result, EXIT_OUTPUT, "Permission denied", str(out / "content" / "posts"))
    assert no_post_written(out)


def test_unwritable_output_fails_before_feeds_and_model(run_cli, tmp_path):
    # Nothing is read or loaded when the post could not be written anyway: the output error comes
    # first, even though the feeds folder and the model are missing too.
    out = tmp_path / "site"
    out.write_text("file\n", encoding="utf-8")
    result = run_cli("run", "--feeds-from", tmp_path / "no-feeds", "--model", tmp_path / "none.gguf",
                     "--out", out, "--date", DAY)
    assert_one_error(result, EXIT_OUTPUT)
    out.unlink()
    result = run_cli("run", "--feeds-from", tmp_path / "no-feeds", "--model", tmp_path / "none.gguf",
                     "--out", out, "--date", DAY)
    assert_one_error(result, EXIT_FEED)  # with the output fixed, the next fault is reported


# ---------------------------------------------------------------------------------------------
# A full disk: the old post stays, no temporary file remains


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class HalfWriter:
    """A text file whose write puts half the bytes on disk and then fails as a full disk does."""

    def __init__(self, handle):
        self._handle = handle

    def write(self, text):
        self._handle.write(text[: len(text) // 2])
        self._handle.flush()
        no_space()

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._handle.close()


@pytest.mark.parametrize("where", ["fsync", "write"])
def test_full_disk_keeps_the_old_post(run_cli, tmp_path, monkeypatch, where):
    assert fake_run(run_cli, tmp_path).exit_code == 0
    path = post_file(tmp_path)
    before = path.read_bytes()
    if where == "fsync":
        monkeypatch.setattr(files.os, "fsync", no_space)
    else:
        real_fdopen = os.fdopen
        monkeypatch.setattr(files.os, "fdopen", lambda *a, **k: HalfWriter(real_fdopen(*a, **k)))
    manifest = manifest_file(tmp_path)
    manifest_before = manifest.read_bytes()
    result = fake_run(run_cli, tmp_path, "--force", "--seed", 5)
    # The manifest is written first, so the full disk is met there.
    assert_one_error(result, EXIT_OUTPUT, str(manifest), "No space left on device", "nothing was written")
    assert path.read_bytes() == before
    assert manifest.read_bytes() == manifest_before
    assert leftovers(tmp_path) == []


# A real full filesystem: a 256 KiB tmpfs, filled to the last byte (or all but a few pages).




def fill(folder: Path) -> Path:
    """Write a file into `folder` until not even one more byte fits; return it."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (65536, 4096, 1):
            while True:
                try:
                    if os.write(fd, b"x" * size) < size:
                        break
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    break
        with pytest.raises(OSError) as full:
            os.write(fd, b"x")
        assert full.value.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def digest_process(*args) -> SimpleNamespace:
    """`digest ARGS` in its own process, as a user runs it (typer's traceback display included)."""
    done = subprocess.run([sys.executable, "-m", "digest.cli", *map(str, args)], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=300)
    return SimpleNamespace(exit_code=done.returncode, stdout=done.stdout, stderr=done.stderr, exception=None)


@pytest.mark.parametrize("free", [0, 8192], ids=["full-to-the-last-byte", "8-KiB-free"])
def test_a_really_full_disk_is_one_line_and_exit_6(small_tmpfs, free):
    out = small_tmpfs / "site"
    filler = fill(small_tmpfs)
    if free:
        os.truncate(filler, filler.stat().st_size - free)
    result = digest_process("run", "--engine", "fake", "--sample-feeds", "--out", out, "--date", DAY)
    error = assert_one_error(result, EXIT_OUTPUT, str(out), "choose another --out")
    assert "No space left on device" in error or "database or disk is full" in error, error
    assert no_post_written(out) and leftovers(out) == []
    # With room again, the same run writes its post.
    filler.unlink()
    again = digest_process("run", "--engine", "fake", "--sample-feeds", "--out", out, "--date", DAY)
    assert again.exit_code == 0, describe(again)
    assert post_file(out).is_file() and manifest_file(out).is_file()


def test_no_room_for_the_lock_holders_pid_is_exit_6(run_cli, tmp_path, monkeypatch):
    from digest import lock

    monkeypatch.setattr(lock.os, "pwrite", no_space)
    result = fake_run(run_cli, tmp_path)
    assert_one_error(result, EXIT_OUTPUT, "No space left on device", str(tmp_path / ".digest" / "lock"))
    assert no_post_written(tmp_path)


def manifest_file(out: Path) -> Path:
    return out / ".digest" / "manifests" / f"{DAY}.json"


def test_a_post_is_never_on_disk_without_its_manifest(run_cli, tmp_path):
    """The manifest's folder is blocked: the run fails with one line and writes no post, so a rerun
    does not meet an unprovable post that it would leave alone."""
    (tmp_path / ".digest").mkdir()
    (tmp_path / ".digest" / "manifests").write_text("a file where a folder should be\n", encoding="utf-8")
    result = fake_run(run_cli, tmp_path)
    assert_one_error(result, EXIT_OUTPUT, str(tmp_path / ".digest" / "manifests"), "nothing was written")
    assert no_post_written(tmp_path)
    (tmp_path / ".digest" / "manifests").unlink()
    again = fake_run(run_cli, tmp_path)
    assert again.exit_code == 0, describe(again)
    assert post_file(tmp_path).is_file() and manifest_file(tmp_path).is_file()


@pytest.mark.parametrize("had_post", [False, True])
def test_a_post_that_cannot_be_written_puts_the_manifest_back(run_cli, tmp_path, monkeypatch, had_post):
    if had_post:
        assert fake_run(run_cli, tmp_path).exit_code == 0
    path, manifest = post_file(tmp_path), manifest_file(tmp_path)
    post_before = path.read_bytes() if had_post else None
    manifest_before = manifest.read_bytes() if had_post else None
    real = files.write_atomic

    def refuse_posts(target, text):
        if Path(target).suffix == ".md":
            raise files.output_error("write", Path(target), OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
        real(target, text)

    monkeypatch.setattr("digest.pipeline.write_atomic", refuse_posts)
    result = fake_run(run_cli, tmp_path, "--force", "--seed", 5)
    assert_one_error(result, EXIT_OUTPUT, "No space left on device")
    if had_post:
        assert path.read_bytes() == post_before and manifest.read_bytes() == manifest_before
    else:
        assert not path.exists() and not manifest.exists()
    assert leftovers(tmp_path) == []


def test_interrupt_while_writing_leaves_no_temporary_file(run_cli, tmp_path, monkeypatch):
    assert fake_run(run_cli, tmp_path).exit_code == 0
    path = post_file(tmp_path)
    before = path.read_bytes()

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "fsync", interrupted)
    result = fake_run(run_cli, tmp_path, "--force", "--seed", 5)
    assert result.exit_code == EXIT_INTERRUPTED, describe(result)
    assert result.stderr.strip().splitlines()[-1] == "digest: interrupted"
    assert path.read_bytes() == before
    assert leftovers(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# SIGINT and SIGTERM in the middle of generation, with the real model


@pytest.mark.model
@pytest.mark.parametrize("sig, code, said", [(signal.SIGINT, EXIT_INTERRUPTED, "digest: interrupted"),
                                             (signal.SIGTERM, EXIT_TERMINATED, "digest: interrupted by SIGTERM")],
                         ids=["SIGINT", "SIGTERM"])
def test_signal_mid_generation_stops_cleanly(run_cli, tmp_path, sig, code, said):
    assert Config().model_path.is_file(), "the embedded model is needed (make install)"
    out = tmp_path / "site"
    # One topic (four sections): the first decode step comes soon, and the run generates long after it.
    run = AtATerminal(["run", "--sample-feeds", "--out", out, "--date", DAY, "--topics", "1", "--max-tokens", "160"])
    try:
        # The progress bar's rate appears once the model has decoded tokens: the run is generating.
        run.wait_for("tok/s", timeout=600)
        run.process.send_signal(sig)
        returncode, stdout, stderr = run.finish(timeout=60)
    finally:
        run.kill()
    assert returncode == code, stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    assert stderr.strip().splitlines()[-1] == said, stderr
    assert stdout == ""
    assert no_post_written(out) and leftovers(out) == []
    # The next run on the same output goes through.
    again = run_cli("run", "--engine", "fake", "--sample-feeds", "--out", out, "--date", DAY)
    assert again.exit_code == 0, describe(again)
    assert post_file(out).is_file()
