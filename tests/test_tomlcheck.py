"""digest.tomlcheck: every key's line in any TOML layout, and for each kind of error in each of
digest's TOML files (digest.toml, the model registry) the line of the offending key."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from digest.config import load_config, parse_config
from digest.errors import EXIT_CONFIG, ConfigError
from digest.models.registry import load_registry
from digest.tomlcheck import KeyLines

SETTINGS = settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------------------------------------
# KeyLines: a generated document, written in one of TOML's many ways, and the line of each key in it

BARE = re.compile(r"[A-Za-z0-9_-]+\Z")
# Names and strings with what a line-based finder trips on: '=', '#', brackets, dots, quotes.
TRICKY = list('ab .=#[]"\'{},') + ["k = 1", "[t]", "[[t]]", "x.y"]
names = st.text("ab_-1", min_size=1, max_size=3) | st.lists(st.sampled_from(TRICKY), max_size=3).map("".join)
tricky = st.lists(st.sampled_from(TRICKY + ["\\", "\t"]), max_size=4).map("".join)
# Lines for multi-line strings: what looks like a key or a header but is text.
BODY = st.lists(st.sampled_from(["k = 1", "[t]", "[[model]]", "name = 'x'", "  # not a comment", "", "x"]),
                min_size=1, max_size=4).map(lambda lines: "\n".join(lines) + "\n")


def key(name: str) -> str:
    return name if BARE.match(name) else basic(name)


def basic(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\t", "\\t") + '"'


def dotted(parts: list[str], draw) -> str:
    return draw(st.sampled_from([".", " . "])).join(key(p) for p in parts)


class Writer:
    """The text being generated, the data it must parse to, and where each key was written."""

    def __init__(self, draw):
        self.draw, self.lines, self.expected = draw, [], {}

    def write(self, text: str, paths=()) -> int:
        line = len(self.lines) + 1
        for path in paths:
            self.expected.setdefault(tuple(path), line)
        self.lines.extend(text.split("\n"))
        return line

    def gap(self) -> None:
        for _ in range(self.draw(st.integers(0, 2))):
            self.write(self.draw(st.sampled_from(["", "# k = 1", "   # [t]", "\t"])))

    def value(self, path: tuple) -> tuple[str, object, list[tuple[tuple, int]]]:
        """A value's text, what it parses to, and the keys inside it (path, line offset)."""
        draw = self.draw
        kind = draw(st.sampled_from(["int", "bool", "basic", "literal", "array", "mlbasic", "mlliteral",
                                     "inline", "tables"]))
        if kind == "int":
            n = draw(st.integers(-10**6, 10**6))
            return str(n), n, []
        if kind == "bool":
            return "true", True, []
        if kind == "basic":
            text = draw(tricky)
            return basic(text), text, []
        if kind == "literal":
            text = draw(tricky).replace("'", "")
            return f"'{text}'", text, []
        if kind == "array":  # one item a line, each a string that looks like a key or a header
            items = draw(st.lists(tricky, max_size=3))
            text = "[\n" + "".join(f"  {basic(i)},\n" for i in items) + "]"
            return text, items, [((*path, n), n + 1) for n in range(len(items))]
        if kind in ("mlbasic", "mlliteral"):
            quote = '"""' if kind == "mlbasic" else "'''"
            body = draw(BODY)
            return f"{quote}\n{body}{quote}", body, []
        if kind == "inline":
            inner = draw(st.lists(names, unique=True, max_size=3))
            values = [draw(st.integers(0, 9)) for _ in inner]
            text = "{ " + ", ".join(f"{key(k)} = {v}" for k, v in zip(inner, values)) + " }"
            return text, dict(zip(inner, values)), [((*path, k), 0) for k in inner]
        # an array of inline tables, one a line
        count = draw(st.integers(0, 3))
        text = "[\n" + "".join(f"  {{ a = {n} }},\n" for n in range(count)) + "]"
        return text, [{"a": n} for n in range(count)], [((*path, n, "a"), n + 1) for n in range(count)]

    def pairs(self, table: tuple, prefix: list[str], data: dict, names_: list[str]) -> None:
        """`name = value` for each name, written under a header for `table` (with `prefix` as dotted
        keys in front: `prefix.name = value`)."""
        for name in names_:
            self.gap()
            text, value, inner = self.value((*table, *prefix, name))
            parts = [*prefix, name]
            paths = [(*table, *parts[:end]) for end in range(1, len(parts) + 1)]
            line = self.write(f"{dotted(parts, self.draw)} = {text}", paths)
            for path, offset in inner:
                self.expected.setdefault(path, line + offset)
            target = data
            for part in prefix:
                target = target.setdefault(part, {})
            target[name] = value


