"""The tables of `digest bench` and `digest eval` for people (their --json is the reports' own
`to_json`): what the CLI prints after the work is done."""

from __future__ import annotations

import typer
from rich.console import Console


def _console(width: int) -> Console:
    """stdout for a table at least `width` wide, its text as it is: a model name or a section's text
    holding `[tag]` or `:name:` is neither rich markup nor an emoji code."""
    return Console(highlight=False, markup=False, emoji=False, width=max(width, Console().width))


def _print_whole(table) -> None:
    """`table` on stdout at its natural width (or the terminal's, if wider), so that no cell is cropped
    however narrow the terminal or a file is: a long row label widens the table instead of cutting the
    numbers beside it to an ellipsis."""
    wide = Console(highlight=False, markup=False, emoji=False, width=1 << 14)  # measured as _console prints
    _console(wide.measure(table).maximum).print(table)


def show_bench(report) -> None:
    """A `bench.run.Report` as a table of rows, then the backend, decode, ceiling and memory lines."""
    from rich.table import Table

    table = Table(title=f"digest bench: {report.requests} sections of the sample digest, {report.model}, "
                        f"{report.threads} threads, max {report.max_tokens} tokens, {report.runs} interleaved runs "
                        "(medians; ratios: median of per-run tok/s ratios)")
    baselines = report.baselines
    short = lambda label: label.replace("sequential-reread", "re-read").replace("sequential", "loop")  # noqa: E731
    for column in ("engine", "slots", "wall s", "gen tokens", "tok/s", "prompt tok", "prompt decoded", "steps",
                   *(f"x {short(b.label)}" for b in baselines)):
        table.add_column(column, justify="left" if column == "engine" else "right", no_wrap=column == "engine")
    ratio = lambda value: f"{value:.2f}x" if value else "-"  # noqa: E731
    for row in report.rows:
        table.add_row(row.label, str(row.slots or "all") if row.engine.startswith("batched") else "-",
                      f"{row.median_wall_s:.2f}", str(row.completion_tokens), f"{row.tokens_per_s:.1f}",
                      str(row.prompt_tokens), str(row.prompt_tokens_decoded), str(row.decode_steps or "-"),
                      *(ratio(report.speedup(row, b)) for b in baselines))
    _print_whole(table)
    cost = report.checks_cost()
    if cost.get("wall_ratio"):
        typer.echo(f"batched+checks (prevention, checks, retries) against batched: {cost['wall_ratio']:.2f}x the wall "
                   f"time (median of per-run ratios); {cost['sampled_per_kept'] or 0:.2f} tokens sampled per token kept")
    system = report.system
    typer.echo(f"backend: {', '.join(system.get('backends', [])) or '?'}; layers offloaded to a GPU: "
               f"{system.get('layers_offloaded', 0)} of {system.get('layers', 0) + 1}"
               f"{'' if system.get('gpu_offload_supported') else ' (this llama-cpp-python build has no GPU backend)'}")
    native = report.native
    for d in report.decode:
        line = (f"steady decode, batch {d['batch']}, 128 prompt + 128 new tokens: {d['tokens_per_s']} tok/s")
        if d.get("guarded_tokens_per_s") is not None:
            line += (f"; with the fact guard {d['guarded_tokens_per_s']} tok/s (it costs {d['guard_cost'] * 100:.1f}%, "
                     f"median of {len(d['rounds']['on'])} interleaved rounds)")
        if native:
            n = native["batches"][d["batch"]]
            line += f"; llama-batched-bench {n['native']} tok/s: {n['ratio'] * 100:.0f}% of native (per round: {n['ratios']})"
        typer.echo(line)
    for row in report.rows:
        phases = row.phases
        if phases:
            wall = sum(phases.values())
            typer.echo(f"phases, {row.named} (its median run, {wall:.2f} s): " + ", ".join(
                f"{name} {seconds:.2f} s ({seconds / wall * 100:.0f}%)" for name, seconds in phases.items() if seconds >= 0.005))
    for row in report.rows:
        if row.ceiling_s:
            typer.echo(f"simulated ceiling, {row.named}: {row.ceiling_s:.2f} s at llama.cpp's "
                       f"native rates; measured {row.median_wall_s:.2f} s ({(row.of_ideal or 0) * 100:.0f}% of ideal)")
    server = report.find("llama-server")
    for row in report.rows:
        ratio = report.wall_ratio(row, server) if server is not None and row is not server else None
        if ratio:
            typer.echo(f"{row.named} against llama-server: {1 / ratio:.2f}x as fast "
                       f"({row.median_wall_s:.2f} s against {server.median_wall_s:.2f} s; median of per-run ratios)")
    if report.memory:
        m = report.memory
        mib = lambda b: f"{(b or 0) / 2**20:.0f} MiB"  # noqa: E731
        typer.echo(f"peak memory of a run: {mib(m['peak_rss_bytes'])} (limit: model {mib(m['model_bytes'])} + "
                   f"KV cache {mib(m['kv_cache_bytes'])} + 300 MiB = {mib(m['limit_bytes'])}): "
                   + (f"the run FAILED (exit {m['exit_code']})" if m["exit_code"]
                      else f"{'within' if m['within_limit'] else 'OVER'} the limit"))



