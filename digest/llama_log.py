"""llama.cpp's one process-wide log: ours keeps its recent error lines (for our own error messages)
and prints nothing. Every user of llama.cpp (the engines' native wrappers, the quantizer of
digest.models) takes its errors from here.

A message may come in pieces (CONT continues the previous level), so pieces are joined until a
newline. The ctypes callback object must stay referenced as long as llama.cpp may call it, so it
lives at module level.
"""

from __future__ import annotations

from collections import deque

import llama_cpp

from .interrupts import note_interrupt

# ggml's log levels (enum ggml_log_level): NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5.
GGML_LOG_LEVEL_ERROR = 4
GGML_LOG_LEVEL_CONT = 5

recent_errors: deque[str] = deque(maxlen=8)
_last_level = 0
_pending: list[str] = []


@llama_cpp.llama_log_callback
def _log_callback(level: int, text: bytes, user_data) -> None:
    try:
        _take_log(level, text)
    except KeyboardInterrupt as exc:  # ctypes would print and drop it: IN_NATIVE's end raises it
        note_interrupt(exc)


def _take_log(level: int, text: bytes) -> None:
    global _last_level
    level = _last_level if level == GGML_LOG_LEVEL_CONT else level
    _last_level = level
    if level != GGML_LOG_LEVEL_ERROR or not text:
        return
    _pending.append(text.decode("utf-8", errors="replace"))
    if _pending[-1].endswith("\n"):
        line = "".join(_pending).strip()
        _pending.clear()
        if line:
            recent_errors.append(line)


def quiet_logs() -> None:
    llama_cpp.llama_log_set(_log_callback, None)


def last_error() -> str:
    """llama.cpp's last error line, as a suffix for our own messages (empty when it logged none)."""
    if _pending:
        recent_errors.append("".join(_pending).strip())
        _pending.clear()
    return f" (llama.cpp: {recent_errors[-1]})" if recent_errors else ""


def clear_errors() -> None:
    recent_errors.clear()
    _pending.clear()
