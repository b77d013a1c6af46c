"""The `digest` command: a thin typer app over the pipeline (flags in, printing out).

Expected failures (`DigestError`) become one line on stderr and a documented exit code (console.py).
"""

from __future__ import annotations

import json
import os
import re
from datetime import date, datetime, timezone
from functools import partial
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from . import pipeline
from .config import CONFIG_NAME, Config, apply_flags, check_one_engine, default_toml, load_config
from .console import OneLineErrors, err, expected_errors, warning
from .engine import ENGINES, engine_of
from .errors import EXIT_INVALID, EXIT_LOCKED, ConfigError, DigestError, OutputError
from .interrupts import sigterm_as_interrupt
from .progress import Reporter
from .resources import samples_dir
from .models.cli import app as models_app
from .reports import show_bench, show_eval
from .runlog import run_log

app = typer.Typer(
    cls=OneLineErrors,
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Write the daily AI digest post from feeds with a local language model, offline.",
)
app.add_typer(models_app, name="models")


def _version() -> str:
    """digest's version, from the installed package's metadata."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("digest")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"digest {_version()}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_show_version, help="Print digest's version and exit.")] = False,
) -> None:
    pass


_DEFAULTS = Config()  # the built-in settings, which the help texts quote
ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help=f"Config file (default: ./{CONFIG_NAME} if present, else built-in defaults).")]


@app.command()
def run(
    config_paths: Annotated[Optional[list[Path]], typer.Option("--config", "-c", help=f"Config file (default: ./{CONFIG_NAME} if present, else built-in defaults). Repeat it to write several posts, one per config and each to its own [output] dir, through one batch.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Hugo site root; the post goes to OUT/content/posts/ (default: [output] dir).")] = None,
    feeds_from: Annotated[Optional[Path], typer.Option("--feeds-from", help="Read feeds from DIR/topics.xml and DIR/trending.xml instead of the network.")] = None,
    snapshot: Annotated[Optional[Path], typer.Option("--snapshot", help="Run from a snapshot that 'digest fetch --to DIR' wrote, each file checked against its index; no network.")] = None,
    strict_feeds: Annotated[Optional[bool], typer.Option("--strict-feeds", help="Fail when any feed fails, instead of filling its section from the other feed.")] = None,
    sample_feeds: Annotated[bool, typer.Option("--sample-feeds", help="Use the sample feeds bundled with digest (offline).")] = False,
    day: Annotated[Optional[str], typer.Option("--date", help="Write the post for this day, YYYY-MM-DD (default: today, UTC).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing post for the same day.")] = False,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="A model name from 'digest models list', or a GGUF file (default: the embedded SmolLM2-135M).")] = None,
    engine: Annotated[Optional[str], typer.Option("--engine", help=f"Generation engine: {', '.join(ENGINES)}.")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Run seed; the same inputs and seed give the same post.")] = None,
    topics: Annotated[Optional[int], typer.Option("--topics", help=f"Number of topics (default {_DEFAULTS.feeds.topics.count}).")] = None,
    trending: Annotated[Optional[int], typer.Option("--trending", help=f"Number of trending headlines (default {_DEFAULTS.feeds.trending.count}).")] = None,
    max_tokens: Annotated[Optional[int], typer.Option("--max-tokens", help="Token limit of each section.")] = None,
    temperature: Annotated[Optional[float], typer.Option("--temperature", help="Sampling temperature (0: greedy).")] = None,
    top_k: Annotated[Optional[int], typer.Option("--top-k", help="Top-k sampling (0: off).")] = None,
    top_p: Annotated[Optional[float], typer.Option("--top-p", help="Top-p (nucleus) sampling.")] = None,
    min_p: Annotated[Optional[float], typer.Option("--min-p", help="Min-p sampling.")] = None,
    repeat_penalty: Annotated[Optional[float], typer.Option("--repeat-penalty", help="Penalty for repeating recent tokens (1: off).")] = None,
    slots: Annotated[Optional[int], typer.Option("--slots", help="Sections generated at once by the batched engine (0: all).")] = None,
    candidates: Annotated[Optional[int], typer.Option("--candidates", help=f"Tries of each section generated side by side; the one that passes most quality checks is kept (default {_DEFAULTS.generation.candidates}).")] = None,
    ctx: Annotated[Optional[int], typer.Option("--ctx", help="Context size in tokens (0: automatic).")] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", help="CPU threads (0: one per core).")] = None,
    n_gpu_layers: Annotated[Optional[int], typer.Option("--n-gpu-layers", help="Layers to offload to a GPU (-1: all; needs a GPU build).")] = None,
    chat_format: Annotated[Optional[str], typer.Option("--chat-format", help="The chat template where the GGUF has none, or instead of its own: a llama.cpp built-in (chatml, gemma, llama3, ...) or a Jinja file.")] = None,
    prompts: Annotated[Optional[Path], typer.Option("--prompts", help="Folder of prompt templates (default: the project's prompts/).")] = None,
    title: Annotated[Optional[str], typer.Option("--title", help="Post title in the front matter.")] = None,
    author: Annotated[Optional[str], typer.Option("--author", help="Post author in the front matter.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the post's path (and errors).")] = False,
    lock_wait: Annotated[Optional[float], typer.Option("--lock-wait", help=f"Seconds to wait for another run on the same output to finish, then exit {EXIT_LOCKED} (default {_DEFAULTS.output.lock_wait:g}).")] = None,
    no_history: Annotated[bool, typer.Option("--no-history", help="Pick topics even if covered on other days (see [history] days).")] = False,
    log_file: Annotated[Optional[Path], typer.Option("--log-file", help="Append one line per stage, with timings and the exit code, to this file.")] = None,
) -> None:
    """Write today's post: fetch feeds, pick topics, generate the sections, write the Markdown file.

    The post's path is the last line on stdout.
    """
    with expected_errors(), sigterm_as_interrupt(), run_log(log_file) as log:
        configs = [(str(path) if path else "defaults", load_config(path)) for path in (config_paths or [None])]
        for _, config in configs:
            apply_flags(config, {
                "model.path": ("--model", _model_flag(model)),
                "output.lock_wait": ("--lock-wait", lock_wait),
                "generation.engine": ("--engine", engine),
                "generation.seed": ("--seed", seed),
                "feeds.topics.count": ("--topics", topics),
                "feeds.trending.count": ("--trending", trending),
                "generation.max_tokens": ("--max-tokens", max_tokens),
                "generation.temperature": ("--temperature", temperature),
                "generation.top_k": ("--top-k", top_k),
                "generation.top_p": ("--top-p", top_p),
                "generation.min_p": ("--min-p", min_p),
                "generation.repeat_penalty": ("--repeat-penalty", repeat_penalty),
                "generation.slots": ("--slots", slots),
                "generation.candidates": ("--candidates", candidates),
                "model.n_ctx": ("--ctx", ctx),
                "model.threads": ("--threads", threads),
                "model.n_gpu_layers": ("--n-gpu-layers", n_gpu_layers),
                "model.chat_format": ("--chat-format", _chat_format_flag(chat_format)),
                "generation.prompts_dir": ("--prompts", str(prompts.resolve()) if prompts else None),
                "blog.title": ("--title", title),
                "blog.author": ("--author", author),
                "feeds.strict": ("--strict-feeds", strict_feeds),
            })
        feeds_from = _feeds_source(feeds_from, snapshot, sample_feeds)
        when = _parse_day(day)
        now = _source_date_epoch()
        report = Reporter(quiet=quiet)
        if len(configs) > 1:
            _run_many(configs, out=out, feeds_from=feeds_from, snapshot=snapshot, when=when, now=now, force=force,
                      no_history=no_history, report=report)
            return
        _run_one(configs[0][1], log, out=out, feeds_from=feeds_from, snapshot=snapshot, when=when, now=now,
                 force=force, no_history=no_history, report=report, quiet=quiet)


def _run_one(config, log, *, out, feeds_from, snapshot, when, now, force, no_history, report, quiet) -> None:
    """`digest run` of one config: its post, its warnings, the summary line and the post's path last."""
    log.line(f"start out={pipeline.site_of(config, out).root} engine={config.generation.engine} "
             f"model={config.model_path}")
    with report.progress() as progress:
        result = pipeline.run(
            config, lambda: engine_of(config, warn=warning), day=when, now=now, out=out, feeds_from=feeds_from,
            snapshot=snapshot.resolve() if snapshot else None, force=force, progress=progress, status=report.say,
            no_history=no_history, stage=log.stage,
        )
    log.outcome = f"wrote {result.path}" if result.written else "nothing to do: " + "; ".join(result.warnings)
    for message in result.warnings:
        if result.written:
            warning(message)
        elif not quiet:
            err.print(f"digest: {message}", markup=False)
    if result.written and result.stats:
        s = result.stats
        chosen = result.chosen
        report.tell(f"wrote {len(result.post.topics)} topics: {s.completion_tokens} tokens in "
                    f"{s.wall_seconds:.1f} s ({s.tokens_per_second:.0f} tok/s); {chosen.passed} of "
                    f"{len(chosen.scores)} sections pass every quality check; manifest: {result.manifest}")
    typer.echo(str(result.path))


