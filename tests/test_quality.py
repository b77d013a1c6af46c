"""The writing checks of `digest eval`, each with good and bad examples written for the purpose."""

from datetime import date

import pytest

from digest.engine.base import Result
from digest.engine.fake import FakeEngine
from digest.pipeline import choose, generate
from digest.quality import (
    Judge,
    Score,
    Check,
    Section,
    best,
    check_clean,
    check_complete,
    check_distinct,
    check_faithful,
    check_length,
    check_no_loops,
    check_no_title_echo,
    check_on_the_point,
    check_on_topic,
    check_reasoning,
    instruction_phrases,
    score_paragraph,
    score_prediction,
)
from digest.config import Generation
from digest.sections import BENEFITS, GAIN, KINDS, RISK, labels
from digest.sections import RAMIFICATIONS as RAMIFICATIONS_KIND
from digest.text import clean_paragraph, written

# The configured word limits' defaults (their one home is the config).
LIMITS = (Generation().min_words, Generation().max_words)
WORDS = {"min_words": LIMITS[0], "max_words": LIMITS[1]}

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
    assert check_length(GOOD, *LIMITS).passed
    assert not check_length("Too short to be a paragraph.", *LIMITS).passed
    assert not check_length(" ".join(["word"] * 131) + ".", *LIMITS).passed
    assert check_length("one two three.", min_words=3, max_words=3).passed


def test_length_is_checked_before_the_cut_so_a_cut_shows():
    raw = " ".join([GOOD] * 3)  # about 170 words: the cleaning keeps the sentences that fit in 130
    shown = clean_paragraph(raw, *LIMITS, labels())
    assert len(shown.split()) <= 130 and check_length(shown, *LIMITS).passed  # the cut text alone looks fine
    result = check_length(shown, *LIMITS, wrote=written(raw, labels()))
    assert not result.passed and "cut to" in result.why
    assert check_length(GOOD, *LIMITS, wrote=written(GOOD, labels())).passed


def test_complete_fails_a_paragraph_that_stopped_mid_sentence():
    raw = GOOD + " Some teams may also find that the"  # the model ran out of tokens
    assert check_complete(clean_paragraph(raw, *LIMITS, labels())).passed  # the post drops the unfinished sentence...
    assert not check_complete(written(raw, labels())).passed  # ...but the check sees it
    score = score_paragraph(clean_paragraph(raw, *LIMITS, labels()), TITLE, point=GAIN, **WORDS, wrote=written(raw, labels()))
    assert [c.name for c in score.failures] == ["complete"]


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


# -- faithful -----------------------------------------------------------------------------------

CLIPS_TITLE = "Video world model learns robot pushing from only 200 video clips"
CLIPS_SOURCE = ("The authors pretrain a video prediction model on household footage and fine-tune it on 200 clips "
                "of a robot arm. The arm moves unseen objects in 61% of trials, against 23% for a policy trained "
                "from scratch. Failures cluster on transparent objects. The code is released by the Kestrel Institute.")


def test_faithful_passes_numbers_and_names_from_the_source():
    good = ("Robot makers could teach an arm a new skill from only 200 clips, and the jump from "
            "23% to 61% of trials suggests the household footage does most of the work. The Kestrel team "
            "releasing its code lets smaller AI labs with one GPU try it on their own robots.")
    assert check_faithful(good, CLIPS_TITLE + " " + CLIPS_SOURCE).passed  # AI, GPU: common terms


@pytest.mark.parametrize("text, why", [
    ("Only 20 videos have been able to achieve this so far.", "number the source does not give: 20"),
    ("The method will be in every home robot by 2030.", "number the source does not give: 2030"),
    ("It succeeds in 95% of trials.", "number the source does not give: 95"),
    ("The project is supported by the RABBIT community.", "name the source does not give: RABBIT"),
    ("The work was funded by the European Commission.", "name the source does not give: European"),
    ("Researchers at Stanford built the arm.", "name the source does not give: Stanford"),
    ("Twenty clips were enough for the arm.", "number the source does not give: twenty"),
])
def test_faithful_fails_invented_numbers_and_names(text, why):
    result = check_faithful(text, CLIPS_TITLE + " " + CLIPS_SOURCE)
    assert not result.passed and why in result.why


def test_faithful_accepts_close_forms_and_sentence_starts():
    source = "Kenya's agriculture ministry will use a model on 4,000 farms."
    assert check_faithful("Kenyan farmers gain. The ministry's 4000 farms are a start.", source).passed
    assert check_faithful("Farmers in Kenya will plan better. Officials can act on 4,000 farms.", source).passed


# -- no title echo --------------------------------------------------------------------------------

def test_no_title_echo_fails_a_paragraph_that_opens_with_the_title():
    echo = (f"The {CLIPS_TITLE.lower()} is a big step. It helps robot makers who lack data, since they can train "
            "arms on fewer clips.")
    result = check_no_title_echo(echo, CLIPS_TITLE)
    assert not result.passed and "opens with" in result.why
    partial = "Video world model learns robot pushing quickly, which helps robot makers."
    assert not check_no_title_echo(partial, CLIPS_TITLE).passed  # 6 of the title's 11 words in a row: half of it


