"""Reading and checking TOML files (`digest.toml`, `models/registry.toml`) with FILE:LINE messages.

A file's shape is a dataclass: each field a key, its type the value's type (str, int, float, bool,
a list of those, another dataclass for a table, a list of dataclasses for an array of tables
`[[name]]`), and its metadata (`rules(...)`) the limits: a range, choices, a required key, a check of
the caller's own. `build` checks a parsed table against that shape and names the file and line of the
offending key in every error; `Document.error` does the same for a caller's cross-field rules.
`KeyLines` finds those lines: keys in tables, nested tables, dotted keys, inline tables and arrays
of tables, past multi-line strings and arrays.
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
import types
from bisect import bisect_right
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Union, get_args, get_origin, get_type_hints

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from .errors import ConfigError

# A key's place in a file: table and key names, and the index of an element of an array (of tables).
KeyPath = tuple  # tuple[str | int, ...]


def rules(lo: float | None = None, hi: float | None = None, *, choices: tuple = (), required: bool = False,
          check: tuple[Callable[[Any], Any], str] | None = None) -> dict:
    """Field metadata for `build`: the range [lo, hi], the allowed values, whether the key must be
    given (and not empty), and `check`: (a test of the value, what the value must be if it fails,
    e.g. "must be a plain file name"; a list's `check` tests each of its items)."""
    return {"min": lo, "max": hi, "choices": choices, "required": required, "check": check}


# ---------------------------------------------------------------------------------------------
# Where each key is

_BARE = re.compile(r"[A-Za-z0-9_-]+")


class KeyLines:
    """The line of each key in a TOML text that tomllib has parsed.

    Paths are as in the parsed data: `("feeds", "topics", "count")`, and for the second `[[model]]`
    table `("model", 1, "name")`; `line` of a path that is not written (a missing key) is the line of
    its nearest written parent (the table's header), or None.
    """

    def __init__(self, text: str):
        self._text = text
        self._starts = [0] + [m.end() for m in re.finditer("\n", text)]
        self._index: dict[KeyPath, int] = {}
        self._arrays: dict[KeyPath, int] = {}  # an array of tables -> how many of its tables so far
        try:
            self._scan()
        except (IndexError, AttributeError):  # pragma: no cover - a layout the scan does not know
            pass  # the keys found so far keep their lines; the others get their table's, or none

    def line(self, path: KeyPath) -> int | None:
        path = tuple(path)
        while path:
            if path in self._index:
                return self._index[path]
            path = path[:-1]
        return None

    # The text is valid TOML (tomllib read it), so the scan need not check anything.

    def _at(self, pos: int) -> int:
        return bisect_right(self._starts, pos)

    def _record(self, path: KeyPath, pos: int) -> None:
        self._index.setdefault(path, self._at(pos))

    def _skip(self, pos: int, newlines: bool = True) -> int:
        """Past white space and comments (and newlines, unless told not to)."""
        text = self._text
        while pos < len(text):
            char = text[pos]
            if char in " \t" or newlines and char in "\r\n":
                pos += 1
            elif char == "#":
                end = text.find("\n", pos)
                pos = len(text) if end < 0 else end
            else:
                break
        return pos

    def _resolve(self, parts: list[str], pos: int) -> KeyPath:
        """A header's key as a path: through the last table of each array of tables on the way."""
        path: KeyPath = ()
        for part in parts:
            path = (*path, part)
            if path in self._arrays:
                path = (*path, self._arrays[path] - 1)
            self._record(path, pos)
        return path

    def _scan(self) -> None:
        text, pos, table = self._text, 0, ()
        while (pos := self._skip(pos)) < len(text):
            start = pos
            if text.startswith("[[", pos):
                parts, pos = self._key(pos + 2)
                parent = self._resolve(parts[:-1], start)
                array = (*parent, parts[-1])
                self._arrays[array] = self._arrays.get(array, 0) + 1
                table = (*array, self._arrays[array] - 1)
                self._record(array, start)
                self._record(table, start)
                pos = self._skip(pos, newlines=False) + 2  # ]]
            elif text[pos] == "[":
                parts, pos = self._key(pos + 1)
                table = self._resolve(parts, start)
                pos = self._skip(pos, newlines=False) + 1  # ]
            else:
                pos = self._pair(pos, table)

    def _key(self, pos: int) -> tuple[list[str], int]:
        """A (dotted) key starting at `pos`: its parts, and where it ends."""
        text, parts = self._text, []
        while True:
            pos = self._skip(pos, newlines=False)
            if text[pos] in "\"'":
                end = self._string(pos)
                parts.append(tomllib.loads(f"k = {text[pos:end]}")["k"])
                pos = end
            else:
                match = _BARE.match(text, pos)
                parts.append(match.group())
                pos = match.end()
            pos = self._skip(pos, newlines=False)
            if pos < len(text) and text[pos] == ".":
                pos += 1
                continue
            return parts, pos

    def _pair(self, pos: int, table: KeyPath) -> int:
        """`key = value` at `pos` in `table`: records the key (each part of a dotted one) and the keys
        inside its value; returns where the value ends."""
        start = pos
        parts, pos = self._key(pos)
        for end in range(1, len(parts) + 1):
            self._record((*table, *parts[:end]), start)
        pos = self._skip(pos, newlines=False) + 1  # =
        return self._value(self._skip(pos, newlines=False), (*table, *parts))

    def _value(self, pos: int, path: KeyPath) -> int:
        text = self._text
        char = text[pos]
        if char in "\"'":
            return self._string(pos)
        if char == "[":
            pos, index = pos + 1, 0
            while text[pos := self._skip(pos)] != "]":
                self._record((*path, index), pos)
                pos = self._skip(self._value(pos, (*path, index)))
                index += 1
                if text[pos] == ",":
                    pos += 1
            return pos + 1
        if char == "{":
            pos += 1
            while text[pos := self._skip(pos)] != "}":
                pos = self._skip(self._pair(pos, path))
                if text[pos] == ",":
                    pos += 1
            return pos + 1
        # A number, a boolean or a date: up to what ends a value.
        while pos < len(text) and text[pos] not in ",]}#\r\n":
            pos += 1
        return pos

    def _string(self, pos: int) -> int:
        """Where the string (basic or literal, one line or multi-line) at `pos` ends."""
        text = self._text
        quote = text[pos]
        if text.startswith(quote * 3, pos):
            pos += 3
            while not text.startswith(quote * 3, pos):
                pos += 2 if quote == '"' and text[pos] == "\\" else 1
            pos += 3
            while pos < len(text) and text[pos] == quote:  # up to two quotes may end the content
                pos += 1
            return pos
        pos += 1
        while text[pos] != quote:
            pos += 2 if quote == '"' and text[pos] == "\\" else 1
        return pos + 1


# ---------------------------------------------------------------------------------------------
# Reading a file


@dataclass
class Document:
    """A parsed TOML file: its data, and its name and key lines for messages."""

    name: str
    data: dict
    lines: KeyLines = dataclasses.field(default_factory=lambda: KeyLines(""))

    def where(self, path: KeyPath) -> str:
        """"FILE:LINE" of the key at `path` (of its table when the key is missing)."""
        line = self.lines.line(path)
        return f"{self.name}:{line}" if line else self.name

    def error(self, path: KeyPath, message: str) -> ConfigError:
        return ConfigError(f"{self.where(path)}: {message}")


def parse(text: str, name: str) -> Document:
    """`text` parsed; invalid TOML is a ConfigError naming `name` and the line tomllib names."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None)
        if line is None:  # before Python 3.14 the line is only in the message
            match = re.search(r"\(at line (\d+), column \d+\)$", str(exc))
            line = match and int(match.group(1))
        raise ConfigError(f"{name}{f':{line}' if line else ''}: invalid TOML: {exc}") from exc
    return Document(name, data, KeyLines(text))


def read_text(path: Path, what: str, missing: str) -> str:
    """The UTF-8 text of `path`; a ConfigError naming `what` ("config file") when it cannot be read,
    with `missing` (what to do) when it does not exist."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {path} ({missing})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot read {what} {path}: it is not UTF-8 text ({exc.reason} at byte "
                          f"{exc.start}); save it as UTF-8") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc}") from exc


