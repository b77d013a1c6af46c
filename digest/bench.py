"""`digest bench`: the same digest's requests through the sequential and the batching engine.

Both engines get the same requests (the bundled sample feeds, the default prompts and limits), the
same model and the same thread count, in one process, one after the other, several times. The peak
memory of a whole `digest run` is measured in a child process.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Callable, Sequence

from .config import Config
from .engine import create_engine
from .engine.base import Generation, Request
from .engine.llama import default_threads
from .feeds import samples_dir
from .pipeline import generate, judge_of, load_feeds, sampling_of, select_stories
from .quality import Judge
from .prompts import Templates, build_requests

BENCH_DAY = date(2026, 1, 1)
MEMORY_MARGIN = 300 * 1024 * 1024


@dataclass
class Row:
    engine: str
    slots: int
    wall_s: list[float] = field(default_factory=list)
    completion_tokens: int = 0
    prompt_tokens: int = 0
    prompt_tokens_decoded: int = 0
    decode_steps: int = 0

    @property
    def median_wall_s(self) -> float:
        return statistics.median(self.wall_s)

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.median_wall_s if self.wall_s else 0.0


@dataclass
class Report:
    model: str
    threads: int
    runs: int
    max_tokens: int
    requests: int
    rows: list[Row]
    memory: dict = field(default_factory=dict)
    decode: list[dict] = field(default_factory=list)

    def baseline(self, engine: str = "sequential") -> Row | None:
        return next((r for r in self.rows if r.engine == engine), None)

    def speedup(self, row: Row, baseline: str = "sequential") -> float | None:
        base = self.baseline(baseline)
        return base.median_wall_s / row.median_wall_s if base and row.wall_s else None

    def to_json(self) -> str:
        rows = []
        for row in self.rows:
            data = asdict(row)
            data.update(median_wall_s=round(row.median_wall_s, 3), tokens_per_s=round(row.tokens_per_s, 1),
                        speedup=round(self.speedup(row) or 0, 3),
                        speedup_vs_reread=round(self.speedup(row, "sequential-reread") or 0, 3))
            rows.append(data)
        out = {k: v for k, v in asdict(self).items() if k != "rows"}
        out["rows"] = rows
        return json.dumps(out, indent=2)


def bench_inputs(config: Config) -> tuple[list[Request], Judge]:
    """The requests of the digest that `make run` writes (bundled samples, default prompts), and the
    judge of their quality checks."""
    feeds, _ = load_feeds(config, samples_dir())
    topics, _ = select_stories(config, feeds, [])
    templates = Templates.load(config.prompts_path)
    requests = build_requests(topics, BENCH_DAY, templates, run_seed=config.generation.seed,
                              max_tokens=config.generation.max_tokens, sampling=sampling_of(config))
    return requests, judge_of(config, topics, BENCH_DAY, templates)


def bench_requests(config: Config) -> list[Request]:
    return bench_inputs(config)[0]


def _measure(run_once: Callable[[], Generation], row: Row, runs: int, say: Callable[[str], None]) -> None:
    for run in range(runs):
        generation = run_once()
        s = generation.stats
        row.wall_s.append(s.wall_seconds)
        row.completion_tokens, row.prompt_tokens = s.completion_tokens, s.prompt_tokens
        row.prompt_tokens_decoded, row.decode_steps = s.prompt_tokens_decoded, s.decode_steps
        say(f"{row.engine} slots={row.slots or 'all'} run {run + 1}/{runs}: {s.wall_seconds:.2f} s, "
            f"{s.completion_tokens} tokens, {s.tokens_per_second:.0f} tok/s")


def decode_throughput(config: Config, batch_sizes: Sequence[int], *, tokens: int = 128,
                      say: Callable[[str], None] = lambda m: None) -> list[dict]:
    """Steady decoding: B sequences of the sample digest's prompts, each generating exactly `tokens`
    tokens (end-of-generation ignored), as llama-batched-bench measures text generation (S_TG)."""
    import dataclasses

    base = [r for r in bench_requests(config) if not r.grammar]  # free text, as llama-batched-bench
    out = []
    with create_engine("batched", config.model_path, threads=config.model.threads or default_threads(),
                       n_gpu_layers=config.model.n_gpu_layers) as engine:
        for size in batch_sizes:
            requests = [dataclasses.replace(base[i % len(base)], key=f"decode{i}", max_tokens=tokens, ignore_eos=True,
                                            seed=i) for i in range(size)]
            engine.generate(requests[:1])
            s = engine.generate(requests).stats
            out.append({"batch": size, "generated": s.completion_tokens,
                        "generation_s": round(s.wall_seconds - s.prompt_seconds, 3),
                        "tokens_per_s": round(s.generation_tokens_per_second, 1)})
            say(f"decode B={size}: {s.generation_tokens_per_second:.1f} tok/s")
    return out


def server_row(config: Config, requests: Sequence[Request], binary: Path, runs: int, threads: int,
               say: Callable[[str], None] = lambda m: None) -> Row:
    """llama.cpp's own llama-server as a peer: the same requests, all at once over HTTP (digest/peer.py)."""
    from .peer import requests_json, server_for

    row = Row("llama-server", len(requests))
    bodies = requests_json(requests)
    with server_for(binary, config.model_path, requests, threads=threads, n_ctx=config.model.n_ctx,
                    n_gpu_layers=config.model.n_gpu_layers) as server:
        say(f"llama-server: {' '.join(server.command)}")
        server.run_once(bodies[:1])  # warm-up, as for the engines
        for run in range(runs):
            wall, tokens = server.run_once(bodies)
            row.wall_s.append(wall)
            row.completion_tokens = tokens
            row.prompt_tokens = row.prompt_tokens_decoded = server.prompt_tokens
            say(f"llama-server -np {len(requests)} run {run + 1}/{runs}: {wall:.2f} s, {tokens} tokens, "
                f"{tokens / wall:.0f} tok/s")
    return row


