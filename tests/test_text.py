"""digest.markdown (safe one-line Markdown) and digest.text (cleaning model output, predictions)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digest.markdown import escape_inline, one_line, unescape_inline
from digest.config import Generation
from digest.sections import labels
from digest.text import clean_paragraph, complete_sentences, parse_prediction, shape, written

# The word limits' one home is the config ([generation] min_words, max_words); these are its defaults.
MIN_WORDS, MAX_WORDS = Generation().min_words, Generation().max_words


def clean(raw: str) -> str:
    return clean_paragraph(raw, MIN_WORDS, MAX_WORDS, labels())


def parse(raw: str):
    return parse_prediction(raw, MIN_WORDS, MAX_WORDS, labels())

SENTENCE_END = re.compile(r"[.!?][\"'”’)\]]*$")


def unescaped_residue(escaped: str) -> str:
    """`escaped` with every backslash escape pair removed: what is left is raw text."""
    return re.sub(r"\\.", "", escaped)


# ---------------------------------------------------------------------------------------------
# markdown.one_line / escape_inline / unescape_inline


def test_one_line_collapses_all_whitespace():
    assert one_line("  a\n\nb\t c\r\n d\u2028e\u00a0f  ") == "a b c d e f"


def test_one_line_drops_invisible_characters():
    assert one_line("ab\u200bc\u202ed\ufeff\x00e") == "abcde"


@pytest.mark.parametrize("text", ["a \u200b b", "x \x00 y", "left \u202e right"])
def test_one_line_leaves_single_spaces(text):
    out = one_line(text)
    assert "  " not in out
    assert one_line(out) == out


@settings(deadline=None, max_examples=300)
@given(st.text())
def test_escape_roundtrip(text):
    assert unescape_inline(escape_inline(text)) == one_line(text)


@settings(deadline=None, max_examples=300)
@given(st.text(alphabet=st.sampled_from(list("{}&#;0123456789ampxX<>\\*_[]`!|~-+=. \n\u200b")), max_size=40))
def test_escape_roundtrip_on_tricky_alphabet(text):
    escaped = escape_inline(text)
    assert unescape_inline(escaped) == one_line(text)
    assert "<" not in unescaped_residue(escaped)
    assert "{{" not in escaped
    assert "\n" not in escaped


@settings(deadline=None, max_examples=300)
@given(st.text() | st.text(alphabet=st.sampled_from(list("{}&#;0123456789amp<>*_`[] \n")), max_size=40))
def test_escape_output_is_inert(text):
    escaped = escape_inline(text)
    assert "\n" not in escaped and "\r" not in escaped
    assert "{{" not in escaped
    residue = unescaped_residue(escaped)
    for char in "<>*_`[]":
        assert char not in residue
    # Only "&amp;" (and the entities that break up "{{" / "}}") may start an entity: nothing the
    # text itself held decodes as HTML.
    rest = escaped.replace("{&#123;", "").replace("&#125;}", "")
    assert not re.search(r"&(?!amp;)(?:#[0-9]+|#[xX][0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]*);", rest)


@pytest.mark.parametrize(
    "text",
    ["- not a list", "+ not a list", "= not a heading", "1. not a list", "2030. Not a list either", "# not a heading"],
)
def test_escape_prevents_block_starts(text):
    escaped = escape_inline(text)
    assert not re.match(r"[-+=#]|\d+[.)]\s", escaped), escaped
    assert unescape_inline(escaped) == text


def test_escape_examples():
    assert escape_inline("AT&T") == "AT&T"  # an "&" that starts no entity stays
    assert escape_inline("&amp;") != "&amp;"
    assert unescape_inline(escape_inline("&amp;")) == "&amp;"
    assert "{{" not in escape_inline("{{< shortcode >}}")
    assert unescape_inline(escape_inline("{{< shortcode >}}")) == "{{< shortcode >}}"
    assert escape_inline("plain words, here.") == "plain words, here."


# ---------------------------------------------------------------------------------------------
# text.clean_paragraph


BODY = "The new model helps doctors read scans faster. It also lowers the cost of a second opinion."


@pytest.mark.parametrize(
    "prefix",
    [
        "Benefits:",
        "Benefits: ",
        "**Benefits:**",
        "**Benefits:** ",
        "*Benefits:*",
        "- *Benefits:*",
        "Ramifications:",
        "**Ramifications:**",
        "Ramifications -",
        "**Ramifications**:",
        "Benefits:\n",
        "- *Ramifications:*\n\n",
    ],
)
def test_strips_label_echo(prefix):
    assert clean(prefix + BODY) == BODY


@pytest.mark.parametrize(
    "preamble",
    [
        "Sure, here is a paragraph about the benefits:",
        "Sure! Here's the paragraph you asked for:",
        "Here is a paragraph about the ramifications:",
        "Certainly! Here is the paragraph:",
        "Sure.",
    ],
)
@pytest.mark.parametrize("sep", [" ", "\n", "\n\n"])
def test_strips_preamble(preamble, sep):
    assert clean(preamble + sep + BODY) == BODY


def test_strips_preamble_then_label():
    assert clean("Sure, here it is:\n\n**Benefits:** " + BODY) == BODY


@pytest.mark.parametrize(
    "first", ["Of course, larger models cost more to train.", "Certainly the field now moves faster than before."]
)
def test_keeps_real_sentence_that_starts_like_a_preamble(first):
    assert clean(f"{first} {BODY}") == f"{first} {BODY}"


def test_strips_headings_fences_and_list_markers():
    raw = "---\n# Benefits of faster scans\n\n## Summary\n- The new model helps doctors read scans faster.\n" \
          "* It also lowers the cost of a second opinion.\n---\n"
    assert clean(raw) == BODY


def test_strips_numbered_list_markers():
    raw = "1. The new model helps doctors read scans faster.\n2) It also lowers the cost of a second opinion."
    assert clean(raw) == BODY


def test_strips_emphasis():
    raw = "The **new** model helps *doctors* read `scans` faster. It also __lowers__ the cost of a second opinion."
    assert clean(raw) == BODY


def test_cuts_unfinished_last_sentence():
    assert clean(BODY + " And then the model") == BODY
    assert clean(BODY + " It costs $3") == BODY


@pytest.mark.parametrize("raw", ["", "   ", "an unfinished thought", "# Only a heading\n", "---\n---", "Benefits:"])
def test_no_finished_sentence_gives_empty(raw):
    assert clean(raw) == ""


def test_crlf_and_newlines_become_one_line():
    raw = "The new model helps doctors\r\nread scans faster.\r\nIt also lowers the cost\nof a second opinion."
    assert clean(raw) == BODY


def test_drops_dangling_quote():
    assert clean('"' + BODY) == BODY
    assert clean(BODY + ' "') == BODY
    quoted = 'People call it "the scanner". It works.'
    assert clean(quoted) == quoted


def test_complete_sentences():
    assert complete_sentences("One. Two! Three? Four") == "One. Two! Three?"
    assert complete_sentences('He said "yes." Then') == 'He said "yes."'
    assert complete_sentences("Version 2.5 is out") == ""


@settings(deadline=None, max_examples=300)
@given(st.text())
def test_clean_paragraph_output_shape(raw):
    out = clean(raw)
    assert "\n" not in out
    assert out == out.strip()
    assert "**" not in out and "`" not in out
    assert out == "" or SENTENCE_END.search(out)


# --- length shaping, with generated text whose word counts are known -------------------------


def sentence(words: int, tag: str) -> str:
    """A sentence of exactly `words` words, all distinct, none a label, preamble or marker."""
    body = [f"{tag}w{n}" for n in range(words)]
    body[0] = body[0].capitalize()
    return " ".join(body) + "."


def paragraphs_text(layout: list[list[int]]) -> tuple[str, list[list[str]]]:
    paras = [[sentence(n, f"p{i}s{j}") for j, n in enumerate(p)] for i, p in enumerate(layout)]
    return "\n\n".join(" ".join(p) for p in paras), paras


def expected_shape(paras: list[list[str]], lo: int = MIN_WORDS, hi: int = MAX_WORDS) -> str:
    """The rule, from the docs: whole paragraphs until `lo` words are reached, then whole
    sentences (in order, the first always) while the total stays within `hi` words."""
    kept, words = [], 0
    for p in paras:
        if words >= lo:
            break
        kept.extend(p)
        words += sum(len(s.split()) for s in p)
    out, total = [], 0
    for s in kept:
        n = len(s.split())
        if out and total + n > hi:
            break
        out.append(s)
        total += n
    return " ".join(out)


def test_shape_keeps_whole_paragraphs_until_min_words():
    text, paras = paragraphs_text([[8, 8, 8], [8, 8, 8], [8, 8, 8]])  # 24, 48, 72 words
    out = clean(text)
    assert out == " ".join(paras[0] + paras[1])
    assert len(out.split()) == 48


def test_shape_first_paragraph_enough():
    text, paras = paragraphs_text([[15, 15, 15], [10, 10]])  # 45 words: the second is not needed
    assert clean(text) == " ".join(paras[0])


def test_shape_caps_at_max_words_by_whole_sentences():
    text, paras = paragraphs_text([[9] * 20])  # 180 words in one paragraph
    out = clean(text)
    kept = (MAX_WORDS // 9)
    assert out == " ".join(paras[0][:kept])
    assert len(out.split()) == 9 * kept <= MAX_WORDS


def test_shape_stops_at_exactly_min_words():
    text, paras = paragraphs_text([[20, 20], [10, 10]])  # exactly MIN_WORDS in the first paragraph
    assert MIN_WORDS == 40
    assert clean(text) == " ".join(paras[0])


def test_shape_keeps_exactly_max_words():
    assert MAX_WORDS == 130
    text, paras = paragraphs_text([[10] * 13 + [5, 5]])  # 130 words, then more
    out = clean(text)
    assert out == " ".join(paras[0][:13])
    assert len(out.split()) == MAX_WORDS


def test_shape_keeps_an_overlong_first_sentence():
    text, paras = paragraphs_text([[MAX_WORDS + 20, 5]])
    assert clean(text) == paras[0][0]


@settings(deadline=None, max_examples=200)
@given(st.lists(st.lists(st.integers(1, 40), min_size=1, max_size=6), min_size=1, max_size=6))
def test_shape_rule(layout):
    text, paras = paragraphs_text(layout)
    assert clean(text) == expected_shape(paras)
    assert shape(text, MIN_WORDS, MAX_WORDS) == expected_shape(paras)


# ---------------------------------------------------------------------------------------------
# text.parse_prediction


@pytest.mark.parametrize(
    "raw, month, year, reasoning",
    [
        ("June 2030: Compute keeps growing.", "June", 2030, "Compute keeps growing."),
        ("December 2101 - Hardware limits slow things down.", "December", 2101,
         "Hardware limits slow things down."),
        ("(March 2045) Research labs are scaling quickly.", "March", 2045, "Research labs are scaling quickly."),
        ("  september 2040,  Progress is steady.\n", "September", 2040, "Progress is steady."),
        ("May 2033: Models improve. Data runs", "May", 2033, "Models improve."),
    ],
)
def test_parse(raw, month, year, reasoning):
    parsed = parse(raw)
    assert parsed is not None
    assert (parsed.month, parsed.year, parsed.reasoning) == (month, year, reasoning)
    assert parsed.when == f"{month} {year}"


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "Soon: when compute is cheap.",
        "2030: a year without a month.",
        "June: a month without a year.",
        "In the 2040s, probably.",
        "Probably June 2030: not at the start.",
        "June 30: a day, not a year.",
        "June 2030: an unfinished reason",
        "June 2030:",
    ],
)
def test_parse_prediction_rejects(raw):
    assert parse(raw) is None


def test_parse_prediction_rejects_five_digit_year():
    assert parse("June 20301: It will take a long time.") is None


def test_html_a_model_writes_is_taken_out_not_shown():
    """Gemma 3 270M writes emphasis as HTML ("<i>many</i>"), which the post showed escaped as
    `\\<i\\>many\\</i\\>`: the tags go and their words stay; a script goes whole; a `<` that opens no
    HTML element is text."""
    raw = ("It helps <i>many</i> teams ship <b>faster</b> models.<br>It cuts <span class=\"x\">costs</span> "
           "in half.<script>alert(1)</script> A score of <3 is low, and x<y and z>w holds.")
    assert clean_paragraph(raw, 1, 200, labels()) == ("It helps many teams ship faster models. It cuts costs in half. "
                                            "A score of <3 is low, and x<y and z>w holds.")
    assert written("<p>One <em>two</em>.</p><p>Three.</p>", labels()) == "One two. Three."
