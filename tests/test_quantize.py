"""digest.models.quantize and `digest models quantize`: reading a GGUF's format, the lossy-requantization
rule, llama.cpp's real quantizer on the real embedded model (deterministic bytes, whatever the
thread count), and the fidelity of the derived default Q8_0 against its published Q4_1 source."""

from __future__ import annotations

import math
import shutil
import struct
import time
from pathlib import Path

import pytest

from conftest import PROJECT_ROOT, describe
from digest.engine.llama import no_extra_buffers
from digest.models import embedded, quantize
from digest.errors import EXIT_MODEL, EXIT_OUTPUT, ModelError
from digest.files import sha256_file
from test_files import full_disk  # noqa: F401 - a fixture: a real, small tmpfs

MODELS = PROJECT_ROOT / "models"
SOURCE = MODELS / embedded.SOURCE_FILE
DERIVED = MODELS / embedded.FILE_NAME
FIDELITY_TEXT = Path(__file__).parent / "data" / "fidelity.txt"


def need_models() -> None:
    # The model is part of the setup (make install), so a missing one is a failure, not a skip.
    assert SOURCE.is_file() and DERIVED.is_file(), f"embedded models missing in {MODELS} (run make install)"


# ---------------------------------------------------------------------------------------------
# A GGUF header written here: the reader needs nothing else


def _string(text: str) -> bytes:
    data = text.encode("utf-8")
    return struct.pack("<Q", len(data)) + data