def test_no_title_echo_fails_a_title_repeated_twice_and_passes_plain_mentions():
    twice = (f"Robot makers gain a lot. As the story says, {CLIPS_TITLE}. In short, {CLIPS_TITLE}.")
    result = check_no_title_echo(twice, CLIPS_TITLE)
    assert not result.passed and "2 times" in result.why
    good = ("Robot makers could teach an arm a new skill from a few hundred clips. A world model trained on "
            "household video does most of the work.")
    assert check_no_title_echo(good, CLIPS_TITLE).passed
    once = f"Robot makers gain. The headline says it well: {CLIPS_TITLE}."
    assert check_no_title_echo(once, CLIPS_TITLE).passed


# -- on the point ---------------------------------------------------------------------------------

RAMIFICATIONS = ("Sparse expert models could concentrate power in the few labs that can afford the routing research, "
                 "and the risk is that smaller groups lose access to the best models. Cheaper training may also "
                 "flood the web with generated text, and routing errors are hard to audit.")


def test_on_the_point_wants_gains_for_benefits_and_risks_for_ramifications():
    assert check_on_the_point(GOOD, GAIN).passed
    assert check_on_the_point(RAMIFICATIONS, RISK).passed
    # each given as the other fails
    swapped = check_on_the_point(GOOD, RISK)
    assert not swapped.passed and "risk" in swapped.why
    assert not check_on_the_point(RAMIFICATIONS, GAIN).passed


def test_on_the_point_fails_benefits_that_name_no_benefit_or_no_one():
    vague = ("Sparse mixture-of-experts models match dense quality. The models use experts and a router. "
             "The training compute is a third of the dense model's compute.")
    assert not check_on_the_point(vague, GAIN).passed
    nobody = "It is faster, cheaper and better, and it saves energy."
    result = check_on_the_point(nobody, GAIN)
    assert not result.passed and "no one" in result.why
    # "lower costs" is a gain, not a risk
    assert check_on_the_point("Labs get lower costs and cut their energy bills, which helps them.", GAIN).passed


# -- predictions ----------------------------------------------------------------------------------

def test_reasoning_is_one_finished_sentence_with_a_verb_that_gives_a_reason():
    subject = "artificial general intelligence"
    assert check_reasoning("Models keep getting better at planning, but they still need years of new research.",
                           subject).passed
    for text, why in [
        ("Artificial General Intelligence, AI.", "words"),
        ("Artificial general intelligence, artificial general intelligence, AGI, AI.", "no verb"),
        ("Artificial general intelligence will be artificial general intelligence soon.", "restates"),
        ("Models keep getting better at planning and they still need years of", "finished"),
    ]:
        result = check_reasoning(text, subject)
        assert not result.passed and why in result.why, (text, result)


def test_a_reason_with_a_decimal_or_an_abbreviation_is_one_sentence_as_the_post_shows_it():
    """The check splits sentences where the cleaner does (digest.sentences): "2.5" and "e.g." end none."""
    from digest.text import first_sentence

    subject = "artificial general intelligence"
    for reason in ("Training runs will need about 2.5 times more compute than today's largest ones.",
                   "Labs will need far more compute, e.g. larger clusters, to train bigger models."):
        assert first_sentence(reason) == reason
        assert check_reasoning(reason, subject).passed, reason


def test_predictions_need_a_future_date_and_a_reasoning_sentence():
    day = date(2026, 11, 23)
    good = score_prediction("March 2031: Compute keeps getting cheaper and models keep improving every year.", day, **WORDS)
    assert good.passed
    past = score_prediction("March 2026: Compute keeps getting cheaper and models keep improving every year.", day, **WORDS)
    assert [c.name for c in past.failures] == ["date"]
    thin = score_prediction("March 2031: Soon.", day, **WORDS)
    assert [c.name for c in thin.failures] == ["reasoning"]
    salad = score_prediction("March 2031: Artificial General Intelligence, AI.", day, **WORDS,
                             subject="artificial general intelligence")
    assert [c.name for c in salad.failures] == ["reasoning"]
    assert not score_prediction("Sometime soon, probably.", day, **WORDS).passed


# -- choosing among tries ------------------------------------------------------------------------

def judge():
    sections = [Section("benefits:T", BENEFITS, TITLE), Section("ramifications:T", RAMIFICATIONS_KIND, TITLE, pair="benefits:T")]
    return Judge(sections, date(2026, 11, 23), [TEMPLATE], **WORDS)


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
    # The Ramifications try copies the chosen Benefits: it is kept (the only usable try) but fails
    # "distinct", and, being a benefits paragraph, "on_the_point".
    assert [c.name for c in scores["ramifications:T"].failures] == ["on_the_point", "distinct"]


def test_best_is_the_one_choice_rule_most_checks_then_the_first():
    a, b = Score([Check("x", True), Check("y", False)]), Score([Check("x", True), Check("y", True)])
    assert best([a, b, b]) == 1 and best([a, a]) == 0 and best([b]) == 0