def _run_many(configs, *, out, feeds_from, snapshot, when, now, force, no_history, report) -> None:
    """`digest run --config a.toml --config b.toml`: one post per config, through one shared engine."""
    if out is not None:
        raise ConfigError("--out with several --config: each config's [output] dir says where its post goes")
    check_one_engine(configs)
    first = configs[0][1]
    with report.progress() as progress, engine_of(first, warn=warning) as engine:
        outcomes = pipeline.run_many(configs, engine, progress=progress, status=report.say, day=when, now=now,
                                     feeds_from=feeds_from, snapshot=snapshot.resolve() if snapshot else None,
                                     force=force, no_history=no_history)
    failed = None
    for (name, _), outcome in zip(configs, outcomes):
        if isinstance(outcome, DigestError):
            err.print(f"digest: error: {name}: {outcome}", markup=False)
            failed = failed or outcome
        elif isinstance(outcome, BaseException):
            raise outcome
        elif outcome.written:
            for message in outcome.warnings:
                warning(f"{name}: {message}")
            typer.echo(str(outcome.path))
        elif not report.quiet:
            err.print(f"digest: {name}: " + "; ".join(outcome.warnings), markup=False)
    if failed is not None:
        raise typer.Exit(failed.exit_code)


def _feeds_source(feeds_from: Path | None, snapshot: Path | None, sample_feeds: bool) -> Path | None:
    """The --feeds-from folder (the bundled samples for --sample-feeds); at most one source of feeds."""
    given = [flag for flag, value in (("--feeds-from", feeds_from), ("--snapshot", snapshot),
                                      ("--sample-feeds", sample_feeds)) if value]
    if len(given) > 1:
        raise typer.BadParameter(f"give only one of {', '.join(given)}", param_hint=given[0])
    return samples_dir() if sample_feeds else feeds_from


