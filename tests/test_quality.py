"""The writing checks of `digest eval`, each with good and bad examples written for the purpose."""

from datetime import date

import pytest

from digest.engine.base import Result
from digest.engine.fake import FakeEngine
from digest.pipeline import choose, generate
from digest.quality import (
    Judge,
    Section,
    check_clean,
    check_complete,
    check_distinct,
    check_length,
    check_no_loops,
    check_on_topic,
    instruction_phrases,
    score_prediction,
)

TITLE = "Sparse mixture-of-experts models match dense 7B quality with a third of the training compute"
GOOD = (
    "Sparse expert models could let smaller labs train strong language models on a modest budget. "
    "Matching dense quality with a third of the compute means lower bills and a smaller carbon footprint. "
    "Researchers who release their checkpoints also give others a way to check the claims and build on "
    "the routing method. Companies that serve many users may cut their training costs without giving up accuracy."
)
TEMPLATE = ("Today's machine learning story: \"${title}\"\n${context}\nWrite one paragraph of three or four "
            "sentences about the benefits this could bring to people, companies or researchers.")


def test_length_counts_words_against_the_range():
    assert check_length(GOOD).passed
    assert not check_length("Too short to be a paragraph.").passed
    assert not check_length(" ".join(["word"] * 131) + ".").passed
    assert check_length("one two three.", min_words=3, max_words=3).passed


def test_on_topic_wants_the_titles_words_or_close_forms():
    assert check_on_topic(GOOD, TITLE).passed  # sparse, expert(s), models, dense, quality, compute
    off = ("Artificial intelligence is changing the world in many ways. It helps people in their daily lives "
           "and it will keep growing in the future, bringing new opportunities to everyone.")
    result = check_on_topic(off, TITLE)
    assert not result.passed and "title's words" in result.why
    # close forms: "regulators" and "regulation" share their first letters
    assert check_on_topic("Regulators will read the draft closely.", "EU regulation draft").passed


def test_no_loops_catches_a_repeated_sentence_and_repeated_phrases():
    assert check_no_loops(GOOD).passed
    assert not check_no_loops("This is great. It helps people. This is great.").passed
    looping = "The model is fast and the model is cheap and the model is fast and the model is cheap and the model is good."
    assert not check_no_loops(looping).passed


def test_complete_wants_a_finished_last_sentence_and_no_dangling_markers():
    assert check_complete(GOOD).passed
    assert check_complete('He said it would "change everything."').passed
    assert not check_complete("This could help researchers because the").passed
    assert not check_complete("It helps.\n- and also").passed
    assert not check_complete("").passed


@pytest.mark.parametrize("text, why", [
    ("As an AI language model, I think this is useful.", "disclaimer"),
    ("Assistant: the benefits are clear.", "role word"),
    ("Benefits: cheaper training for all.", "label"),
    ("## Benefits\nCheaper training.", "Markdown"),
    ("It is **very** useful.", "Markdown"),
    ("Read more at [the paper](http://x.y).", "Markdown"),
    ("See https://example.com/moe for the code.", "URL"),
    ("This paragraph is about the benefits this could bring to people in the field.", "echoes the prompt"),
])
def test_clean_rejects_echoes_roles_markdown_and_invented_urls(text, why):
    result = check_clean(text, instruction_phrases([TEMPLATE]))
    assert not result.passed and why in result.why


def test_clean_accepts_plain_prose_dashes_and_urls_from_the_source():
    instructions = instruction_phrases([TEMPLATE])
    assert check_clean(GOOD, instructions).passed
    assert check_clean("The result - a third of the compute - matters to everyone.", instructions).passed
    assert check_clean("The code is at https://github.com/x/moe.", instructions, source="see https://github.com/x/moe").passed


def test_distinct_flags_near_copies():
    other = ("Sparse expert models could concentrate power in labs that can afford the routing research. "
             "Cheaper training may also flood the web with more generated text of uneven quality.")
    assert check_distinct(GOOD, other).passed
    assert not check_distinct(GOOD, GOOD.replace("modest", "small")).passed


def test_predictions_need_a_future_date_and_a_reasoning_sentence():
    day = date(2026, 11, 23)
    good = score_prediction("March 2031: Compute keeps getting cheaper and models keep improving every year.", day)
    assert good.passed
    past = score_prediction("March 2026: Compute keeps getting cheaper and models keep improving every year.", day)
    assert [c.name for c in past.failures] == ["date"]
    thin = score_prediction("March 2031: Soon.", day)
    assert [c.name for c in thin.failures] == ["reasoning"]
    assert not score_prediction("Sometime soon, probably.", day).passed


