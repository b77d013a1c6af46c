"""`digest bench`: the same digest's requests through the one-by-one loops, the batching engine and
any peer (llama-server), on the same model and thread count, in one process.

Runs are interleaved (run 1 of every row, then run 2 of every row, ...) and every ratio is the median
of the per-run ratios, so that a noisy machine's drift hits both sides of a ratio alike. Optionally the
steady decode rate is compared with llama.cpp's own llama-batched-bench, and the batched rows get a
simulated ceiling from those native rates. The peak memory of a whole `digest run` is measured in a
child process.

This module is the timing harness (`run_bench`, its rows and report); the workload is workload.py,
llama-batched-bench and the ceiling native.py, the memory step memory.py, llama-server peer.py.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

from ..config import Config, as_before_the_keys
from ..engine import engine_of
from ..engine.base import Generation, Request, Stats
from ..engine.llama import default_threads
from ..engine.timing import ordered
from ..pipeline import generate
from .memory import measure_run_memory
from .native import compare_native, decode_throughput, paired_median, simulated_ceiling
from .workload import bench_inputs


@dataclass
class Row:
    engine: str
    slots: int
    model: str = ""  # the model file's name, where it is not the bench's own
    variant: str = ""  # what else differs (e.g. "no examples")
    wall_s: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)  # completion tokens of each run
    completion_tokens: int = 0
    prompt_tokens: int = 0
    prompt_tokens_decoded: int = 0
    decode_steps: int = 0
    section_tokens: list[int] = field(default_factory=list)  # completion tokens of each section, last run
    # Tokens sampled in all (rolled-back sentences and discarded tries too) and of those, the ones in
    # the texts kept (the results), last run: their ratio is what prevention and retries cost in tokens.
    sampled_tokens: int = 0
    kept_tokens: int = 0
    # With --native: this row's wall time at llama.cpp's native rates (simulated_ceiling), batched rows.
    ceiling_s: float | None = None
    # Each run's seconds per phase (Stats.phases: the batching engine's own timers; empty elsewhere).
    phase_s: list[dict[str, float]] = field(default_factory=list)

    @property
    def phases(self) -> dict[str, float]:
        """The phases of the run whose wall time is the median (of an even number, the lower middle one),
        in engine.timing.PHASES' order, and `other`: that run's wall time no timer covers. So they add up
        to the wall time of one real run; empty where the engine times no phases."""
        if not self.phase_s or len(self.phase_s) != len(self.wall_s):
            return {}
        n = sorted(range(len(self.wall_s)), key=self.wall_s.__getitem__)[(len(self.wall_s) - 1) // 2]
        if not self.phase_s[n]:
            return {}
        out = {name: round(seconds, 3) for name, seconds in ordered(self.phase_s[n])}
        out["other"] = round(max(0.0, self.wall_s[n] - sum(self.phase_s[n].values())), 3)
        return out

    @property
    def of_ideal(self) -> float | None:
        """The simulated ceiling's share of the measured wall time (1.0: at native rates)."""
        return round(self.ceiling_s / self.median_wall_s, 3) if self.ceiling_s and self.median_wall_s else None

    @property
    def label(self) -> str:
        """The engine, and the model where it is not the bench's own, by its format (SmolLM2-135M-Instruct.Q4_1.gguf: Q4_1)."""
        if not self.model:
            return f"{self.engine} [{self.variant}]" if self.variant else self.engine
        stem = self.model.removesuffix(".gguf")
        return f"{self.engine} [{stem.rsplit('.', 1)[-1] if '.' in stem else stem}]"

    @property
    def named(self) -> str:
        """The label, and for a row of the batching engine its slots: how a line under the table names it."""
        return f"{self.label} slots={self.slots or 'all'}" if self.engine.startswith("batched") else self.label

    @property
    def median_wall_s(self) -> float:
        return statistics.median(self.wall_s) if self.wall_s else 0.0

    @property
    def tokens_per_s(self) -> float:
        """Median over runs of generated tokens per second of wall time."""
        rates = self.rates()
        return statistics.median(rates) if rates else 0.0

    def rates(self) -> list[float]:
        return [t / w for t, w in zip(self.tokens, self.wall_s) if w > 0]