# ---------------------------------------------------------------------------------------------
# Checking a table against its dataclass

_EXPECTED = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
_PLURAL = {str: "strings", int: "integers", float: "numbers", bool: "booleans"}


def _name(path: KeyPath) -> str:
    """A key as messages name it: dotted from the top of the file or of its [[table]]."""
    tail = list(path)
    while any(isinstance(p, int) for p in tail):
        tail = tail[1:]
    return ".".join(tail)


def _header(path: KeyPath) -> str:
    names = ".".join(p for p in path if isinstance(p, str))
    if path and isinstance(path[-1], int):
        return f"each [[{names}]] table"
    return f"[{names}]" if names else "the file"


def _optional(hint: Any) -> Any:
    """`X | None` -> X (TOML has no null: None is only ever a default)."""
    if get_origin(hint) in (Union, types.UnionType):
        (hint,) = [arg for arg in get_args(hint) if arg is not type(None)]
    return hint


def check_value(hint: Any, value: Any, meta: dict, subject: str) -> Any:
    """`value` checked against its type and `rules`; `subject` names it in errors ("file:3: 'seed'",
    or a flag: "--seed")."""
    hint = _optional(hint)
    if get_origin(hint) is list:
        (item,) = get_args(hint)
        if not isinstance(value, list) or not all(isinstance(v, item) for v in value):
            raise ConfigError(f"{subject} must be a list of {_PLURAL[item]}, not {value!r}")
        check = meta.get("check")
        for v in value if check else ():
            if not check[0](v):
                raise ConfigError(f"{subject}: each one {check[1]}, not {v!r}")
        return list(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if hint in (int, float) and isinstance(value, bool) or not isinstance(value, hint):
        raise ConfigError(f"{subject} must be {_EXPECTED[hint]}, not {value!r}")
    if isinstance(value, float) and math.isnan(value):
        raise ConfigError(f"{subject} must be a number, not nan")
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and hi is not None and not lo <= value <= hi:
        raise ConfigError(f"{subject} = {value!r} is out of range ({lo} to {hi})")
    if lo is not None and value < lo:
        raise ConfigError(f"{subject} must be at least {lo}, not {value!r}")
    if hi is not None and value > hi:
        raise ConfigError(f"{subject} must be at most {hi}, not {value!r}")
    choices = meta.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"{subject} must be one of {', '.join(map(str, choices))}, not {value!r}")
    check = meta.get("check")
    if check and not check[0](value):
        raise ConfigError(f"{subject} {check[1]}, not {value!r}")
    return value