def _model_flag(value: str | None) -> str | None:
    """`--model`: a registry name or a GGUF path, as the absolute path of the file."""
    from .models.registry import resolve_model

    return str(resolve_model(value)) if value else None


def _chat_format_flag(value: str | None) -> str | None:
    """`--chat-format`: a built-in template's name as it is, a Jinja file as its absolute path."""
    from .engine.chat import is_template_file

    return str(Path(value).resolve()) if value and is_template_file(value) else value


def _source_date_epoch() -> datetime | None:
    """The post's time from SOURCE_DATE_EPOCH (the reproducible-builds convention), if set."""
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if not value:
        return None
    try:
        return datetime.fromtimestamp(int(value), timezone.utc)
    except (ValueError, OverflowError, OSError):
        raise ConfigError(f"SOURCE_DATE_EPOCH must be a Unix time in seconds, not {value!r}")


def _parse_day(value: str | None) -> date | None:
    """`--date`: exactly YYYY-MM-DD (not the other forms date.fromisoformat takes, such as 20261120)."""
    if value is None:
        return None
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        raise typer.BadParameter(f"expected YYYY-MM-DD, got {value!r}", param_hint="--date")
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(f"{value} is not a date: {exc}", param_hint="--date")


@app.command()
def bench(
    config_path: ConfigOpt = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="A model name from 'digest models list', or a GGUF file (default: the embedded SmolLM2-135M).")] = None,
    runs: Annotated[int, typer.Option("--runs", min=1, help="Timed runs of each engine (the median is reported).")] = 3,
    slots: Annotated[str, typer.Option("--slots", help="Comma-separated slot counts for the batched engine (0: all sections), e.g. 1,4,8,16.")] = "0",
    threads: Annotated[Optional[int], typer.Option("--threads", help="CPU threads for both engines (0: one per core).")] = None,
    max_tokens: Annotated[Optional[int], typer.Option("--max-tokens", help="Token limit of each section.")] = None,
    n_gpu_layers: Annotated[Optional[int], typer.Option("--n-gpu-layers", help="Layers to offload to a GPU (-1: all).")] = None,
    chat_format: Annotated[Optional[str], typer.Option("--chat-format", help="The chat template where the GGUF has none, or instead of its own: a llama.cpp built-in (chatml, gemma, llama3, ...) or a Jinja file.")] = None,
    sequential: Annotated[bool, typer.Option("--sequential/--no-sequential", help="Also run the sequential baseline.")] = True,
    checks: Annotated[bool, typer.Option("--checks/--no-checks", help="Also time what `digest run` does: the batched engine plus the quality checks' extra tries (--candidates, [generation] retries).")] = True,
    candidates: Annotated[Optional[int], typer.Option("--candidates", help="Tries of each section side by side, for the row with checks.")] = None,
    memory: Annotated[bool, typer.Option("--memory/--no-memory", help="Measure the peak memory of a whole run.")] = True,
    decode: Annotated[str, typer.Option("--decode", help="Batch sizes for the steady decode measurement (128 tokens per sequence, end-of-generation ignored, like llama-batched-bench's S_TG); empty: skip.")] = "1,16",
    loop_model: Annotated[Optional[list[str]], typer.Option("--loop-model", help="Also time the prefix-reusing loop on this model (a registry name or a GGUF file; repeatable), e.g. the published Q4_1.")] = None,
    native: Annotated[Optional[Path], typer.Option("--native", help="A llama-batched-bench binary (make peers): compare the steady decode with llama.cpp's own, interleaved, and give the batched rows a simulated ceiling.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")] = False,
    requests_out: Annotated[Optional[Path], typer.Option("--requests-out", help="Also write the bench's requests to this file as JSON (messages, max_tokens, seed, sampling settings, stop, grammar), for other tools.")] = None,
    configs: Annotated[int, typer.Option("--configs", min=1, help="Also time N digests (N run seeds) in one batch against the same N one after another, as 'digest run --config ... --config ...' does.")] = 1,
    server: Annotated[Optional[str], typer.Option("--server", help="Also time --engine openai against this OpenAI-compatible server (its base URL, e.g. http://127.0.0.1:8000/v1).")] = None,
    llama_server: Annotated[Optional[Path], typer.Option("--llama-server", help="Also time llama.cpp's llama-server (this binary; `make peers` builds build/llama.cpp/bin/llama-server), fed the same requests at once over HTTP on 127.0.0.1.")] = None,
) -> None:
    """Time the batching engine against the one-by-one loops (and peers) on the bundled sample digest."""
    from .bench.run import run_bench
    from .bench.workload import bench_requests

    with expected_errors():
        config = load_config(config_path)
        apply_flags(config, {
            "model.path": ("--model", _model_flag(model)),
            "model.threads": ("--threads", threads),
            "generation.max_tokens": ("--max-tokens", max_tokens),
            "model.n_gpu_layers": ("--n-gpu-layers", n_gpu_layers),
            "model.chat_format": ("--chat-format", _chat_format_flag(chat_format)),
            "generation.candidates": ("--candidates", candidates),
        })
        slot_list, decode_list = _numbers(slots, "--slots"), _numbers(decode, "--decode")
        say = (lambda m: None) if as_json else (lambda m: err.print(f"[dim]{escape(m)}[/dim]", markup=True))
        if requests_out is not None:
            from .bench.peer import write_requests

            write_requests(requests_out, bench_requests(config))
            say(f"wrote the bench's requests to {requests_out}")
        loops = [Path(_model_flag(m)) for m in loop_model or []]
        report = run_bench(config, runs=runs, slots=slot_list or [0], sequential=sequential, checks=checks, memory=memory,
                           decode=decode_list, loop_models=loops, native=native, llama_server=llama_server,
                           configs=configs, server=server, say=say)
    if as_json:
        typer.echo(report.to_json())
        return
    show_bench(report)