@dataclass
class Report:
    model: str
    threads: int
    runs: int
    max_tokens: int
    requests: int
    rows: list[Row]
    system: dict = field(default_factory=dict)
    memory: dict = field(default_factory=dict)
    decode: list[dict] = field(default_factory=list)
    native: dict = field(default_factory=dict)

    def find(self, label: str) -> Row | None:
        return next((r for r in self.rows if r.label == label), None)

    @property
    def baselines(self) -> list[Row]:
        """The one-by-one loops: every ratio is against each of them."""
        return [r for r in self.rows if r.engine.startswith("sequential")]

    def speedup(self, row: Row, baseline: Row | str | None = None) -> float | None:
        """Median over interleaved runs of (row's tokens per second / baseline's, in the same run)."""
        base = self.find(baseline) if isinstance(baseline, str) else baseline
        base = base or self.find("sequential")
        if base is None or not row.wall_s:
            return None
        return paired_median(row.rates(), base.rates())

    def wall_ratio(self, row: Row, baseline: Row | str) -> float | None:
        """Median over interleaved runs of (row's wall time / baseline's, in the same run)."""
        base = self.find(baseline) if isinstance(baseline, str) else baseline
        if base is None or not row.wall_s:
            return None
        return paired_median(row.wall_s, base.wall_s)

    def checks_cost(self) -> dict:
        """What `digest run` costs against the plain batched engine: the batched+checks row's wall time
        against batched's (median of per-run ratios) and its tokens sampled per token kept."""
        row = self.find("batched+checks")
        if row is None or self.find("batched") is None:
            return {}
        ratio = self.wall_ratio(row, "batched")
        return {"wall_ratio": round(ratio, 3) if ratio else None,
                "sampled_per_kept": round(row.sampled_tokens / row.kept_tokens, 3) if row.kept_tokens else None}

    def to_json(self) -> str:
        """Every row whole: its label, medians, ratios, and (with --native) its own `ceiling_s` and
        `of_ideal`; with a llama-server row, each other row's wall time against it (median of per-run
        ratios), so that a reader needs no arithmetic; and each row's `phases`, the batching engine's own
        timers of its median run (Row.phases; `phase_s`: every run's)."""
        server = self.find("llama-server")
        rows = []
        for row in self.rows:
            data = asdict(row)
            data.update(label=row.label, median_wall_s=round(row.median_wall_s, 3), tokens_per_s=round(row.tokens_per_s, 1),
                        speedup=round(self.speedup(row) or 0, 3),
                        speedup_vs=({b.label: round(self.speedup(row, b) or 0, 3) for b in self.baselines}),
                        of_ideal=row.of_ideal, phases=row.phases)
            if server is not None and row is not server:
                ratio = self.wall_ratio(row, server)
                data["wall_vs_llama_server"] = round(ratio, 3) if ratio else None
            rows.append(data)
        out = {k: v for k, v in asdict(self).items() if k != "rows"}
        out["rows"] = rows
        out["checks_cost"] = self.checks_cost()
        return json.dumps(out, indent=2)