@st.composite
def documents(draw):
    """(TOML text, the data it parses to, {key path: line})."""
    w = Writer(draw)
    data: dict = {}
    top = draw(st.lists(names, unique=True, min_size=1, max_size=8))
    cut = sorted(draw(st.lists(st.integers(0, len(top)), min_size=3, max_size=3)))
    plain, dotted_tables, tables, arrays = top[:cut[0]], top[cut[0]:cut[1]], top[cut[1]:cut[2]], top[cut[2]:]
    w.pairs((), [], data, plain)
    for name in dotted_tables:  # a table made of dotted keys: `name.key = value`
        w.pairs((), [name], data, draw(st.lists(names, unique=True, min_size=1, max_size=3)))
    for name in tables:  # [name], then maybe [name.sub]
        keys = draw(st.lists(names, unique=True, min_size=2, max_size=4))
        w.gap()
        w.write(f"[{dotted([name], draw)}]", [(name,)])
        data[name] = {}
        w.pairs((name,), [], data[name], keys[1:])
        if draw(st.booleans()):
            sub = keys[0]
            w.write(f"[ {dotted([name, sub], draw)} ]", [(name, sub)])
            data[name][sub] = {}
            w.pairs((name, sub), [], data[name][sub], draw(st.lists(names, unique=True, max_size=3)))
    for name in arrays:  # [[name]] a few times, each maybe with a [name.sub]
        data[name] = []
        for index in range(draw(st.integers(1, 3))):
            keys = draw(st.lists(names, unique=True, min_size=1, max_size=4))
            w.gap()
            w.write(f"[[{dotted([name], draw)}]]", [(name,), (name, index)])
            data[name].append({})
            w.pairs((name, index), [], data[name][index], keys[1:])
            if draw(st.booleans()):
                w.write(f"[{dotted([name, keys[0]], draw)}]", [(name, index, keys[0])])
                data[name][index][keys[0]] = {}
                w.pairs((name, index, keys[0]), [], data[name][index][keys[0]],
                        draw(st.lists(names, unique=True, max_size=2)))
    w.gap()
    return "\n".join(w.lines) + "\n", data, w.expected


@SETTINGS
@given(documents())
def test_every_key_is_found_on_its_line(document):
    text, data, expected = document
    assert tomllib.loads(text) == data  # the generator wrote what it meant to
    lines = KeyLines(text)
    found = {path: lines.line(path) for path in expected}
    assert found == expected, text


def test_a_missing_key_is_on_its_tables_line_and_an_unknown_table_on_none():
    lines = KeyLines("a = 1\n\n[[m]]\nx = 1\n[[m]]\ny = 2\n")
    assert lines.line(("m", 1, "file")) == 5
    assert lines.line(("m", 0, "y")) == 3
    assert lines.line(("nope",)) is None


# ---------------------------------------------------------------------------------------------
# Each kind of error, in each file, is reported on the line of the offending key, wherever it is
# written: after comments, multi-line arrays and multi-line strings that look like keys and headers,
# under its own header or as a dotted key under its parent's.

CONFIG = Path("/site/digest.toml")

# (table, bad key line, words). The line is the bad key's unless `table` itself is the offence.
CONFIG_ERRORS = [
    (("generation",), "sede = 4", "unknown key 'generation.sede' (known here: engine, seed,"),
    (("blog", "covr"), "image = 'a.png'", "unknown key 'blog.covr'"),
    (("feeds", "topics"), "count = 'six'", "'feeds.topics.count' must be an integer, not 'six'"),
    (("feeds", "topics"), "count = 0", "'feeds.topics.count' = 0 is out of range (1 to 50)"),
    (("generation",), "engine = 'turbo'", "'generation.engine' must be one of batched, "),
    (("blog",), "notice = ' '", "'blog.notice' must have visible text, not ' '"),
    (("blog",), "cover = 3", "'blog.cover' must be a table"),
    (("blog", "cover"), "hidden = 'yes'", "'blog.cover.hidden' must be true or false, not 'yes'"),
    (("blog",), "tags = [1, 2]", "'blog.tags' must be a list of strings, not [1, 2]"),
    (("generation",), "temperature = nan", "'generation.temperature' must be a number, not nan"),
    (("generation",), "seed = = 1", "invalid TOML: "),
]
# Other keys of each table, written before the bad one: values over several lines, whose text looks
# like keys and headers.
CONFIG_FILLERS = {
    ("generation",): ["prompts_dir = '''\n[feeds.topics]\nsede = 4\n'''", "examples = true"],
    ("feeds", "topics"): ['mirrors = [\n  "http://m/?count=0",\n  "http://m/[blog]",\n]', 'url = "http://x/"'],
    ("blog",): ['title = """\ncover = 3\n[[blog]]\n"""', "author = 'x'"],
    ("blog", "cover"): ['alt = """\nhidden = 3\n"""', "image = 'a.png'"],
    ("blog", "covr"): [],
}
# Whole tables written before the one with the error.
CONFIG_BEFORE = ["[feeds.trending]\nmirrors = [\n  'http://a/',\n  'http://b/?count=0',\n]",
                 "[history]\ndays = 3 # [generation]", "[output]\ndir = '''\nengine = 'turbo'\n'''"]