def _numbers(text: str, flag: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(f"expected numbers separated by commas, got {text!r}", param_hint=flag)


@app.command("eval")
def eval_(
    inputs: Annotated[Optional[list[Path]], typer.Argument(help="Topic feed files (default: the bundled sample feed and the evaluation set in tests/eval/).", show_default=False)] = None,
    config_path: ConfigOpt = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="A model name from 'digest models list', or a GGUF file (default: the embedded SmolLM2-135M).")] = None,
    topics: Annotated[int, typer.Option("--topics", min=0, help="Topics taken from each input (0: as many as a run takes, [feeds.topics] count).")] = 0,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Run seed.")] = None,
    candidates: Annotated[Optional[int], typer.Option("--candidates", help="Tries of each section generated side by side; the best is kept.")] = None,
    retries: Annotated[Optional[int], typer.Option("--retries", help="Rounds of new tries for sections that fail a check.")] = None,
    prompts: Annotated[Optional[Path], typer.Option("--prompts", help="Folder of prompt templates.")] = None,
    slots: Annotated[Optional[int], typer.Option("--slots", help="Sequences decoded at once (0: all).")] = None,
    engine: Annotated[Optional[str], typer.Option("--engine", help=f"Generation engine: {', '.join(ENGINES)}.")] = None,
    chat_format: Annotated[Optional[str], typer.Option("--chat-format", help="The chat template where the GGUF has none, or instead of its own: a llama.cpp built-in (chatml, gemma, llama3, ...) or a Jinja file.")] = None,
    worst: Annotated[int, typer.Option("--worst", min=0, help="How many of the worst sections to show.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")] = False,
    which: Annotated[str, typer.Option("--set", help="Without INPUTS: the tune set, the held-out set, or all.")] = "all",
    examples: Annotated[Optional[bool], typer.Option("--examples/--no-examples", help="Put the example exchanges of examples.txt before each request ([generation] examples).", show_default=False)] = None,
    reader: Annotated[Optional[str], typer.Option("--reader", help="A model of another family (registry name or GGUF file) that reads the paragraphs: adds their coherence, mean negative log-likelihood per token.")] = None,
    reference: Annotated[Optional[Path], typer.Option("--reference", help="With --reader: a folder of published posts read the same way, for comparison (default: ../shared/seeds beside the checkout, if there).")] = None,
) -> None:
    """Score the writing: generate the sections of fixed inputs and check each one.

    Checks: length, on topic, no loops, complete, clean, faithful (no invented numbers or names), no
    title echo, on the point, Benefits and Ramifications distinct; predictions: a future date and a
    reasoning sentence. Prints a table per check with the first-try and final pass rates, per set
    (tune, holdout), and the worst sections. With --reader, each set's coherence under that model,
    beside published posts' and the same words shuffled.
    """
    from .evaluate import EVAL_SET, SETS, default_inputs, run_eval

    if which not in ("all", *SETS):
        raise typer.BadParameter(f"expected all, {' or '.join(SETS)}, got {which!r}", param_hint="--set")
    if not inputs:
        inputs = default_inputs(which)
        if len(inputs) == 1:
            warning(f"the evaluation set {EVAL_SET} is not here (it comes with a source checkout): "
                    "scoring the bundled sample feed only")
    with expected_errors():
        config = load_config(config_path)
        apply_flags(config, {
            "model.path": ("--model", _model_flag(model)),
            "generation.seed": ("--seed", seed),
            "generation.candidates": ("--candidates", candidates),
            "generation.retries": ("--retries", retries),
            "generation.prompts_dir": ("--prompts", str(prompts.resolve()) if prompts else None),
            "generation.slots": ("--slots", slots),
            "generation.engine": ("--engine", engine),
            "model.chat_format": ("--chat-format", _chat_format_flag(chat_format)),
            "generation.examples": ("--examples", examples),
        })
        reader_path = Path(_model_flag(reader)) if reader else None
        if reader_path is not None and reference is None:
            from .resources import CHECKOUT

            reference = CHECKOUT.parent / "shared" / "seeds"
        reporter = Reporter()  # on stderr, --json or not: stdout has the report alone
        with reporter.progress() as progress:
            report = run_eval(config, lambda: engine_of(config, warn=warning), inputs, topics=topics,
                              progress=progress, status=reporter.say, reader=reader_path, reference=reference)
    if as_json:
        typer.echo(report.to_json())
        return
    show_eval(report, worst)