def system_info(n_gpu_layers: int, model: Path) -> dict:
    """The backend llama.cpp runs on (from its system info) and how many layers go to a GPU."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode("utf-8", errors="replace").strip()
    backends = []
    for part in info.split("|"):
        name = part.split(":", 1)[0].strip() if ":" in part else ""
        if name and name not in backends and "=" not in name:
            backends.append(name)
    from ..engine.native import gpu_offload_supported

    gpu = gpu_offload_supported()
    n_layer = _layer_count(model)
    wanted = n_layer + 1 if n_gpu_layers < 0 else n_gpu_layers
    return {"backends": backends, "gpu_offload_supported": gpu, "n_gpu_layers": n_gpu_layers,
            "layers": n_layer, "layers_offloaded": min(wanted, n_layer + 1) if gpu else 0,
            "llama_cpp_python": llama_cpp.__version__, "system_info": info}


def _layer_count(model: Path) -> int:
    """From the GGUF header: no need to load the model."""
    from ..models.gguf import block_count, read_metadata

    return block_count(read_metadata(model))


Runner = Callable[[], Generation]


def run_bench(config: Config, *, runs: int = 3, slots: Sequence[int] = (0,), sequential: bool = True,
              checks: bool = True, memory: bool = True, decode: Sequence[int] = (),
              loop_models: Sequence[Path] = (), peers: Sequence[tuple[str, Callable]] = (),
              native: Path | None = None, llama_server: Path | None = None, configs: int = 1,
              server: str | None = None, say: Callable[[str], None] = lambda m: None) -> Report:
    """Time every engine on the same requests, interleaved: run 1 of each, then run 2 of each, ...
    so that a ratio compares runs made at the same minute of a noisy machine.

    `loop_models`: more models for the prefix-reusing loop (the published Q4_1, say), each a row.
    `peers`: (label, factory) pairs; a factory returns a context manager whose value is a callable
    that runs all requests once and returns a Generation (llama-server, say).
    `native`: a llama-batched-bench binary; the steady decode is then measured against it, interleaved,
    and the batched rows get the simulated ceiling from its rates.
    `configs`: above 1, N digests (the same feeds, N run seeds) in one batch, against the same N one
    after another on the same engine (`digest run --config ... --config ...` against N runs).
    `server`: the base URL of an OpenAI-compatible server: a row for --engine openai on it."""
    from contextlib import ExitStack

    requests, judge = bench_inputs(config)
    g = config.generation
    threads = config.model.threads or default_threads()
    model = config.model_path
    gpu = config.model.n_gpu_layers
    peers = list(peers)
    if llama_server is not None:
        from .peer import check_binary

        check_binary(llama_server)  # before minutes of the other engines
        peers.append(("llama-server", lambda reqs: server_peer(config, reqs, llama_server, threads, say)))
    plan = _Plan()
    with ExitStack() as stack:
        if sequential:
            _plan_loops(plan, stack, config, requests, threads, loop_models)
        batched = stack.enter_context(engine_of(config, name="batched", threads=threads, slots=0))
        plan.warm.append(lambda: batched.generate(requests[:1]))
        plan.forget.append(batched.forget)
        _plan_batched(plan, stack, config, batched, requests, threads, slots, configs)
        if server:
            remote = engine_of(dataclasses.replace(config, model=dataclasses.replace(config.model, url=server, retries=0)),
                               name="openai")
            plan.add(Row("openai", 0, variant=remote.server["url"]), lambda: remote.generate(requests),
                     warm=lambda: remote.generate(requests[:1]))
        if checks:
            # What `digest run` does: the same requests with their prevention (fact guard, sentence
            # rollback, point bias), plus the quality checks' extra tries.
            # (Timing only: a section with no usable try is not an error here.)
            plan.add(Row("batched+checks", 0), _with_slots(batched, 0, lambda: generate(
                batched, requests, judge, candidates=g.candidates, retries=g.retries, require_all=False,
                prevention=g.prevention).generation))
        for label, factory in peers:
            peer = stack.enter_context(factory(requests))
            plan.add(Row(label, 0), peer, warm=peer)
        _time(plan, runs, say)
    report = Report(model.name, threads, runs, config.generation.max_tokens, len(requests), [row for row, _ in plan.rows],
                    system=system_info(gpu, model))
    if native and decode:
        _compare_native(report, config, Path(native), decode, runs, say)
    elif decode:
        report.decode = decode_throughput(config, decode, runs=runs, say=say)
    if memory:
        say("measuring the peak memory of a whole `digest run` in a child process")
        report.memory = measure_run_memory(config, model)
    return report


@dataclass
class _Plan:
    """What `run_bench` times: each row and its run, in report order, and what warms them up (page
    the weights in, start the thread pools)."""

    rows: list[tuple[Row, Runner]] = field(default_factory=list)
    warm: list[Callable[[], object]] = field(default_factory=list)
    # Called before every timed run: each run starts with nothing kept from the one before (Engine.forget:
    # no prompt decoded by another row's run), as a `digest run` starts, and as llama-server's runs do.
    forget: list[Callable[[], None]] = field(default_factory=list)

    def add(self, row: Row, run: Runner, warm: Callable[[], object] | None = None) -> None:
        self.rows.append((row, run))
        if warm is not None:
            self.warm.append(warm)


def _plan_loops(plan: _Plan, stack, config: Config, requests: Sequence[Request], threads: int,
                loop_models: Sequence[Path]) -> None:
    """The sequential loop's rows: the model, each of `loop_models`, and the loop that rereads."""

    def loop(name: str, path: Path, reuse: bool, tag: str = "") -> None:
        # The obvious user code: one create_chat_completion after another. "sequential" keeps
        # llama-cpp-python's default, which reuses the previous prompt's matching prefix (the
        # fastest baseline); "sequential-reread" resets before each call and reads every prompt
        # whole, the loop that the batching engine's target was first stated against.
        engine = stack.enter_context(engine_of(config, name="sequential", model_path=path, threads=threads,
                                               reuse_prefix=reuse))
        plan.add(Row(name, 0, tag), lambda: engine.generate(requests), warm=lambda: engine.generate(requests[:1]))

    loop("sequential", config.model_path, True)
    for other in loop_models:
        loop("sequential", Path(other), True, Path(other).name)
    loop("sequential-reread", config.model_path, False)


def _with_slots(batched, n: int, run: Runner) -> Runner:
    """`run` with the batching engine's slots at `n` (then back to all)."""

    def go() -> Generation:
        batched.slots = n
        try:
            return run()
        finally:
            batched.slots = 0

    return go