def gguf(file_type: int | None, *, extra: bool = True) -> bytes:
    """A GGUF v3 header with no tensors: a string, a string array and a float array before the
    file type, as real files have (the tokenizer's tables)."""
    kv = [_string("general.architecture") + struct.pack("<I", 8) + _string("llama")]
    if extra:
        kv.append(_string("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 3)
                  + b"".join(_string(t) for t in ("<s>", "a", "é")))
        kv.append(_string("tokenizer.ggml.scores") + struct.pack("<IIQ", 9, 6, 3) + struct.pack("<3f", 0, 1, 2))
    if file_type is not None:
        kv.append(_string("general.file_type") + struct.pack("<II", 4, file_type))
    kv.append(_string("general.name") + struct.pack("<I", 8) + _string("test"))
    return b"GGUF" + struct.pack("<IQQ", 3, 0, len(kv)) + b"".join(kv)


def test_reads_the_format_from_the_metadata(tmp_path):
    path = tmp_path / "m.gguf"
    path.write_bytes(gguf(3))
    meta = quantize.read_metadata(path)
    assert meta["general.architecture"] == "llama" and meta["general.name"] == "test"
    assert quantize.file_format(path).name == "Q4_1"
    path.write_bytes(gguf(15 | 1024))  # llama.cpp's "guessed" flag
    assert quantize.file_format(path).name == "Q4_K_M"
    path.write_bytes(gguf(None))
    assert quantize.file_format(path) is None


@pytest.mark.parametrize("data, words", [
    (b"not a model at all", "not a GGUF model file"),
    (gguf(3)[:40], "cut short"),
    (b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + _string("k") + struct.pack("<I", 99), "unknown GGUF metadata type 99"),
])
def test_a_broken_header_is_a_model_error(tmp_path, data, words):
    path = tmp_path / "m.gguf"
    path.write_bytes(data)
    with pytest.raises(ModelError, match=words):
        quantize.file_format(path)


@pytest.mark.model
def test_the_real_source_says_q4_1_and_the_derived_file_q8_0():
    need_models()
    assert quantize.file_format(SOURCE).name == "Q4_1"
    assert quantize.file_format(DERIVED).name == "Q8_0"


@pytest.mark.parametrize("source, target, refused", [
    ("Q4_1", "q8_0", False), ("Q4_1", "f16", False), ("Q4_K_M", "q8_0", False), ("Q6_K", "q8_0", False),
    ("F16", "q4_k_m", False), ("F32", "q8_0", False), ("BF16", "q4_0", False),
    ("Q4_1", "q4_0", True), ("Q4_K_M", "q4_0", True), ("Q4_1", "q4_k_m", True), ("Q4_1", "q6_k", True),
    ("Q8_0", "q8_0", True), ("Q8_0", "q4_k_m", True), (None, "q8_0", True), ("file type 99", "q8_0", True),
])
def test_the_lossy_rule(source, target, refused):
    fmt = None if source is None else next((f for f in quantize.FORMATS.values() if f.name == source),
                                           quantize.Format(source, 99, 0.0))
    assert (quantize.lossy_reason(fmt, quantize.target_format(target)) is not None) is refused


@pytest.mark.parametrize("name, type_name, expected", [
    ("SmolLM2-135M-Instruct.Q4_1.gguf", "q8_0", "SmolLM2-135M-Instruct.Q8_0.gguf"),
    ("qwen2.5-0.5b-instruct-q4_k_m.gguf", "f16", "qwen2.5-0.5b-instruct-F16.gguf"),
    ("Llama-3.2-1B-Instruct-Q4_K_M.gguf", "q8_0", "Llama-3.2-1B-Instruct-Q8_0.gguf"),
    ("mine.gguf", "q4_k_m", "mine.Q4_K_M.gguf"),
])
def test_default_out_replaces_the_format_in_the_name(tmp_path, name, type_name, expected):
    assert quantize.default_out(tmp_path / name, type_name) == tmp_path / expected


# ---------------------------------------------------------------------------------------------
# The command's refusals: one line, exit 5, nothing written (llama.cpp is never called)


def one_error(result, code: int, *words: str, began: bool = False) -> str:
    """The failure's one line, and the only one: nothing is announced that is then refused. A failure
    of llama.cpp's quantizer itself (`began`) comes after the one line that said the work began."""
    assert result.exit_code == code, describe(result)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    if began:
        assert lines[0].startswith("quantizing "), describe(result)
        lines = lines[1:]
    assert len(lines) == 1, describe(result)
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("digest: error: "), line
    for word in words:
        assert word in line, line
    return line


def test_a_lossy_requantization_is_refused_without_the_flag(run_cli, tmp_path):
    source = tmp_path / "mine.Q4_1.gguf"
    source.write_bytes(gguf(3))
    result = run_cli("models", "quantize", source, "--type", "q4_0")
    one_error(result, EXIT_MODEL, "refusing to quantize", "Q4_1", "Q4_0", "--allow-lossy")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.Q4_1.gguf"]


@pytest.mark.parametrize("case, code, words", [
    ("missing", EXIT_MODEL, "model file not found"),
    ("not-gguf", EXIT_MODEL, "not a GGUF model file"),
    ("unknown-format", EXIT_MODEL, "does not say how it is quantized"),
    ("exists", EXIT_OUTPUT, "already exists (use --force"),  # the --out side, as errors.md says
])
def test_bad_sources_and_targets_are_one_line(run_cli, tmp_path, case, code, words):
    source = tmp_path / "src.gguf"
    if case == "not-gguf":
        source.write_bytes(b"<html>a download page</html>")
    elif case == "unknown-format":
        source.write_bytes(gguf(None))
    elif case == "exists":
        source.write_bytes(gguf(3))
        (tmp_path / "src.Q8_0.gguf").write_bytes(b"keep me")
    result = run_cli("models", "quantize", source, "--type", "q8_0")
    one_error(result, code, words)
    if case == "exists":
        assert (tmp_path / "src.Q8_0.gguf").read_bytes() == b"keep me"


def test_an_unknown_type_is_a_usage_error(run_cli, tmp_path):
    source = tmp_path / "src.gguf"
    source.write_bytes(gguf(3))
    result = run_cli("models", "quantize", source, "--type", "q3_k_s")
    assert result.exit_code == 2 and "q3_k_s" in result.stderr


# ---------------------------------------------------------------------------------------------
# llama.cpp's real quantizer on the real embedded model


@pytest.mark.model
@pytest.mark.parametrize("threads", [1, 2])
def test_the_derived_q8_0_is_the_same_bytes_at_any_thread_count(run_cli, tmp_path, threads):
    need_models()
    out = tmp_path / "out" / "derived.gguf"
    result = run_cli("models", "quantize", SOURCE, "--type", "q8_0", "--out", out, "--threads", threads)
    assert result.exit_code == 0, describe(result)
    assert result.stdout.strip() == str(out)
    assert out.stat().st_size == embedded.SIZE and sha256_file(out) == embedded.SHA256
    assert f"sha256 {embedded.SHA256}" in result.stderr
    assert "llama_model_quantize" not in result.stdout + result.stderr  # llama.cpp's log stays quiet
    assert [p.name for p in out.parent.iterdir()] == ["derived.gguf"]


@pytest.mark.model
def test_a_lossy_requantization_runs_when_asked(run_cli, tmp_path):
    need_models()
    out = tmp_path / "small.gguf"
    result = run_cli("models", "quantize", "smollm2-135m-q4_1", "--type", "q4_0", "--out", out, "--allow-lossy")
    assert result.exit_code == 0, describe(result)
    assert quantize.file_format(out).name == "Q4_0" and out.stat().st_size < SOURCE.stat().st_size


@pytest.mark.model
def test_a_result_that_is_not_the_expected_file_is_deleted_and_named(tmp_path):
    """What another llama.cpp would cause: both hashes in the message, nothing left at the target."""
    need_models()
    target = tmp_path / "derived.gguf"
    wrong = "0" * 64
    with pytest.raises(ModelError) as caught:
        quantize.quantize(SOURCE, target, "q8_0", expected=quantize.Expected(embedded.SIZE, wrong, "llama-cpp-python 9.9"))
    message = str(caught.value)
    assert embedded.SHA256 in message and wrong in message and "llama-cpp-python 9.9" in message
    assert "quantizes differently" in message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.model
def test_llama_cpp_s_own_failure_is_one_model_error(run_cli, tmp_path):
    need_models()
    cut = tmp_path / "cut.Q4_1.gguf"
    with SOURCE.open("rb") as handle:
        cut.write_bytes(handle.read(5_000_000))  # the whole header, then the weights stop
    result = run_cli("models", "quantize", cut, "--type", "q8_0")
    one_error(result, EXIT_MODEL, "llama.cpp could not quantize", str(cut), began=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.Q4_1.gguf"]


@pytest.mark.model
def test_a_full_disk_is_one_line_and_leaves_nothing(run_cli, full_disk):
    need_models()
    result = run_cli("models", "quantize", SOURCE, "--type", "q8_0", "--out", full_disk / "x.gguf")
    one_error(result, EXIT_OUTPUT, str(full_disk / "x.gguf"), "No space left on device", began=True)
    assert list(full_disk.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# Fidelity: the derived default against its published source, over every position of a fixed text


# The f16-cache log-probabilities of the two embedded files: two tests read each (~300 MB apiece,
# so kept for this module only).
_KEPT: dict[tuple, object] = {}


@pytest.fixture(scope="module", autouse=True)
def _forget_log_probs():
    yield
    _KEPT.clear()


def _log_probs(model: Path, tokens: tuple[int, ...], cache_type_k: str = "f16"):
    """The model's log-probabilities after each token of `tokens` (read-only)."""
    key = (model, tokens, cache_type_k)
    if key in _KEPT:
        return _KEPT[key]
    import llama_cpp
    import numpy as np

    from digest.engine.native import CACHE_TYPES

    with no_extra_buffers():  # as the engines load it
        llm = llama_cpp.Llama(model_path=str(model), n_ctx=len(tokens) + 16, n_batch=512, n_threads=2,
                              n_threads_batch=2, logits_all=True, verbose=False, type_k=CACHE_TYPES[cache_type_k][0])
    try:
        llm.eval(list(tokens))
        logits = np.array(llm.scores[: len(tokens)], dtype=np.float32)
    finally:
        llm.close()
    logits -= logits.max(axis=1, keepdims=True)
    logits -= np.log(np.exp(logits).sum(axis=1, keepdims=True))
    logits.flags.writeable = False
    if model in (SOURCE, DERIVED) and cache_type_k == "f16":
        _KEPT[key] = logits
    return logits


def fidelity(source: Path, derived: Path, text: str, cache_type_k: str = "f16") -> dict:
    """`derived` (with its K cache in `cache_type_k`) against `source` (f16 cache), position by position."""
    import llama_cpp
    import numpy as np

    vocab = llama_cpp.Llama(model_path=str(source), vocab_only=True, verbose=False)
    tokens = tuple(vocab.tokenize(text.encode("utf-8"), add_bos=True))
    vocab.close()
    p = _log_probs(source, tokens)
    q = _log_probs(derived, tokens, cache_type_k)
    # Position i predicts token i + 1: the last position predicts nothing in the text.
    p, q, following = p[:-1], q[:-1], np.array(tokens[1:])
    kl = (np.exp(p) * (p - q)).sum(axis=1, dtype=np.float64)
    rows = np.arange(len(following))
    return {
        "tokens": len(tokens),
        "mean_kl": float(kl.mean()),
        "max_kl": float(kl.max()),
        "top1": float((p.argmax(axis=1) == q.argmax(axis=1)).mean()),
        "ppl_source": math.exp(-float(p[rows, following].mean(dtype=np.float64))),
        "ppl_derived": math.exp(-float(q[rows, following].mean(dtype=np.float64))),
    }


@pytest.mark.model
def test_the_derived_default_reads_as_its_source():
    need_models()
    start = time.monotonic()
    found = fidelity(SOURCE, DERIVED, FIDELITY_TEXT.read_text(encoding="utf-8"))
    print(f"fidelity of {DERIVED.name} against {SOURCE.name}: {found} ({time.monotonic() - start:.1f} s)")
    assert 1000 <= found["tokens"] <= 1500
    assert found["mean_kl"] <= 0.01, found
    assert found["top1"] >= 0.9, found
    assert abs(math.log(found["ppl_derived"] / found["ppl_source"])) < 0.05, found


@pytest.mark.model
def test_the_q8_0_k_cache_reads_as_the_f16_one():
    """The batching engine's default K cache (q8_0) against llama.cpp's f16 one, same model file."""
    need_models()
    found = fidelity(DERIVED, DERIVED, FIDELITY_TEXT.read_text(encoding="utf-8"), cache_type_k="q8_0")
    print(f"fidelity of the q8_0 K cache against f16 on {DERIVED.name}: {found}")
    assert 0 < found["mean_kl"] <= 0.01, found  # 0 would mean the setting never reached llama.cpp
    assert found["top1"] >= 0.9, found
    assert abs(math.log(found["ppl_derived"] / found["ppl_source"])) < 0.05, found


@pytest.mark.model
def test_fidelity_tells_a_lossy_file_from_a_faithful_one(tmp_path):
    """The same measure on a Q4_0 made from the Q4_1 (twice rounded): it must see the damage, or the
    bound above would prove nothing."""
    need_models()
    lossy = quantize.quantize(SOURCE, tmp_path / "lossy.gguf", "q4_0", allow_lossy=True)
    found = fidelity(SOURCE, lossy, FIDELITY_TEXT.read_text(encoding="utf-8"))
    print(f"fidelity of a Q4_0 against {SOURCE.name}: {found}")
    assert found["mean_kl"] > 0.05 and found["top1"] < 0.9, found