def test_choose_does_not_depend_on_the_order_results_arrived_in():
    bad = "Artificial intelligence changes the world. " * 3 + "It is a good thing for all of us to know."
    tries = [result("benefits:T", t) for t in (bad, GOOD + " ", GOOD)]
    requests = [type("R", (), {"key": "benefits:T"})()]
    j = Judge([Section("benefits:T", BENEFITS, TITLE)], date(2026, 11, 23), [TEMPLATE], **WORDS)
    chosen, _ = choose(j, requests, {"benefits:T": tries})
    assert chosen["benefits:T"] is tries[1]  # equal scores: the earlier try (its seed), every time


def test_the_prompt_examples_pass_every_check():
    """The examples the model imitates must themselves be what the checks want."""
    from digest.config import Config
    from digest.prompts import EXAMPLE_YEARS_LATER, Templates

    templates = Templates.load(Config().prompts_path)
    day = date(2026, 11, 23)
    examples = templates.examples()
    assert examples
    for ex in examples:
        if ex.kind == "predictions":
            score = score_prediction(ex.answer.replace("${later}", str(day.year + EXAMPLE_YEARS_LATER)), day, **WORDS, subject=ex.title)
        else:
            score = score_paragraph(clean_paragraph(ex.answer, *LIMITS, labels()), ex.title, source=ex.text, point=KINDS[ex.kind].point, **WORDS,
                                    wrote=written(ex.answer, labels()))
        assert score.passed, (ex.kind, score.failures)


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

    judge = Judge(sections_of(stories, templates.kinds), day, templates.texts.values(), **WORDS)
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

    j = Judge([Section("benefits:T", BENEFITS, TITLE)], date(2026, 11, 23), [], **WORDS)
    with FakeEngine(lambda request: "## Heading only") as engine, pytest.raises(GenerationError, match="3 tries"):
        generate(engine, [Request("benefits:T", (), seed=1, max_tokens=50)], j, candidates=1, retries=2)
    with FakeEngine(lambda request: "## Heading only") as engine:  # digest eval scores it instead of failing
        kept = generate(engine, [Request("benefits:T", (), seed=1, max_tokens=50)], j, retries=1, require_all=False)
    assert [c.name for c in kept.scores["benefits:T"].failures] == ["usable"] and kept.tries["benefits:T"] == 2


def test_the_topic_bias_leans_to_the_titles_longer_words_where_on_topic_is_checked():
    """`prevention.bias`: the point bias for every kind with a point, the topic bias toward the title's
    content words of four letters or more for a kind checked on topic; a prediction gets neither."""
    from digest.prevention import bias as bias_of
    from digest.sections import PREDICTION

    bias = bias_of(BENEFITS, TITLE, 2.0, 1.5)
    assert bias.amount == 2.0 and bias.topic_amount == 1.5 and bias.toward
    assert {"sparse", "dense", "quality", "third", "train", "compute"} <= set(bias.topic)
    assert all(len(w) >= 4 for w in bias.topic) and "7b" not in bias.topic
    assert bias_of(BENEFITS, TITLE, 2.0, 0.0).topic == ()
    assert bias_of(BENEFITS, TITLE, 0.0, 0.0) is None
    assert bias_of(PREDICTION, "Technological singularity", 2.0, 1.5) is None


def test_a_paragraph_that_holds_to_min_words_may_end_only_after_a_finished_sentence_and_min_words():
    """`SentenceRule.may_end` (what the engines ask before they let the model end a paragraph)."""
    from digest.prevention import SentenceRule

    rule = SentenceRule(min_words=6, hold=True)
    assert not rule.may_end([]) and not rule.may_end(["One two three."])
    assert rule.may_end(["One two three.", "Four five six."]) and rule.may_end(["One two three four five six.", ""])
    assert not rule.may_end(["One two three.", "Four five six seven"])  # long enough, but mid-sentence
    assert rule.may_end(['One two three.', 'Four five "six."  '])
    assert SentenceRule(min_words=6).may_end(["One"])  # without the hold: anywhere
    assert SentenceRule(min_words=0, hold=True).may_end([])


def test_a_bias_adds_its_amounts_to_the_tokens_that_begin_its_words():
    """`Bias.deltas` over a small vocabulary: toward words up, away words down, topic words up by
    their own amount (added to the point's), only where the topic lean is asked; a piece must be a
    space and letters."""
    from digest.prevention import Bias

    pieces = [b" gain", b" risk", b" spar", b" sparse", b" benefit", b"gain", b" x", b" gains", b" 7B"]
    bias = Bias(toward=("gain", "benefit"), away=("risk",), amount=2.0, topic=("sparse", "benefit"), topic_amount=1.5)
    tokens, amounts = bias.deltas(pieces, topic=True)
    assert dict(zip(tokens.tolist(), amounts.tolist())) == {0: 2.0, 1: -2.0, 2: 1.5, 3: 1.5, 4: 3.5, 7: 2.0}
    tokens, amounts = bias.deltas(pieces, topic=False)
    assert dict(zip(tokens.tolist(), amounts.tolist())) == {0: 2.0, 1: -2.0, 4: 2.0, 7: 2.0}
    assert not Bias(topic=("sparse",)) and Bias(topic=("sparse",), topic_amount=1.0)