def _plan_batched(plan: _Plan, stack, config: Config, batched, requests: Sequence[Request], threads: int,
                  slots: Sequence[int], configs: int) -> None:
    """The batching engine's rows: each number of slots, the digest without its examples, the digest
    as 0.1 made it, and N digests in one batch against one by one."""
    g = config.generation
    for n in slots:
        plan.add(Row("batched", n), _with_slots(batched, n, lambda: batched.generate(requests)))
    plain = bench_inputs(config, examples=False)[0]
    if plain != requests:
        # What the example exchanges in the shared prefix cost: the same digest without them.
        plan.add(Row("batched", 0, variant="no examples"), _with_slots(batched, 0, lambda: batched.generate(plain)))
    older = as_before_the_keys(config)
    if g.examples and older != config:
        # The same digest as digest 0.1 made it: f16 K cache, every example before every section.
        old_requests = bench_inputs(older)[0]
        old_engine = stack.enter_context(engine_of(older, name="batched", threads=threads, slots=0))
        plan.add(Row("batched", 0, variant="f16 K, all examples: 0.1"), lambda: old_engine.generate(old_requests),
                 warm=lambda: old_engine.generate(old_requests[:1]))
        plan.forget.append(old_engine.forget)
    if configs > 1:
        digests = [bench_inputs(dataclasses.replace(config, generation=dataclasses.replace(
            g, seed=g.seed + i)))[0] for i in range(configs)]
        together = [dataclasses.replace(r, key=f"digest{i}/{r.key}") for i, d in enumerate(digests) for r in d]

        def one_by_one_digest() -> Generation:
            parts = [batched.generate(d) for d in digests]
            stats = Stats()
            for part in parts:
                stats.merge(part.stats)
            return Generation([r for part in parts for r in part.results], stats)

        plan.add(Row("batched", 0, variant=f"{configs} digests, one batch"),
                 _with_slots(batched, 0, lambda: batched.generate(together)))
        plan.add(Row("batched", 0, variant=f"{configs} digests, one by one"), _with_slots(batched, 0, one_by_one_digest))


def _time(plan: _Plan, runs: int, say: Callable[[str], None]) -> None:
    """Warm up, then `runs` rounds of every row in turn, each run's figures kept in its row."""
    say("warming up")
    for step in plan.warm:
        step()
    for n in range(runs):
        for row, run in plan.rows:
            for forget in plan.forget:
                forget()
            generation = run()
            s = generation.stats
            row.wall_s.append(s.wall_seconds)
            row.tokens.append(s.completion_tokens)
            row.completion_tokens, row.prompt_tokens = s.completion_tokens, s.prompt_tokens
            row.prompt_tokens_decoded, row.decode_steps = s.prompt_tokens_decoded, s.decode_steps
            row.section_tokens = [r.completion_tokens for r in generation.results]
            row.sampled_tokens = s.sampled_tokens
            row.kept_tokens = sum(r.completion_tokens for r in generation.results)
            row.phase_s.append(dict(s.phases))
            say(f"{row.named} run {n + 1}/{runs}: {s.wall_seconds:.2f} s, "
                f"{s.completion_tokens} tokens, {s.tokens_per_second:.0f} tok/s")


def _compare_native(report: Report, config: Config, native: Path, decode: Sequence[int], runs: int,
                    say: Callable[[str], None]) -> None:
    """The steady decode against llama-batched-bench, and each batched row's simulated ceiling."""
    report.native = compare_native(config, native, decode, runs, say=say)
    report.decode = [{"batch": b, "tokens_per_s": v["ours"]} for b, v in report.native["batches"].items()]
    for row in report.rows:
        if row.engine == "batched" and row.section_tokens:
            row.ceiling_s = round(simulated_ceiling(row.section_tokens, row.prompt_tokens_decoded,
                                                    report.native["tg_rates"], report.native["pp_rate"],
                                                    row.slots), 2)


@contextmanager
def server_peer(config: Config, requests: Sequence[Request], binary: Path, threads: int,
                say: Callable[[str], None] = lambda m: None) -> Iterator[Runner]:
    """llama.cpp's own llama-server as a peer (digest/peer.py): started once with -np = the number of
    requests, then each run sends every request at once over HTTP (cache_prompt off) and waits for all."""
    from .peer import requests_json, server_for

    bodies = requests_json(requests)
    with server_for(binary, config.model_path, requests, threads=threads, n_ctx=config.model.n_ctx,
                    n_gpu_layers=config.model.n_gpu_layers, cache_type_k=config.model.cache_type_k,
                    chat_format=config.chat_format) as server:
        say(f"llama-server: {' '.join(server.command)}")

        def run() -> Generation:
            wall, tokens = server.run_once(bodies)
            stats = Stats(requests=len(requests), prompt_tokens=server.prompt_tokens,
                          prompt_tokens_decoded=server.prompt_tokens, completion_tokens=tokens, wall_seconds=wall)
            return Generation([], stats)

        yield run