def run_bench(config: Config, *, runs: int = 3, slots: Sequence[int] = (0,), sequential: bool = True,
              checks: bool = True, memory: bool = True, decode: Sequence[int] = (), say: Callable[[str], None] = lambda m: None,
              llama_server: Path | None = None) -> Report:
    requests, judge = bench_inputs(config)
    if llama_server is not None:
        from .peer import check_binary

        check_binary(llama_server)  # before minutes of the other engines
    g = config.generation
    threads = config.model.threads or default_threads()
    model = config.model_path
    rows: list[Row] = []
    engines = (["sequential", "sequential-reread"] if sequential else []) + ["batched"] + (["batched+checks"] if checks else [])
    for name in engines:
        for n in (slots if name == "batched" else (0,)):
            row = Row(name, n)
            if name.startswith("sequential"):
                # The obvious user code: one create_chat_completion after another. "sequential" keeps
                # llama-cpp-python's default, which reuses the previous prompt's matching prefix (the
                # fastest baseline); "sequential-reread" resets before each call and reads every prompt
                # whole, the loop that the batching engine's target was first stated against.
                from .engine.sequential import SequentialEngine

                engine = SequentialEngine(model, n_ctx=config.model.n_ctx, threads=threads,
                                          n_gpu_layers=config.model.n_gpu_layers, reuse_prefix=name == "sequential")
            else:
                engine = create_engine("batched", model, n_ctx=config.model.n_ctx, threads=threads,
                                       n_gpu_layers=config.model.n_gpu_layers, slots=n)
            if name == "batched+checks":
                # What `digest run` does: the same requests, plus the quality checks' extra tries.
                # (Timing only: a section with no usable try is not an error here.)
                run_once = lambda: generate(engine, requests, judge, candidates=g.candidates,  # noqa: E731
                                            retries=g.retries, require_all=False).generation
            else:
                run_once = lambda: engine.generate(requests)  # noqa: E731
            with engine:
                engine.generate(requests[:1])  # warm-up: page the weights in, start the thread pool
                _measure(run_once, row, runs, say)
            rows.append(row)
    if llama_server is not None:
        rows.append(server_row(config, requests, llama_server, runs, threads, say))
    report = Report(model.name, threads, runs, config.generation.max_tokens, len(requests), rows)
    if decode:
        report.decode = decode_throughput(config, decode, say=say)
    if memory:
        say("measuring the peak memory of a whole `digest run` in a child process")
        report.memory = measure_run_memory(config, model)
    return report


def measure_run_memory(config: Config, model: Path) -> dict:
    """Peak RSS of a `digest run` on the samples, against model file + KV cache + 300 MB."""
    with tempfile.TemporaryDirectory() as out:
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        command = [sys.executable, "-m", "digest.cli", "run", "--sample-feeds", "--quiet", "--out", out,
                   "--model", str(model), "--engine", "batched", "--date", BENCH_DAY.isoformat()]
        if config.source:
            command += ["--config", str(config.source)]
        done = subprocess.run(command, capture_output=True, text=True)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    kv = kv_cache_bytes(config, model)
    limit = model.stat().st_size + kv + MEMORY_MARGIN
    return {
        "peak_rss_bytes": peak if peak > before * 1024 else None,
        "model_bytes": model.stat().st_size,
        "kv_cache_bytes": kv,
        "limit_bytes": limit,
        "within_limit": peak <= limit,
        "exit_code": done.returncode,
    }


def kv_cache_bytes(config: Config, model: Path) -> int:
    """The batching engine's KV cache for the bench digest: cells x layers x (K + V) in f16."""
    from .engine.batched import BatchedEngine

    requests = bench_requests(config)
    with BatchedEngine(model, n_ctx=config.model.n_ctx, slots=config.generation.slots) as engine:
        return engine.kv_cache_bytes(requests)