REGISTRY = '# a registry\ndefault = "tiny"\n'
FIRST = f'[[model]]\nname = "tiny"\nfile = "tiny.gguf"\nsize = 5\nsha256 = "{"a" * 64}"\nurl = "http://x/tiny.gguf"'
# (lines of the second [[model]] table, the bad one's index (None: the table's header), words)
REGISTRY_ERRORS = [
    (['name = "b"', 'file = "b.gguf"', "sizes = 3"], 2, "unknown key 'sizes' (known here: name, file, size,"),
    (['name = "b"', 'file = "b.gguf"', 'size = "big"'], 2, "'size' must be an integer, not 'big'"),
    (['name = "b"', 'file = "b.gguf"', "size = 0"], 2, "'size' must be at least 1, not 0"),
    (['name = "b"'], None, "each [[model]] table needs 'file'"),
    (['name = "b"', 'file = ""'], 1, "'file' must not be empty"),
    (['name = "b"', 'file = "../b.gguf"'], 1, "'file' must be a plain file name, not '../b.gguf'"),
    (['name = "b"', 'file = "b.gguf"', 'sha256 = "ABC"'], 2, "'sha256' must be 64 lowercase hex digits, not 'ABC'"),
    (['name = "tiny"', 'file = "b.gguf"'], 0, "model 'tiny' is listed twice"),
    (['name = "b"', 'file = "b.gguf"', 'quantize = "q8_0"'], 2, "'quantize' belongs to a derived model"),
    (['name = "b"', 'file = "b.gguf"', "size = 1", f'sha256 = "{"b" * 64}"', 'quantize = "q8_0"',
      'derived_from = "nope"'], 5, "'b' is derived from 'nope', which is not among the models (tiny, b)"),
    (['name = "b"', 'file = "b.gguf"', "size = 1", f'sha256 = "{"b" * 64}"', 'url = "http://x/b.gguf"',
      'quantize = "q8_0"', 'derived_from = "tiny"'], 6,
     "a model has one source (url, wheel, wheels or derived_from), not url and derived_from"),
    (['name = "b"', 'file = "b.gguf"', "size = 1", f'sha256 = "{"b" * 64}"', 'derived_from = "tiny"'], 4,
     "a derived model needs 'quantize'"),
    (['name = "b"', 'file = "b.gguf"', "size = 1", f'sha256 = "{"b" * 64}"', 'derived_from = "tiny"',
      'quantize = "q9_9"'], 5, "unknown quantization type 'q9_9'"),
    (['name = "b"', 'file = "b.gguf"', "size = 1", f'sha256 = "{"b" * 64}"', 'derived_from = "tiny"',
      'quantize = "q8_0"', f'source_sha256 = "{"c" * 64}"'], 6, f"but 'tiny' has {'a' * 64}"),
    (['name = "b"', 'file = "b.gguf"', "size = 1", f'sha256 = "{"b" * 64}"', 'quantize = "q8_0"',
      'derived_from = "b"'], 5, "'b' must be derived from a model that is downloaded and verified as it is"),
    (['name = "b"', 'file = "b.gguf"', 'url = "http://x/'], 2, "invalid TOML: "),
]
# Keys of a [[model]] table whose multi-line text looks like keys and headers.
REGISTRY_FILLERS = ['notes = """\nname = "x"\n[[model]]\n"""', "licence = '''\nsize = 0\n'''",
                    'chat_template = "[[model]] file = x"']