@app.command()
def fetch(
    to: Annotated[Path, typer.Option("--to", help="Snapshot folder: DIR/topics.xml, DIR/trending.xml and DIR/index.json.")],
    config_path: ConfigOpt = None,
    strict_feeds: Annotated[Optional[bool], typer.Option("--strict-feeds", help="Fail when any feed fails (default: record the failure and go on).")] = None,
    timeout: Annotated[Optional[float], typer.Option("--timeout", help="Seconds one request may take in all.")] = None,
    retries: Annotated[Optional[int], typer.Option("--retries", help="Tries after the first on 429, 5xx, timeouts, dropped connections.")] = None,
) -> None:
    """Download the configured feeds into a snapshot folder for 'digest run --snapshot DIR'.

    A later fetch into the same folder asks only for what changed (ETag / Last-Modified).
    The folder is printed on stdout.
    """
    from .snapshot import fetch_snapshot

    with expected_errors():
        config = load_config(config_path)
        apply_flags(config, {"feeds.strict": ("--strict-feeds", strict_feeds), "feeds.timeout": ("--timeout", timeout),
                             "feeds.retries": ("--retries", retries)})
        index = fetch_snapshot(to, pipeline.feed_urls(config), strict=config.feeds.strict,
                               options={**config.feeds.fetch_options(), "on_retry": warning}, warn=warning)
        for name, entry in index["feeds"].items():
            if "error" in entry:
                warning(f"{entry['error']} (recorded in {to / 'index.json'})")
            else:
                state = "not modified" if entry["status"] == 304 else f"HTTP {entry['status']}"
                err.print(f"{name}: {state}, {entry['size']} bytes from {entry['final_url']}", markup=False)
        typer.echo(str(to))


