"""The bench against llama.cpp's own numbers: steady decoding at fixed batch sizes, the same measured
by llama-batched-bench (interleaved rounds), and the simulated ceiling of a batched run at those rates."""

from __future__ import annotations

import dataclasses
import json
import statistics
import subprocess
from pathlib import Path
from typing import Callable, Sequence

from ..config import Config
from ..engine import engine_of
from ..engine.llama import default_threads
from ..errors import PeerError
from ..prevention import guard as guard_of
from .workload import bench_inputs, exact_prompt


def paired_median(values: Sequence[float], bases: Sequence[float]) -> float | None:
    """The median of value / base, run by run (a slow run pairs with its own other side)."""
    ratios = [a / b for a, b in zip(values, bases) if b > 0]
    return statistics.median(ratios) if ratios else None


def decode_throughput(config: Config, batch_sizes: Sequence[int], *, tokens: int = 128, prompt: int = 128,
                      runs: int = 1, guard: bool = True, say: Callable[[str], None] = lambda m: None) -> list[dict]:
    """Steady decoding as llama-batched-bench measures text generation (S_TG at -npp 128 -ntg 128):
    B sequences, each a sample prompt cut to exactly `prompt` tokens, each generating exactly `tokens`
    tokens (end-of-generation ignored), with our sampling. Only the generation steps are timed.
    Each size runs `runs` rounds of the same requests without and with their fact guard, interleaved,
    so that the guard's cost is the median of rounds taken side by side."""
    # free text, as llama-batched-bench; without the example exchanges, whose shared prefix alone is
    # longer than the 128 prompt tokens to match
    requests_, judge = bench_inputs(config, examples=False)
    base = [r for r in requests_ if not r.grammar]
    out = []
    with engine_of(config, name="batched", threads=config.model.threads or default_threads(), slots=0) as engine:
        fitted = [exact_prompt(engine, r, prompt) for r in base]
        for size in batch_sizes:
            plain = [dataclasses.replace(fitted[i % len(fitted)], key=f"decode{i}", max_tokens=tokens,
                                         ignore_eos=True, seed=i) for i in range(size)]

            def guarded() -> list:
                """The requests with their guards, each new: nothing it remembers is carried from a
                round before, as in a run of its own."""
                keys = [base[i % len(base)].key for i in range(len(plain))]
                return [dataclasses.replace(r, guard=guard_of(judge.sections[k].kind, judge.source(k)))
                        for r, k in zip(plain, keys)]

            engine.generate(plain[:1])
            if guard:
                engine.generate(guarded()[:1])
            rates: dict[str, list[float]] = {"off": [], "on": []}
            last = None
            for n in range(max(1, runs)):
                pair = (("off", lambda: plain), ("on", guarded))[: 2 if guard else 1]
                for label, requests in (pair if n % 2 == 0 else pair[::-1]):  # each side first in turn
                    s = engine.generate(requests()).stats
                    rates[label].append(s.generation_tokens_per_second)
                    last = s if label == "off" else last
            off = statistics.median(rates["off"])
            row = {"batch": size, "generated": last.completion_tokens, "prompt_tokens": prompt,
                   "generation_s": round(last.wall_seconds - last.prompt_seconds, 3), "tokens_per_s": round(off, 1)}
            # The cost: the median of the rounds' own ratios (a slow round pairs with its own other side).
            ratio = paired_median(rates["on"], rates["off"]) if guard else None
            if ratio is not None:
                row.update(guarded_tokens_per_s=round(statistics.median(rates["on"]), 1), guard_cost=round(1 - ratio, 4),
                           rounds={k: [round(v, 1) for v in vs] for k, vs in rates.items()})
            out.append(row)
            say(f"decode B={size}: {off:.1f} tok/s" + (f", {row['guarded_tokens_per_s']} with the fact guard" if ratio is not None else ""))
    return out


NATIVE_BATCHES = (1, 2, 3, 4, 6, 8, 12, 16)
# The peers' weights as digest's engine loads them: not repacked for the CPU's extra kernels
# (engine.native.Model: they would make a row's logits depend on the batch). On an AVX-512 CPU with
# AMX, repacking also sends Q8_0 to AMX kernels, which died with SIGILL on this VM.
NO_REPACK = "--no-repack"


