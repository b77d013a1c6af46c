"""Converting a GGUF model to another weight format with llama.cpp's own quantizer.

`make install` uses it to derive the embedded Q8_0 from the published Q4_1, `digest models pull`
for every registry entry with a `derived_from` recipe, and `digest models quantize` for a user's own
file. One path for all three: read the source's format from its GGUF metadata, refuse a lossy
requantization unless asked, run `llama_model_quantize` (llama-cpp-python) into a temporary file
beside the target, check the result against an expected size and sha256 when there is one, and
only then rename it into place.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError
from ..files import ErrorFn, atomic_path, output_error, sha256_file
from .gguf import read_metadata

FILE_TYPE_KEY = "general.file_type"
_GUESSED = 1024  # llama.cpp's LLAMA_FTYPE_GUESSED flag
FULL_DISK = 16 << 20  # bytes free below which a failed quantization is taken for a full disk


@dataclass(frozen=True)
class Format:
    """A llama.cpp file type (`llama_ftype`): its name as llama.cpp writes it, and its bits per weight
    (for the k-quant mixes, the usual average llama.cpp's quantize tool prints)."""

    name: str
    ftype: int
    bits: float

    @property
    def quantized(self) -> bool:
        return self.name not in ("F32", "F16", "BF16")


FORMATS = {f.ftype: f for f in (
    Format("F32", 0, 32), Format("F16", 1, 16), Format("BF16", 32, 16),
    Format("Q4_0", 2, 4.5), Format("Q4_1", 3, 5.0), Format("Q5_0", 8, 5.5), Format("Q5_1", 9, 6.0),
    Format("Q8_0", 7, 8.5),
    Format("Q2_K", 10, 2.96), Format("Q2_K_S", 21, 2.6), Format("Q3_K_S", 11, 3.5), Format("Q3_K_M", 12, 3.91),
    Format("Q3_K_L", 13, 4.27), Format("Q4_K_S", 14, 4.58), Format("Q4_K_M", 15, 4.89),
    Format("Q5_K_S", 16, 5.54), Format("Q5_K_M", 17, 5.7), Format("Q6_K", 18, 6.56),
    Format("IQ1_S", 24, 1.56), Format("IQ1_M", 31, 1.75), Format("IQ2_XXS", 19, 2.06), Format("IQ2_XS", 20, 2.31),
    Format("IQ2_S", 28, 2.5), Format("IQ2_M", 29, 2.7), Format("IQ3_XXS", 23, 3.06), Format("IQ3_XS", 22, 3.3),
    Format("IQ3_S", 26, 3.44), Format("IQ3_M", 27, 3.66), Format("IQ4_NL", 25, 4.5), Format("IQ4_XS", 30, 4.25),
    Format("TQ1_0", 36, 1.69), Format("TQ2_0", 37, 2.06), Format("MXFP4_MOE", 38, 4.25),
)}
# What `digest models quantize --type` offers: formats with fast kernels on common CPUs, and F16.
TARGETS = {name.lower(): next(f for f in FORMATS.values() if f.name == name)
           for name in ("Q8_0", "F16", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0")}
# A quantized model may be requantized without asking only into a format with at least this many
# bits a weight (and more than it has): there the new rounding error is far below the source's own.
LOSSLESS_BITS = 8.0


def target_format(name: str) -> Format:
    try:
        return TARGETS[name.lower()]
    except KeyError:
        raise ModelError(f"unknown quantization type {name!r} (known: {', '.join(TARGETS)})") from None


def file_format(path: Path) -> Format | None:
    """The source's format from its `general.file_type`, or None when the file does not say."""
    value = read_metadata(path).get(FILE_TYPE_KEY)
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    value &= ~_GUESSED
    return FORMATS.get(value, Format(f"file type {value}", value, 0.0))


def lossy_reason(source: Format | None, target: Format) -> str | None:
    """Why converting `source` to `target` would lose more than rounding noise, or None when it would not."""
    if source is None:
        return "its metadata does not say how it is quantized (no general.file_type)"
    if not source.quantized:
        return None  # quantizing float weights is what a quantizer is for
    if source.bits == 0.0:
        return f"it is in a format digest does not know ({source.name})"
    if target.bits >= LOSSLESS_BITS and target.bits > source.bits:
        return None
    return (f"it is already quantized ({source.name}, {source.bits:g} bits a weight), and {target.name} "
            f"({target.bits:g} bits) would round the rounded weights again")


# ---------------------------------------------------------------------------------------------
# llama.cpp's quantizer

def _run_quantizer(source: Path, out: Path, target: Format, threads: int) -> None:
    """llama_model_quantize with its default parameters, requantization allowed; its log kept quiet
    (its error lines are kept for the message, by digest's one log callback)."""
    import llama_cpp

    from ..llama_log import clear_errors, last_error, quiet_logs

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = target.ftype
    params.allow_requantize = True
    params.nthread = threads
    quiet_logs()
    clear_errors()
    status = llama_cpp.llama_model_quantize(str(source).encode(), str(out).encode(), ctypes.byref(params))
    if status != 0:
        raise ModelError(f"llama.cpp could not quantize {source} to {target.name}{last_error()}")


def llama_cpp_python_version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - a source checkout of it
        return "unknown"


@dataclass(frozen=True)
class Expected:
    """What a derived file must be: its size and sha256, and how it was made (for the message)."""

    size: int | None
    sha256: str
    made_with: str = ""  # e.g. "llama-cpp-python 0.3.36"


def check_conversion(source: Path, out: Path, type_name: str, *, allow_lossy: bool = False) -> tuple[Format, Format | None]:
    """The target format and the source's (None if unknown), once the conversion is one `quantize`
    would do: a GGUF source, not a refused lossy one, not onto itself. A ModelError otherwise."""
    source, out = Path(source), Path(out)
    target = target_format(type_name)
    have = file_format(source)  # also: a missing or non-GGUF source fails here, clearly
    reason = lossy_reason(have, target)
    if reason and not allow_lossy:
        raise ModelError(f"refusing to quantize {source} to {target.name}: {reason}; "
                         "pass --allow-lossy to do it anyway")
    if out.resolve() == source.resolve():
        raise ModelError(f"cannot quantize {source} onto itself: give another --out")
    return target, have


def quantize(source: Path, out: Path, type_name: str, *, allow_lossy: bool = False,
             expected: Expected | None = None, threads: int = 0, error: ErrorFn = output_error) -> Path:
    """Write `source` in the format `type_name` to `out`, atomically; return `out`.

    Refuses a lossy requantization unless `allow_lossy`. With `expected`, a result whose size or
    sha256 differs is deleted and reported with both hashes; nothing is left at `out` then.
    `threads` 0 lets llama.cpp use every core (the result does not depend on it).
    """
    source, out = Path(source), Path(out)
    target, _ = check_conversion(source, out, type_name, allow_lossy=allow_lossy)
    with atomic_path(out, error=error) as tmp:
        try:
            _run_quantizer(source, tmp, target, threads)
        except ModelError:
            # llama.cpp reports a failed write as "iostream error", without the reason: a folder
            # left with (almost) no space is the usual one, and it is said as any full disk is.
            if shutil.disk_usage(tmp.parent).free < FULL_DISK:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)) from None
            raise
        if expected is not None:
            size = tmp.stat().st_size
            found = sha256_file(tmp)
            if (expected.size is not None and size != expected.size) or found != expected.sha256:
                made = f" (expected from {expected.made_with})" if expected.made_with else ""
                raise ModelError(
                    f"{target.name} made from {source.name} by llama-cpp-python {llama_cpp_python_version()} "
                    f"has sha256 {found} ({size} bytes), not {expected.sha256} "
                    f"({expected.size} bytes){made}: this llama.cpp quantizes differently, so the "
                    "result is not the verified file; deleted it")
    return out


def default_out(source: Path, type_name: str) -> Path:
    """SRC's name with its format replaced (`X.Q4_1.gguf` -> `X.Q8_0.gguf`), else with it added."""
    source = Path(source)
    target = target_format(type_name).name
    stem = source.name[:-5] if source.name.lower().endswith(".gguf") else source.name
    for fmt in sorted(FORMATS.values(), key=lambda f: -len(f.name)):
        for sep in (".", "-", "_"):
            ending = f"{sep}{fmt.name}"
            if stem.upper().endswith(ending.upper()):
                return source.with_name(f"{stem[: -len(ending)]}{sep}{target}.gguf")
    return source.with_name(f"{stem}.{target}.gguf")