@app.command()
def replay(
    manifest: Annotated[Path, typer.Argument(help="A manifest: SITE/.digest/manifests/YYYY-MM-DD.json.", show_default=False)],
    slots: Annotated[Optional[int], typer.Option("--slots", help="Sections at once (the post must not depend on it).")] = None,
) -> None:
    """Regenerate a post from what its manifest names and compare it with the post on disk.

    First, before any model is loaded: exit 9 when the manifest contradicts itself (its seed, a
    section's seed, a format this release does not read) or an input it names (config, post, prompt,
    model, feed file) is missing or has changed. Then exit 0 and "identical" when the regenerated
    bytes match; a unified diff and exit 1 when they differ.
    """
    from .replay import replay as replay_post

    with expected_errors():
        report = Reporter()
        with report.progress() as progress:
            outcome = replay_post(manifest, partial(engine_of, warn=warning), slots=slots, progress=progress, status=report.say)
    if outcome.note:
        warning(outcome.note)
    if outcome.identical:
        typer.echo(f"identical: {outcome.post}")
        return
    typer.echo(outcome.diff, nl=False)
    err.print(f"digest: {outcome.post} differs from its regeneration", markup=False)
    raise typer.Exit(EXIT_INVALID)


@app.command()
def check(
    posts: Annotated[list[Path], typer.Argument(help="Post files to check.", show_default=False)],
    strict: Annotated[bool, typer.Option("--strict", help="Also demand the exact layout that digest writes.")] = False,
    config_path: Annotated[Optional[Path], typer.Option("--config", "-c", help="Expect the topic sections of this config's [generation] sections (default: Benefits and Ramifications).")] = None,
) -> None:
    """Check posts against the format; print each problem as FILE:LINE: message.

    Exit 0 when every post is valid, 1 when any has a problem.
    """
    from .check import check_file
    from .sections import DEFAULT_KINDS, kinds_of

    kinds = DEFAULT_KINDS
    if config_path is not None:
        with expected_errors():
            kinds = kinds_of(load_config(config_path).generation.sections)
    bad = 0
    for path in posts:
        problems = check_file(path, strict=strict, kinds=kinds)
        for problem in problems:
            typer.echo(f"{path}:{problem.line}: {problem.message}")
        bad += bool(problems)
    err.print(f"{len(posts)} post(s) checked, {bad} with problems", markup=False)
    if bad:
        raise typer.Exit(EXIT_INVALID)


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="Where to write the config.")] = Path(CONFIG_NAME),
    prompts: Annotated[Optional[Path], typer.Option("--prompts", help="Also copy the prompt templates into this folder, to edit, and point the config's prompts_dir at it.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace existing files.")] = False,
) -> None:
    """Write a commented default config file (digest.toml), and with --prompts, copies of the prompts.

    Exit 6 when a file is there already (without --force) or cannot be written.
    """
    with expected_errors():
        from .files import output_error_saying, write_atomic
        from .resources import prompts_dir

        text = default_toml()
        targets = [path]
        if prompts is not None:
            shipped = sorted(prompts_dir().glob("*.txt"))
            targets += [prompts / f.name for f in shipped]
            # Relative to the config's folder when it can be, as every path in the config is.
            where = os.path.relpath(prompts.resolve(), path.resolve().parent)
            text = text.replace('prompts_dir = ""', f"prompts_dir = {json.dumps(where)}", 1)
        existing = [t for t in targets if t.exists()]
        if existing and not force:
            raise OutputError(f"{existing[0]} already exists (use --force to replace it)")
        cannot = output_error_saying("choose another path, or fix the folder's permissions or free space")
        if prompts is not None:
            for source in shipped:
                write_atomic(prompts / source.name, source.read_bytes(), error=cannot)
        write_atomic(path, text, error=cannot)
        typer.echo(str(path))
        if prompts is not None:
            typer.echo(str(prompts))


def main() -> None:
    app(prog_name="digest")  # OneLineErrors: a command-line mistake is one line and exit 2


if __name__ == "__main__":
    main()
