"""The peak memory of a whole `digest run`, measured in a child process, against model file + KV
cache + a margin."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from ..config import Config
from ..engine import engine_of
from .workload import BENCH_DAY, bench_requests

MEMORY_MARGIN = 300 * 1024 * 1024


PEAK_OF_CHILD = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
_, status, usage = os.wait4(child.pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss * 1024)
"""


def measure_run_memory(config: Config, model: Path) -> dict:
    """Peak RSS of a `digest run` on the samples, against model file + KV cache + 300 MB."""
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "digest.cli", "run", "--sample-feeds", "--quiet", "--out", out,
                   "--model", str(model), "--engine", "batched", "--date", BENCH_DAY.isoformat()]
        if config.source:
            command += ["--config", str(config.source)]
        # The run's own peak, from wait4 in a small go-between: RUSAGE_CHILDREN would give the largest of
        # every child this process ever waited for (llama-server, llama-batched-bench), and Linux counts
        # in a child's peak the RSS of the process it was forked from (this bench, models loaded), so the
        # run is forked from a fresh interpreter of a few MB, which reports the run's exit code and peak.
        done = subprocess.run([sys.executable, "-c", PEAK_OF_CHILD, *command], capture_output=True, text=True)
        exit_code, peak = (int(x) for x in done.stdout.split())
    return memory_verdict(peak, exit_code, model.stat().st_size, kv_cache_bytes(config, model))


def memory_verdict(peak: int, exit_code: int, model_bytes: int, kv_bytes: int) -> dict:
    """A run's peak against model file + KV cache + 300 MB. A run that failed is never within the
    limit: it may have stopped before it held what a whole run holds."""
    limit = model_bytes + kv_bytes + MEMORY_MARGIN
    return {
        "peak_rss_bytes": peak,
        "model_bytes": model_bytes,
        "kv_cache_bytes": kv_bytes,
        "limit_bytes": limit,
        "within_limit": exit_code == 0 and peak <= limit,
        "exit_code": exit_code,
    }


def kv_cache_bytes(config: Config, model: Path) -> int:
    """The batching engine's KV cache for the bench digest: cells x layers x (K + V), K as configured."""
    requests = bench_requests(config)
    with engine_of(config, name="batched", model_path=model, threads=0, n_gpu_layers=0) as engine:
        return engine.kv_cache_bytes(requests)