def show_eval(report, worst: int) -> None:
    """An `evaluate.EvalReport`: pass rates per check and set, the totals, and the `worst` sections."""
    from rich.table import Table

    sets = report.sets()
    fake = " (FAKE ENGINE: canned text, not a model)" if report.fake else ""
    table = Table(title=f"digest eval: {len(report.sections)} sections from {len(report.inputs)} inputs, "
                        f"{report.model}{fake}; pass rates on the first try / after retries")
    table.add_column("check", justify="left")
    table.add_column("sections", justify="right")
    for name in sets:
        table.add_column(f"{name}: first", justify="right")
        table.add_column(f"{name}: final", justify="right")
    rows = {name: {} for name in sets}
    for name in sets:
        for check, applied, first, final in report.by_check(name):
            rows[name][check] = (applied, first, final)
    checks = list(dict.fromkeys(check for name in sets for check in rows[name]))
    for check in checks:
        cells = []
        for name in sets:
            applied, first, final = rows[name].get(check, (0, 0, 0))
            cells += [f"{first / applied:.0%}" if applied else "-", f"{final / applied:.0%}" if applied else "-"]
        table.add_row(check, str(sum(rows[name].get(check, (0,))[0] for name in sets)), *cells)
    _print_whole(table)
    for name in sets:
        summary = report.summary(name)
        n, first, final = summary["sections"], summary["first_try"]["passed"], summary["final"]["passed"]
        typer.echo(f"{name}: pass every check: first try {first} of {n} ({first / n:.1%}), after retries "
                   f"{final} of {n} ({final / n:.1%}); {summary['tries']} tries")
    typer.echo(f"pass every check: {sum(s.passed for s in report.sections)} of {len(report.sections)} sections "
               f"({report.pass_rate:.1%}; first try {report.first_pass_rate:.1%}); "
               f"{report.stats.completion_tokens} tokens kept of {report.stats.sampled_tokens} sampled "
               f"({report.stats.rollbacks} sentences undone) in {report.wall_seconds:.1f} s{fake}")
    for name, c in report.coherence.items():
        reference = f"{c['reference']:.2f} ({c['reference_paragraphs']} published paragraphs)" \
            if c["reference"] is not None else "none given"
        typer.echo(f"{name}: coherence under {c['reader']}: {c['nll_per_token']:.2f} nats per token over "
                   f"{c['paragraphs']} paragraphs (lower reads easier); published: {reference}; "
                   f"words shuffled: {c['floor']:.2f}")
    for s in report.worst(worst):
        if s.passed:
            break
        typer.echo(f"\n{s.key}: fails {', '.join(s.failures)}\n  {s.text or s.raw}")

