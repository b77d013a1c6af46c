"""The warning for a model whose text may depend on --slots: weights that llama.cpp's x86 CPU kernels
compute differently by how many sequences share a decode step (k-quants, F16/BF16 matrices; measured
in docs/models.md), read from the GGUF's tensor infos before the model loads. On a GGUF header written
here, through the CLI, and on the registry's real files where they are present."""

from __future__ import annotations

import struct

import pytest

from conftest import describe
from digest.engine.native import batch_dependence, batch_dependent_weights
from digest.errors import EXIT_MODEL
from digest.models.gguf import read_tensors
from digest.models.registry import load_registry

Q8_0, Q4_K, Q6_K, F16, F32 = 8, 12, 14, 1, 0


def _string(text: str) -> bytes:
    data = text.encode("utf-8")
    return struct.pack("<Q", len(data)) + data


def gguf(tensors: list[tuple[str, tuple[int, ...], int]]) -> bytes:
    """A GGUF v3 header: its architecture, then the tensor infos (name, shape, ggml type, offset); no data."""
    kv = [_string("general.architecture") + struct.pack("<I", 8) + _string("llama")]
    infos = [_string(name) + struct.pack("<I", len(shape)) + struct.pack(f"<{len(shape)}Q", *shape)
             + struct.pack("<IQ", kind, 0) for name, shape, kind in tensors]
    return b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv)) + b"".join(kv) + b"".join(infos)


MIXED = [("token_embd.weight", (576, 49152), Q8_0), ("blk.0.attn_norm.weight", (576,), F32),
         ("blk.0.attn_output.weight", (1024, 640), Q4_K), ("blk.0.ffn_down.weight", (2048, 640), Q6_K),
         ("blk.0.ffn_up.weight", (640, 2048), Q8_0)]


def test_the_tensor_infos_are_read_and_only_matrices_outside_the_32_weight_blocks_count(tmp_path):
    mixed, plain, floats = tmp_path / "mixed.gguf", tmp_path / "plain.gguf", tmp_path / "floats.gguf"
    mixed.write_bytes(gguf(MIXED))
    plain.write_bytes(gguf([t for t in MIXED if t[2] in (Q8_0, F32)]))
    floats.write_bytes(gguf([("blk.0.attn_norm.weight", (576,), F32), ("blk.0.ffn_up.weight", (640, 2048), F16)]))
    assert read_tensors(mixed)["blk.0.ffn_down.weight"] == ("Q6_K", (2048, 640))
    assert read_tensors(mixed)["blk.0.attn_norm.weight"] == ("F32", (576,))
    assert batch_dependent_weights(mixed, "x86_64") == ["Q4_K", "Q6_K"]
    assert batch_dependent_weights(plain, "x86_64") == []  # a 1-D F32 norm is no matrix
    assert batch_dependent_weights(floats, "AMD64") == ["F16"]
    assert batch_dependent_weights(mixed, "aarch64") == [] and batch_dependence(mixed, "arm64") == ""
    line = batch_dependence(mixed, "x86_64")
    assert "\n" not in line and line.startswith("mixed.gguf holds Q4_K, Q6_K weights")
    assert "--slots" in line and "digest models quantize mixed.gguf --type q8_0" in line


@pytest.mark.parametrize("engine", ["batched", "sequential"])
def test_the_cli_warns_once_before_the_model_loads_for_the_batching_engine(run_cli, tmp_path, monkeypatch, engine):
    from digest.engine import native

    monkeypatch.setattr(native.platform, "machine", lambda: "x86_64")
    model = tmp_path / "mixed.gguf"
    model.write_bytes(gguf(MIXED))  # no weights: loading it fails, after the warning
    result = run_cli("run", "--engine", engine, "--model", model, "--sample-feeds", "--out", tmp_path / "site",
                     "--date", "2026-01-02", "--quiet")
    assert result.exit_code == EXIT_MODEL, describe(result)
    warnings = [line for line in result.stderr.splitlines() if line.startswith("digest: warning:")]
    if engine == "sequential":  # one sequence at a time: nothing depends on the batch
        assert warnings == [], describe(result)
    else:
        assert len(warnings) == 1 and "holds Q4_K, Q6_K weights" in warnings[0], describe(result)
        assert result.stderr.index("digest: warning:") < result.stderr.index("digest: error:")


def _registry_file(name: str):
    registry = load_registry()
    path = registry.file_of(registry.get(name))
    if not path.is_file():
        pytest.skip(f"{path} is not here (digest models pull {name})")
    return path


def test_the_published_gemma_q4_k_m_is_warned_of_and_named_with_its_q8_0():
    """The real file (pulled with gemma3-270m-q8_0, its source): Q4_K and Q6_K matrices among its Q5_0
    and Q8_0 ones; the warning names the registry's Q8_0 made from it."""
    line = batch_dependence(_registry_file("gemma3-270m"), "x86_64")
    assert line.startswith("gemma-3-270m-q4_k_m.gguf holds Q4_K, Q6_K weights")
    assert "(digest models pull gemma3-270m-q8_0;" in line


@pytest.mark.parametrize("name", ["smollm2-135m", "smollm2-135m-q4_1", "gemma3-270m-q8_0"])
def test_the_q8_0_and_q4_1_files_are_not_warned_of(name):
    assert batch_dependent_weights(_registry_file(name), "x86_64") == []