# -- choosing among tries ------------------------------------------------------------------------

def judge():
    sections = [Section("benefits:T", "benefits", TITLE), Section("ramifications:T", "ramifications", TITLE, pair="benefits:T")]
    return Judge(sections, date(2026, 11, 23), [TEMPLATE])


def result(key, text):
    return Result(key, text, 10, 10, "stop", 0.0)


def test_choose_keeps_the_try_that_passes_most_checks_and_the_first_among_equals():
    bad = "Artificial intelligence changes the world. " * 3 + "It is a good thing for all of us to know."
    tries = {"benefits:T": [result("benefits:T", bad), result("benefits:T", GOOD), result("benefits:T", GOOD + " ")],
             "ramifications:T": [result("ramifications:T", GOOD)]}
    requests = [type("R", (), {"key": k})() for k in tries]
    chosen, scores = choose(judge(), requests, tries)
    assert chosen["benefits:T"] is tries["benefits:T"][1]
    assert scores["benefits:T"].passed
    # The Ramifications try copies the chosen Benefits: it is kept (the only usable try) but fails "distinct".
    assert [c.name for c in scores["ramifications:T"].failures] == ["distinct"]


def test_generate_retries_failing_sections_with_derived_seeds_and_keeps_the_best():
    from digest.config import Config
    from digest.engine.base import Sampling, derive_seed
    from digest.pipeline import sections_of
    from digest.prompts import Templates, build_requests
    from digest.select import Story

    day = date(2026, 11, 23)
    templates = Templates.load(Config().prompts_path)
    stories = [Story(TITLE, excerpt="The authors train sparse models.")]
    requests = build_requests(stories, day, templates, run_seed=1, max_tokens=200, sampling=Sampling())
    benefits = requests[0]
    good_seed = derive_seed(benefits.seed, "try2")
    off_topic = ("Artificial intelligence is changing the world in many ways. It helps people in their daily "
                 "lives and it will keep growing in the future, bringing new chances to everyone who works hard.")
    seen = []

    def respond(request):
        seen.append((request.key, request.seed))
        if request.key.startswith("prediction"):
            return "March 2031: Compute keeps getting cheaper and models keep improving every single year."
        if request.key.startswith("ramifications"):
            return ("Cheaper sparse training may concentrate power in labs that master expert routing. "
                    "Dense model quality at a third of the compute could also flood the web with generated "
                    "text, and mistakes in routing may be hard to audit for the people who rely on it.")
        return GOOD if request.seed == good_seed else off_topic

    judge = Judge(sections_of(stories), day, templates.texts.values())
    with FakeEngine(respond) as engine:
        chosen = generate(engine, requests, judge, candidates=1, retries=2)
    assert chosen.tries == {r.key: (3 if r is benefits else 1) for r in requests}
    assert chosen.generation.by_key()[benefits.key].text == GOOD
    assert chosen.passed == len(requests)
    assert [s for k, s in seen if k.startswith("benefits")] == [benefits.seed, derive_seed(benefits.seed, "try1"), good_seed]

    with FakeEngine(respond) as engine:  # with no retries, the off-topic try is kept: usable, not good
        kept = generate(engine, requests, judge, candidates=1, retries=0)
    assert not kept.scores[benefits.key].passed and kept.generation.by_key()[benefits.key].text == off_topic


def test_generate_fails_clearly_when_no_try_is_usable():
    from digest.engine.base import Request
    from digest.errors import GenerationError

    j = Judge([Section("benefits:T", "benefits", TITLE)], date(2026, 11, 23), [])
    with FakeEngine(lambda request: "## Heading only") as engine, pytest.raises(GenerationError, match="3 tries"):
        generate(engine, [Request("benefits:T", (), seed=1, max_tokens=50)], j, candidates=1, retries=2)
    with FakeEngine(lambda request: "## Heading only") as engine:  # digest eval scores it instead of failing
        kept = generate(engine, [Request("benefits:T", (), seed=1, max_tokens=50)], j, retries=1, require_all=False)
    assert [c.name for c in kept.scores["benefits:T"].failures] == ["usable"] and kept.tries["benefits:T"] == 2