def error_of(load) -> str:
    with pytest.raises(ConfigError) as caught:
        load()
    assert caught.value.exit_code == EXIT_CONFIG
    assert "\n" not in str(caught.value)
    return str(caught.value)


def line_after(chunks: list[str], index: int) -> int:
    """The line on which chunk `index` starts when the chunks are joined by newlines."""
    return sum(chunk.count("\n") + 1 for chunk in chunks[:index]) + 1


@SETTINGS
@given(case=st.sampled_from(CONFIG_ERRORS), data=st.data())
def test_each_config_error_is_on_the_line_of_its_key(case, data):
    table, bad, words = case
    draw = data.draw
    gaps = st.sampled_from(["", "# a comment = 1", "  # [blog]"])
    chunks = draw(st.lists(gaps, max_size=2))
    # Under the table's own header, or as a dotted key under a parent's header (or at the top).
    split = draw(st.integers(0, len(table)))
    header, prefix = table[:split], list(table[split:])
    if header:
        chunks += draw(st.lists(st.sampled_from(CONFIG_BEFORE), unique=True, max_size=2))
        chunks.append(f"[{'.'.join(header)}]")
    header_at = len(chunks) - 1
    start = lambda line: ".".join([*prefix, line]) if prefix else line  # noqa: E731
    for filler in draw(st.permutations(CONFIG_FILLERS[table]))[:draw(st.integers(0, 2))]:
        chunks += draw(st.lists(gaps, max_size=1)) + [start(filler)]
    chunks.append(start(bad))
    bad_at = len(chunks) - 1
    chunks += draw(st.lists(gaps, max_size=1))
    text = "\n".join(chunks) + "\n"
    # An unknown table is where it is first named: its header, or the dotted key.
    at = header_at if table == ("blog", "covr") and header == table else bad_at
    message = error_of(lambda: parse_config(text, CONFIG))
    assert message.startswith(f"{CONFIG}:{line_after(chunks, at)}: "), (message, text)
    assert words in message


@SETTINGS
@given(case=st.sampled_from(REGISTRY_ERRORS), data=st.data())
def test_each_registry_error_is_on_the_line_of_its_key(case, data, tmp_path_factory):
    lines, bad, words = case
    draw = data.draw
    fillers = st.lists(st.sampled_from(REGISTRY_FILLERS), unique=True, max_size=2)
    chunks = [REGISTRY, FIRST, *draw(fillers), ""]
    header_at = len(chunks)
    chunks.append("[[model]]")
    filled = draw(fillers)
    for index, line in enumerate(lines):
        if index == bad:  # the fillers go just before the bad key, to move it
            chunks += filled
            bad_at = len(chunks)
        chunks.append(line)
    if bad is None:
        chunks += filled
        bad_at = header_at
    path = tmp_path_factory.mktemp("registry") / "registry.toml"
    path.write_text("\n".join(chunks) + "\n", encoding="utf-8")
    message = error_of(lambda: load_registry(path))
    assert message.startswith(f"{path}:{line_after(chunks, bad_at)}: "), (message, path.read_text())
    assert words in message


@pytest.mark.parametrize("text, line, words", [
    ('default = "nope"\n\n[[model]]\nname = "a"\nfile = "a.gguf"\n', 1, "default model 'nope' is not among the models (a)"),
    ('default = 3\n', 1, "'default' must be a string, not 3"),
    ('# registry\n\ndefalt = "a"\n', 3, "unknown key 'defalt' (known here: default, model)"),
    ('# registry\nmodel = 3\n', 2, "'model' must be [[model]] tables, not 3"),
    ('[model]\nname = "a"\n', 1, "'model' must be [[model]] tables"),
    ('[[model]]\nname = "a"\nfile = "a.gguf"\n[[model.x]]\n', 4, "unknown key 'x'"),
])
def test_registry_top_level_errors_name_their_line(tmp_path, text, line, words):
    path = tmp_path / "registry.toml"
    path.write_text(text, encoding="utf-8")
    message = error_of(lambda: load_registry(path))
    assert message.startswith(f"{path}:{line}: ") and words in message, message


def test_neither_file_may_be_other_than_utf8(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes("[blog]\nauthor = 'Jos\xe9'\n".encode("latin-1"))
    for load, what in ((load_config, "config file"), (load_registry, "model registry")):
        message = error_of(lambda: load(path))
        assert message.startswith(f"cannot read {what} {path}: it is not UTF-8 text"), message