def build(cls: type, data: dict, doc: Document, path: KeyPath = (), base: Any = None) -> Any:
    """An instance of dataclass `cls` from the table `data` at `path` in `doc`, every key checked.

    With `base`, the table's keys are set on it and the keys it leaves out keep `base`'s values (a
    `[feeds.topics]` with only a url keeps its parent's 6 topics); without, `cls(**checked)`.
    """
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    for key in data:
        if key not in fields:
            raise doc.error((*path, key), f"unknown key '{_name((*path, key))}' (known here: {', '.join(fields)})")
    for name, spec in fields.items():
        if spec.metadata.get("required") and data.get(name) in (None, ""):
            here = (*path, name)
            raise doc.error(here, f"'{_name(here)}' must not be empty" if name in data
                            else f"{_header(path)} needs '{name}'")
    checked = {}
    for name, value in data.items():
        here = (*path, name)
        hint = _optional(hints[name])
        if value is None and hint is not hints[name]:
            checked[name] = None  # unset: only recorded data (a manifest's JSON) holds it; TOML has no null
            continue
        inner = base if base is None else getattr(base, name)
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise doc.error(here, f"'{_name(here)}' must be a table")
            value = build(hint, value, doc, here, inner)
        elif get_origin(hint) is list and dataclasses.is_dataclass(get_args(hint)[0]):
            if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                header = ".".join(p for p in here if isinstance(p, str))
                raise doc.error(here, f"'{_name(here)}' must be [[{header}]] tables, not {value!r}")
            value = [build(get_args(hint)[0], table, doc, (*here, i)) for i, table in enumerate(value)]
        else:
            value = check_value(hint, value, fields[name].metadata, f"{doc.where(here)}: '{_name(here)}'")
        checked[name] = value
    if base is None:
        return cls(**checked)
    for name, value in checked.items():
        setattr(base, name, value)
    return base
