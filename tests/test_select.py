"""digest.select: cleaning titles, spotting the same story told twice, picking topics and headlines."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import TOPIC_TITLES, TRENDING_TITLES
from digest import select
from digest.feeds import Entry, read_feed_file
from digest.resources import samples_dir
from digest.select import MAX_TITLE_CHARS, Story, clean_title, near_duplicate, pick

ATOM = "{http://www.w3.org/2005/Atom}"
TAG_AT_START = re.compile(r"^\s*\[[A-Za-z]+\]")
ANY_TAG = re.compile(r"\[[A-Z]\]|\[[A-Za-z]{2,12}\]\s*$|^\s*\[[A-Za-z]{1,12}\]")


# ---------------------------------------------------------------------------------------------
# clean_title


BODY = "Sparse experts match dense models"


@pytest.mark.parametrize("tag", ["[R]", "[D]", "[P]", "[N]", "[Research]", "[D][R]", "[R] [P]", "[Discussion]"])
def test_clean_title_drops_leading_tags(tag):
    assert clean_title(f"{tag} {BODY}") == BODY


@pytest.mark.parametrize("tag", ["[R]", "[D]", "[Project]"])
def test_clean_title_drops_trailing_tag(tag):
    assert clean_title(f"{BODY} {tag}") == BODY


def test_clean_title_drops_tags_at_both_ends():
    assert clean_title(f"[D] {BODY} [R]") == BODY


def test_clean_title_drops_separator_after_tag():
    assert clean_title(f"[N]: {BODY}") == BODY
    assert clean_title(f"[R] - {BODY}") == BODY


def test_clean_title_does_not_decode_entities_a_second_time():
    # Titles arrive as plain text (feeds.parse_feed decoded the feed's entities once): a title
    # that talks about "&amp;" keeps it.
    assert clean_title("[R] Q&amp;A about &#39;Attention&#39;") == "Q&amp;A about &#39;Attention&#39;"
    assert clean_title("[R] 3 < 4 > 2") == "3 < 4 > 2"


def test_clean_title_shortens_a_very_long_title_at_a_word_boundary():
    words = [f"word{n}" for n in range(100)]
    title = clean_title("[R] " + " ".join(words))
    assert len(title) <= MAX_TITLE_CHARS and title.endswith("…")
    assert title[:-1].split() == words[: len(title[:-1].split())]  # whole words only
    assert len(title) > MAX_TITLE_CHARS - 12  # as many words as fit
    assert clean_title("x" * 500) == "x" * (MAX_TITLE_CHARS - 1) + "…"  # no boundary: cut mid-word
    exact = "a" * MAX_TITLE_CHARS
    assert clean_title(exact) == exact


def test_clean_title_collapses_whitespace_and_newlines():
    assert clean_title("  [R]   Sparse\n  experts\t\tmatch \r\n dense   models  ") == BODY


@pytest.mark.parametrize(
    "title",
    [
        "Why [R] tags in the middle stay",
        "Comparing LLaMA [7B] and Mistral on math",
        "Results on ImageNet [top-1] improve",
    ],
)
def test_clean_title_keeps_brackets_in_the_middle(title):
    assert clean_title(title) == title
    assert clean_title(f"[D] {title}") == title


def test_clean_title_of_only_tags_is_empty():
    assert clean_title("[D]") == ""
    assert clean_title("  [R] [P]  ") == ""


@pytest.mark.parametrize(
    "title",
    ["(Un)supervised pretraining is back in fashion", "Sparse experts explained by the team (OpenAI)"],
)
def test_clean_title_keeps_parenthesised_words(title):
    assert clean_title(title) == title


WORDS = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFG0123456789"),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFG0123456789 \n\t-:", max_size=60),
)


@settings(deadline=None)
@given(WORDS, st.sampled_from(["R", "D", "P", "N", "Research", "Discussion"]))
def test_clean_title_tag_prefix_changes_nothing_else(body, tag):
    assert clean_title(f"[{tag}] {body}") == clean_title(body)


@settings(deadline=None)
@given(st.text(alphabet="abcXYZ019 []()\n\t:-&;#", max_size=60))
def test_clean_title_is_one_stripped_line_and_stable(raw):
    title = clean_title(raw.replace("&", ""))  # no entities: unescaping twice is not idempotent
    assert "\n" not in title and "\t" not in title
    assert title == title.strip()
    assert "  " not in title
    assert clean_title(title) == title


# ---------------------------------------------------------------------------------------------
# near_duplicate


@pytest.mark.parametrize(
    "a, b",
    [
        (
            "Sparse mixture-of-experts models match dense 7B quality with a third of the training compute",
            "Sparse MoE matches dense 7B model quality using one third of the training compute (paper + code)",
        ),
        ("OpenAI releases GPT-5 with longer context", "GPT-5 released by OpenAI with a longer context"),
        ("Same title twice", "same   TITLE twice"),
    ],
)
def test_near_duplicate_same_story(a, b):
    assert near_duplicate(a, b)
    assert near_duplicate(b, a)


def test_near_duplicate_same_story_short_titles():
    a = "Google DeepMind: 2.2 million new materials discovered using GNN"
    b = "Millions of new materials discovered with deep learning"
    assert near_duplicate(a, b)


@pytest.mark.parametrize(
    "a, b",
    [
        ("New method for training LLMs", "New benchmark for training LLMs"),
        ("How do you version datasets and models together in a small research lab?",
         "Are benchmark leaderboards still useful when top entries may have seen the test sets?"),
        ("A new model for protein folding", "A new model for weather forecasting"),
    ],
)
def test_near_duplicate_distinct_stories(a, b):
    assert not near_duplicate(a, b)
    assert not near_duplicate(b, a)


def test_conftest_titles_are_pairwise_distinct_stories():
    titles = TOPIC_TITLES + TRENDING_TITLES
    for i, a in enumerate(titles):
        for b in titles[i + 1:]:
            assert not near_duplicate(a, b), (a, b)


@settings(deadline=None)
@given(st.text(max_size=80), st.text(max_size=80))
def test_near_duplicate_is_reflexive_and_symmetric(a, b):
    assert near_duplicate(a, a)
    assert near_duplicate(a, b) == near_duplicate(b, a)


# ---------------------------------------------------------------------------------------------
# pick


def entries(*titles: str) -> list[Entry]:
    return [Entry(title=t, link=f"https://x.example/{n}", id=f"id{n}", summary=f"Summary {n}.")
            for n, t in enumerate(titles)]


def test_pick_keeps_feed_order_and_cleans_titles():
    chosen = pick(entries(*(f"[R] {t}" for t in TOPIC_TITLES)), 5)
    assert [s.title for s in chosen] == TOPIC_TITLES[:5]


def test_pick_carries_link_id_and_excerpt():
    items = [Entry(title="[P] " + TOPIC_TITLES[0], link="https://a.example/p", id="t3_x", summary="Short text.")]
    (story,) = pick(items, 3)
    assert story == Story(title=TOPIC_TITLES[0], link="https://a.example/p", id="t3_x", excerpt="Short text.")


def test_pick_excerpt_is_bounded():
    words = [f"w{n}" for n in range(select.EXCERPT_WORDS * 2)]
    (story,) = pick([Entry(title="A long one", summary="\n".join(words))], 1)
    kept = story.excerpt.split()
    assert kept[: select.EXCERPT_WORDS] == words[: select.EXCERPT_WORDS]
    assert len([w for w in kept if w.startswith("w")]) == select.EXCERPT_WORDS
    assert story.excerpt.endswith("…")


def test_pick_skips_untitled_and_whitespace_only_entries():
    items = entries("", TOPIC_TITLES[0], "   ", "\n\t", "[D]", TOPIC_TITLES[1], "[R] [P]", TOPIC_TITLES[2])
    assert [s.title for s in pick(items, 10)] == TOPIC_TITLES[:3]


def test_pick_skips_near_duplicates_of_earlier_picks():
    first = "Sparse mixture-of-experts models match dense 7B quality with a third of the training compute"
    retold = "[R] Sparse MoE matches dense 7B model quality using one third of the training compute"
    items = entries(f"[R] {first}", TOPIC_TITLES[1], retold, TOPIC_TITLES[2], f"[D] {first}")
    assert [s.title for s in pick(items, 10)] == [first, TOPIC_TITLES[1], TOPIC_TITLES[2]]


@pytest.mark.parametrize("count", [0, 1, 3, 8, 20])
def test_pick_honours_count(count):
    chosen = pick(entries(*TOPIC_TITLES), count)
    assert [s.title for s in chosen] == TOPIC_TITLES[: min(count, len(TOPIC_TITLES))]


def test_pick_count_counts_kept_stories_not_feed_items():
    # Skipped items do not use up the count.
    items = entries("", TOPIC_TITLES[0], TOPIC_TITLES[0], "[D]", TOPIC_TITLES[1], TOPIC_TITLES[2])
    assert [s.title for s in pick(items, 3)] == TOPIC_TITLES[:3]


def test_pick_avoid_skips_headline_already_a_topic():
    topics = [Story(title=t) for t in TOPIC_TITLES[:3]]
    trending = entries(
        "Researchers show sparse experts halve pretraining compute",  # TOPIC_TITLES[0] again
        *TRENDING_TITLES,
    )
    assert near_duplicate(trending[0].title, TOPIC_TITLES[0])
    chosen = pick(trending, 3, avoid=topics)
    assert [s.title for s in chosen] == TRENDING_TITLES[:3]
    # Without avoid, the duplicate headline is first.
    assert pick(trending, 1)[0].title == trending[0].title


@settings(deadline=None)
@given(st.lists(st.sampled_from(TOPIC_TITLES + ["", "  ", "[D]"]), max_size=15), st.integers(0, 10))
def test_pick_properties(titles, count):
    chosen = [s.title for s in pick(entries(*titles), count)]
    expected = []
    for t in titles:
        t = clean_title(t)
        if t and t not in expected:
            expected.append(t)
    assert chosen == expected[:count]


# ---------------------------------------------------------------------------------------------
# The bundled samples


def raw_titles(name: str) -> list[str]:
    """Entry titles of a sample feed, read with ElementTree (not with the code under test)."""
    root = ET.parse(samples_dir() / f"{name}.xml").getroot()
    return [e.findtext(f"{ATOM}title") for e in root.findall(f"{ATOM}entry")]


def test_sample_topics_pick_six_untagged_distinct_topics():
    raw = raw_titles("topics")
    chosen = pick(read_feed_file(samples_dir(), "topics").entries, 6)
    assert len(chosen) == 6
    for story in chosen:
        assert not ANY_TAG.search(story.title), story.title
        assert story.title == story.title.strip()
    for i, a in enumerate(chosen):
        for b in chosen[i + 1:]:
            assert not near_duplicate(a.title, b.title)
    # Each pick is a feed title with only its leading tag removed, in feed order; the fourth
    # entry ("Sparse MoE ...") retells the first and is skipped.
    untagged = [re.sub(r"^\[[A-Za-z]+\]\s*", "", t) for t in raw]
    assert "Sparse MoE" in untagged[3] and "Sparse mixture-of-experts" in untagged[0]
    assert [s.title for s in chosen] == [untagged[i] for i in (0, 1, 2, 4, 5, 6)]


def test_sample_trending_skips_headline_duplicating_first_topic():
    topics = pick(read_feed_file(samples_dir(), "topics").entries, 6)
    raw = raw_titles("trending")
    assert near_duplicate(raw[0], topics[0].title)
    trending = pick(read_feed_file(samples_dir(), "trending").entries, 3, avoid=topics)
    assert [s.title for s in trending] == raw[1:4]
    for story in trending:
        assert not any(near_duplicate(story.title, t.title) for t in topics)