def native_batched_bench(binary: Path, model: Path, threads: int, batches: Sequence[int] = NATIVE_BATCHES, *,
                         prompt: int = 128, tokens: int = 128, n_gpu_layers: int = 0,
                         cache_type_k: str = "f16") -> dict[int, dict]:
    """llama.cpp's own llama-batched-bench on `model` (-npp 128 -ntg 128 -fa off, the non-unified KV
    cache as digest uses it): {batch: {"speed_tg", "speed_pp"}} from its JSON lines."""
    cells = max(batches) * (prompt + tokens)
    command = [str(binary), "-m", str(model), "-npp", str(prompt), "-ntg", str(tokens),
               "-npl", ",".join(map(str, batches)), "-t", str(threads), "-fa", "off", "-ctk", cache_type_k, NO_REPACK,
               "-c", str(cells),
               "-ngl", str(n_gpu_layers if n_gpu_layers >= 0 else 999), "--output-format", "jsonl"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    except OSError as exc:
        raise PeerError(f"cannot run {binary}: {exc.strerror or exc} (build it with 'make peers')") from exc
    rates = {}
    for line in done.stdout.splitlines() + done.stderr.splitlines():
        if line.startswith("{") and '"speed_tg"' in line:
            row = json.loads(line)
            rates[int(row["pl"])] = {"speed_tg": row["speed_tg"], "speed_pp": row["speed_pp"]}
    if done.returncode != 0 or not rates:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise PeerError(f"{binary} failed (exit {done.returncode}): {tail}")
    return rates


def _rate_at(rates: dict[int, float], batch: int) -> float:
    """Tokens per second at `batch`, linear between the measured batch sizes."""
    sizes = sorted(rates)
    if batch <= sizes[0]:
        return rates[sizes[0]] * batch / sizes[0]
    if batch >= sizes[-1]:
        return rates[sizes[-1]]
    lo = max(b for b in sizes if b <= batch)
    hi = min(b for b in sizes if b >= batch)
    if lo == hi:
        return rates[lo]
    return rates[lo] + (rates[hi] - rates[lo]) * (batch - lo) / (hi - lo)


def simulated_ceiling(section_tokens: Sequence[int], prompt_tokens_decoded: int, tg_rates: dict[int, float],
                      pp_rate: float, slots: int = 0) -> float:
    """Seconds an ideal batched digest would take at llama.cpp's own rates: every prompt token at the
    native prompt rate, and at each generation step B live sequences at the native rate of a batch of
    B (sections on `slots` slots, refilled at once; 0: all at once). No sampling, no bookkeeping."""
    seconds = prompt_tokens_decoded / pp_rate if pp_rate > 0 else 0.0
    slots = slots or len(section_tokens)
    ends: list[int] = []  # the step at which each slot's current section ends
    queue = list(section_tokens)
    step = 0
    while queue or ends:
        while queue and len(ends) < slots:
            ends.append(step + queue.pop(0))
        live = len(ends)
        seconds += live / _rate_at(tg_rates, live)
        step += 1
        ends = [e for e in ends if e > step]
    return seconds


def compare_native(config: Config, binary: Path, batch_sizes: Sequence[int], runs: int,
                   say: Callable[[str], None] = lambda m: None) -> dict:
    """Our steady decode against llama-batched-bench's, interleaved (native, ours, native, ours, ...);
    each ratio is the median of the per-round ratios."""
    threads = config.model.threads or default_threads()
    batches = sorted(set(NATIVE_BATCHES) | set(batch_sizes))
    rounds = []
    for n in range(runs):
        native = native_batched_bench(binary, config.model_path, threads, batches, n_gpu_layers=config.model.n_gpu_layers,
                                      cache_type_k=config.model.cache_type_k)
        ours = {d["batch"]: d["tokens_per_s"] for d in decode_throughput(config, batch_sizes, guard=False)}
        rounds.append((native, ours))
        say(f"native round {n + 1}/{runs}: " + ", ".join(
            f"B={b} ours {ours[b]:.0f} native {native[b]['speed_tg']:.0f}" for b in batch_sizes))
    out = {"binary": str(binary), "runs": runs, "batches": {}}
    for b in batch_sizes:
        ratios = [ours[b] / native[b]["speed_tg"] for native, ours in rounds]
        out["batches"][b] = {"ours": round(statistics.median(o[b] for _, o in rounds), 1),
                             "native": round(statistics.median(n[b]["speed_tg"] for n, _ in rounds), 1),
                             "ratio": round(statistics.median(ratios), 3),
                             "ratios": [round(r, 3) for r in ratios]}
    out["tg_rates"] = {b: statistics.median(n[b]["speed_tg"] for n, _ in rounds) for b in batches}
    out["pp_rate"] = statistics.median(n[1]["speed_pp"] for n, _ in rounds)
    return out
