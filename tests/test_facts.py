"""The fact guard (digest.facts), piece by piece: what it lets the model write is what the faithful
check then passes, it never leaves a text with nothing to write next, and bad input (no numbers,
capitals only, accents, other scripts, no entry text) is handled alike."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digest.facts import Guard, GuardState, PieceTable, guard_gbnf, known, names, numbers_of, unfaithful
from digest.quality import check_faithful

SOURCE = ("Researchers at Stanford trained a 7B model on 40,000 GPUs in Kenya; it scores 9.5% higher "
          "on MMLU than GPT-4 and costs $1,200 a day.")


def allowed(state: GuardState, pieces: list[bytes]) -> np.ndarray:
    """`state.mask` over a vocabulary of just `pieces`."""
    return state.mask(np.arange(len(pieces)), PieceTable(pieces))


def writes(guard: Guard, *pieces: str) -> bool:
    """Whether the guard lets the pieces be written one after another."""
    state = GuardState(guard)
    for piece in pieces:
        if not allowed(state, [piece.encode()])[0]:
            return False
        state.take(piece.encode())
    return True


def test_numbers_must_be_whole_numbers_the_source_gives():
    g = Guard.of(SOURCE)
    assert writes(g, "It used", " 40", ",", "000", " GPUs")
    assert writes(g, "It is", " 9", ".", "5", "% better")
    assert writes(g, "It costs $", "1", ",", "200", ".")
    assert not writes(g, "It used", " 1", " GPU")  # "1" then a space is not "100" nor "1,200"
    assert not writes(g, "It used", " 12", " GPUs")
    assert not writes(g, "It is", " 9", ". The")  # 9 alone is not 9.5
    assert not writes(g, "It took", " 2024")


def test_names_after_a_sentences_first_word_must_come_from_the_source():
    g = Guard.of(SOURCE)
    assert writes(g, "Teams at", " Stan", "ford", " agree.")
    assert writes(g, "Farmers in", " Kenyan", " villages")  # a close form of Kenya
    assert writes(g, "It beats", " GPT", "-", "4", " on", " MMLU")
    assert not writes(g, "Teams at", " Oxford")
    assert not writes(g, "Teams at", " Ox")  # no word of the source starts so
    assert not writes(g, "The", " University", " of", " California")
    assert writes(g, "Today", " many", " labs", " use", " AI")  # a common term of the field


def test_a_sentences_first_word_is_free_unless_it_is_an_acronym():
    g = Guard.of(SOURCE)
    assert writes(g, "However", ", it", " works. ", "Nobody", " knows.")
    assert not writes(g, 'He said "', "Hello", '"')  # a quote or bracket opens no sentence
    assert not writes(g, "They (", "Lumina", ") help.")
    assert not writes(g, "Neural", "inkets", " are", " here. ", "PECE", " is")
    assert not writes(g, "G", "PU", "X")


def test_what_the_guard_lets_through_passes_the_faithful_check():
    g = Guard.of(SOURCE)
    text = "Researchers at Stanford could use 40,000 GPUs, and labs in Kenya gain 9.5% on MMLU."
    pieces = [text[i:i + 3] for i in range(0, len(text), 3)]
    assert writes(g, *pieces)
    assert check_faithful(text, SOURCE).passed


def test_any_cased_letter_is_a_capital_and_caseless_scripts_pass():
    g = Guard.of("Une équipe de l'École polytechnique à Zürich")
    assert writes(g, "Students at", " École", " gain.")
    assert writes(g, "Teams in", " Zürich", " gain.")
    assert not writes(g, "Teams in", " Ölbronn")
    assert not writes(g, "Teams in", " Ωmega")
    assert writes(Guard.of("模型"), "研究人员", "在北京", "训练了模型。")
    assert unfaithful("Teams at Ölbronn gain.", "Teams at Zürich") is not None


def test_a_story_without_numbers_text_or_lower_case():
    assert not writes(Guard.of("A model that reads charts"), "It reads", " 3", " charts")
    shouting = Guard.of("NEW OPEN MODEL BEATS GPT ON CHARTS")
    assert writes(shouting, "The", " GPT", " rival", " is", " open.")
    assert not writes(shouting, "The", " Llama", " rival")
    title_only = Guard.of("Speech model for Welsh radio")
    assert writes(title_only, "Archivists", " with", " Welsh", " tapes")


def test_a_prediction_guards_names_only():
    g = Guard.of("fully self-driving cars", guard_numbers=False)
    assert writes(g, "June 2031: ", "Self", "-driving", " cars", " need", " 10", " years.")
    assert not writes(g, "June 2031: ", "Cars", " from", " Neural", "inkets")


def test_known_takes_close_forms_only():
    assert known("kenyan", {"kenya"}) and known("kenya", {"kenyan"})
    assert not known("ken", {"kenya"}) and not known("kenyattas", {"kenya"})


LETTERS = st.text(alphabet="kenyats", min_size=1, max_size=9)


@given(LETTERS, st.sets(LETTERS, max_size=6))
def test_known_is_the_close_form_rule_by_set_lookups(word, words):
    """`known` by its definition, a pass over every word, against the lookups the guard runs per token."""
    by_definition = word in words or any(
        len(v) >= 4 and (word.startswith(v) and len(word) - len(v) <= 3 or
                         v.startswith(word) and len(word) >= 4 and len(v) - len(word) <= 3) for v in words)
    assert known(word, words) == by_definition


PIECES = st.sampled_from(["a", "e", "t", "S", "K", "O", "G", "P", "T", "4", "0", "9", "1", ",", ".", " ", ". ",
                          " Stan", "ford", " Kenya", "n", " GPUs", " 40", "000", " 9", ".5", "-", '"', "(", ":",
                          " chin", " china", " two", " Tues", "day", " university", " of", " hong", " kong",
                          " seconds", " model", "½", "-AI", " Ai", "%", " %", " percent", " thousands", "s", " ten", "fold", "years", "'s", "worth", "-year", " thousands", "lines"])
ONE_CHARACTER = ["a", "e", "n", "r", "s", "t", "o", "d", "f", "y", "u", "i", "l", "h", "m", "c", "g", "p", "k",
                 "0", "1", "2", "4", "5", "9", " ", ".", ",",
                 "A", "I", "L", "M", "P", "U"]  # capitals too, as a model's vocabulary has: "T" goes on as "TPU"


@settings(max_examples=150, deadline=None)
@given(st.lists(PIECES, max_size=40))
def test_every_text_the_guard_allows_keeps_to_its_source_and_can_go_on(pieces):
    """Write whatever random pieces the guard allows: at every step some one-character piece is
    allowed (a model's vocabulary has them, so a sequence is never left with no token), and every
    finished name and number of the text is one the source gives."""
    g = Guard.of(SOURCE)
    state = GuardState(g)
    for piece in pieces:
        data = piece.encode()
        if allowed(state, [data])[0]:
            state.take(data)
        singles = [c.encode() for c in ONE_CHARACTER]
        assert allowed(state, singles).any(), state.text
    text = state.text.rsplit(" ", 1)[0] if " " in state.text else ""  # its last word may be unfinished
    have = numbers_of(SOURCE)
    for number in numbers_of(text.rstrip(".,")):
        assert number in have, (text, number)
    for name in names(text):
        assert g.name_ok(name, partial=False), (text, name)
    assert unfaithful(text.rstrip(".,"), SOURCE) is None, text


SHARED = Guard.of(SOURCE)  # one guard for every example below: its remembered answers pile up
CANDIDATES = [p.encode() for p in ["S", "K", "O", "4", "9", "1", " Stan", " Kenya", " GPUs", " 40", "000", ".5",
                                   " Oxford", " Teams", " The", "ford", "n", "'s", ".", " ", ". ", '"', ")",
                                   " the", "keley", "ORD", "an", "yan", "LU", "PT", " 9", " (", " - The", "  It",
                                   " it. The", "é", "\u00c9cole", " \u00c9cole", "-4", "\n", "_", "s", "st", "s4", "'",
                                   "a", " china", " two", " kong", " seconds", " model", "½", "-AI", " Ai", "a.", "a ", "%", " %", "5%", " percent",
                                   " thousands", " hundred", " ten", "fold", "years", "worth", "-year", "-video", "lines", " thousand",
                                   "y of", "g kong", "nese", "'s"]] + [
    b"\xc3", b"\x89", b"\xa9cole", b"\x89cole"]  # pieces that end or begin inside a character


TABLE = PieceTable(CANDIDATES)


@settings(max_examples=80, deadline=None)  # each example asks the rule afresh for every candidate: ~0.1 s
@given(st.lists(PIECES.map(str.encode) | st.sampled_from([
    p.encode() for p in ['."', '.") ', " (", ": ", ' "', "!", "? ", "’s", " -", " Stan", "ford", " G", "PT", "-", "4",
                         " MM", "LU", " Ken", "ya", "n", "É", "é", "'s", "'", "_", "s", " chin", " hong", " university",
                         " of", " Tues", "day", " 7", " 40", " universit", " chi", "n"]] + [b" \xc3", b"\x89", b"\xa9"]),
                max_size=50))
def test_the_guards_shortcuts_and_remembered_answers_are_the_answers(pieces):
    """`GuardState.mask` skips, splits and remembers (see its docstring); after any text the guard
    allowed, its answers are the rule's own (`Guard.allows` asked afresh). The text takes each piece
    the rule allows."""
    state = GuardState(SHARED)
    for piece in pieces:
        got = state.mask(np.arange(len(CANDIDATES)), TABLE)
        fresh = [Guard.of(SOURCE).allows(state.text, (state.tail + c).decode("utf-8", errors="ignore"))
                 for c in CANDIDATES]
        assert list(got) == fresh, state.text
        if Guard.of(SOURCE).allows(state.text, (state.tail + piece).decode("utf-8", errors="ignore")):
            state.take(piece)


def test_a_remembered_answer_tells_a_sentences_end_from_a_bracket():
    """The same last word, with a sentence's end or a bracket before the next one: a capitalised word
    is free after the first and a name after the second, whichever was asked first."""
    guard = Guard.of(SOURCE)
    for first, second in (("It rose)", "It rose!"), ("It rose!", "It rose)")):
        for text in (first, second):
            state = GuardState(guard)
            state.take(text.encode())
            assert allowed(state, [b" Teams"])[0] == guard.allows(text, " Teams"), text
    assert guard.allows("It rose!", " Teams") and not guard.allows("It rose)", " Teams")
    # the same after a run of closing brackets longer than the key's usual reach, asked of a piece
    # that begins with one more (not with a space, whose answers are remembered by the piece alone)
    for first, second in (("Wow!" + ")" * 10, "Wow," + ")" * 10), ("Wow," + ")" * 10, "Wow!" + ")" * 10)):
        guard = Guard.of(SOURCE)
        for text in (first, second):
            state = GuardState(guard)
            state.take(text.encode())
            assert allowed(state, [b") Teams"])[0] == guard.allows(text, ") Teams"), text
    assert Guard.of(SOURCE).allows("Wow!)))", ") Teams") and not Guard.of(SOURCE).allows("Wow,)))", ") Teams")


@pytest.mark.model
def test_the_guard_as_a_grammar_lets_through_what_the_guard_does():
    """What llama.cpp's servers are sent (facts.guard_gbnf), run by llama.cpp's own grammar sampler
    over the embedded model's tokens."""
    import numpy as np

    from digest.config import Config
    from digest.engine.native import Grammar, Model

    model = Model(Config().model_path)
    guard = Guard.of(SOURCE)

    def takes(text: str) -> bool:
        grammar = Grammar(model, guard_gbnf(guard))
        try:
            for token in model.tokenize(text):
                if not grammar.allowed(np.array([token]))[0]:
                    return False
                grammar.accept(token)
            return True
        finally:
            grammar.close()

    try:
        assert takes("Researchers at Stanford used 40,000 GPUs. Kenyan farms gain 9.5% on MMLU")
        assert takes('The 7B model is in Kenya\'s labs: Great. "Kenya" it said (Stanford).')
        assert not takes('Great. "Hello" it said')  # a quote opens no sentence
        assert not takes("It helps (Lumina) teams")
        assert not takes("Teams at Oxford")
        assert not takes("It used 1 GPU")
        assert not takes("Since 2024 it")
    finally:
        model.close()


def test_a_llama_cpp_server_is_sent_the_guard_as_its_grammar():
    from digest.engine.base import Message, Request
    from digest.engine.openai import chat_body

    request = Request("k", (Message("user", "hi"),), seed=1, guard=Guard.of(SOURCE))
    assert chat_body(request, "llama")["grammar"] == guard_gbnf(request.guard)
    assert "grammar" not in chat_body(request, "none") and "structured_outputs" not in chat_body(request, "vllm")
    dated = Request("p", (Message("user", "hi"),), seed=1, guard=Guard.of(SOURCE), grammar='root ::= "x"')
    assert chat_body(dated, "llama")["grammar"] == 'root ::= "x"'  # its own grammar first


def test_a_name_longer_than_the_look_back_is_still_open_when_the_cut_falls_on_its_apostrophe():
    """`GuardState.open` looks at the text's last 64 characters, and at a longer word whole: also when
    the cut leaves the word's apostrophe as the first character it sees."""
    source = "Xa'" + "b" * 70
    state = GuardState(Guard.of(source))
    state.take(("We met Xa'" + "b" * 63).encode())
    assert state.open()
    assert allowed(state, [b"q"])[0] == Guard.of(source).allows(state.text, "q") is False


# -- issue 26: what still got through -------------------------------------------------------------


def both_refuse(source: str, text: str, *, numbers: bool = True) -> bool:
    """The faithful rule refuses `text`, and the guard will not write it (cut into 3-character pieces)."""
    guard = Guard.of(source, guard_numbers=numbers)
    return unfaithful(text, source, numbers=numbers) is not None and not writes(guard, *[text[i:i + 3] for i in range(0, len(text), 3)])


def both_allow(source: str, text: str, *, numbers: bool = True) -> bool:
    guard = Guard.of(source, guard_numbers=numbers)
    return unfaithful(text, source, numbers=numbers) is None and writes(guard, *[text[i:i + 3] for i in range(0, len(text), 3)])


def test_a_possessive_ends_a_name_so_the_name_must_be_whole():
    """An unfinished name may not take a possessive (it could never be finished after it)."""
    g = Guard.of(SOURCE)
    assert not writes(g, "a Stan", "'s")
    assert writes(g, "a Stan", "ford", "'s")


def test_a_name_after_an_opening_bracket_or_quote_is_a_name():
    source = "A cloud service speeds up life support systems for modular diffusion models."
    assert both_refuse(source, "It will improve life support systems (Lumina) which help companies.")
    assert both_refuse(source, 'They built a modular diffusion model called the "Modal Diffusion" here.')
    assert both_refuse(source, '"Lumina" helps. It works.')  # a quote that opens a sentence frees nothing
    assert both_allow(source, "It helps (modular systems) a lot. Teams gain.")


def test_a_common_term_only_as_written_and_a_compound_is_a_name_when_a_part_is():
    source = "A convolutional network for images"
    assert both_refuse(source, "It helps companies like Ai-Ai build tools.")
    assert both_refuse(source, "The Convolutional Neural Network, or Nlp for short, helps.")
    assert both_refuse(source, "Lumina-AI systems help teams.")  # a first word whose later part is a name
    assert both_allow(source, "Teams that use AI and NLP on a GPU gain.")
    assert both_allow(source, "Self-driving cars use a Convolutional network.")


def test_names_in_lower_case_are_names():
    source = "A team at the University of Oxford trained a model for farms in Kenya."
    assert both_refuse(source, "a team from the university of engineering in kenya gains.")
    assert both_refuse(source, "Farmers in china gain.")
    assert both_refuse(source, "Farmers in hong kong gain.")
    assert both_refuse(source, "It helps openai and nvidia.")
    assert both_allow(source, "a team from the university of oxford helps farms in kenya.")
    assert both_allow(source, "Farmers in kenyan villages gain.")  # a close form, as for capitals
    assert both_allow(source, "It is a nice thing for reading and mobile use.")  # place names that are words


def test_number_words_fractions_and_weekdays_are_facts_too():
    source = "A model trained on 3 tasks with two GPUs, released on Monday"
    assert both_refuse(source, "It runs every ½ day.")
    assert both_refuse(source, "It needs about four times as many samples.")
    assert both_refuse(source, "It runs for hours until Tuesday and more.")
    assert both_refuse(source, "It runs until tuesday and more.")
    assert both_allow(source, "It runs three tasks on two GPUs from Monday on.")
    assert both_allow(source, "It runs tasks well.")


def test_plural_number_words_are_numbers_only_where_the_source_gives_them():
    source = "The service lost $300 million after 2 million users left."
    assert both_refuse(source, "It will cost hundreds of millions.")  # "hundreds": no such number in the story
    assert both_refuse(source, "It helps thousands of users.")
    assert both_refuse("A model read 3 tasks.", "It reads millions of tasks.")
    assert both_allow(source, "It lost millions as users left.")  # the story's "million", as a plural
    assert both_allow("Thousands of users left.", "Thousands of users may leave.")
    assert both_allow(source, "It helps tensor users.")  # "ten" and "tens" begin other words
    assert both_refuse(source, "It is tenfold faster.")  # a number word glued to what it counts
    assert both_refuse(source, "It took tenyears to build.")
    assert both_allow("A twofold gain", "It is a twofold gain.")
    assert both_refuse(source, "It could cost billions'sworth of users.")  # glued by an apostrophe
    assert both_refuse(source, "It took threeyears'scale to build.")
    assert both_allow(source, "It is the users' choice.")
    assert both_refuse(source, "It needs thousandslines of code.")  # glued to the next word
    assert both_allow(source, "It needs millionsof users.")  # the story's "million"


def test_a_number_keeps_the_word_it_has_in_the_source():
    source = "A review of 200 video clips found 12% more errors."
    assert both_refuse(source, "A review took 200 seconds to run.")
    assert both_allow(source, "A review of 200 clips and 200 video tapes helps.")  # one of the three words after it
    assert both_allow(source, "It read 200 of them and found 12% more.")
    assert both_allow(source, "It read about 200.")


def test_a_percentage_is_a_number_with_the_word_percent():
    source = "A review of 200 video clips found 12% more errors in 30 tests, and 8 percent fewer."
    assert both_refuse(source, "It cut errors by 30% in tests.")  # the story's 30 are tests
    assert both_refuse(source, "It cut errors by 30 % in tests.")
    assert both_refuse(source, "It cut errors by 30 percent.")
    assert both_refuse(source, "It cut errors by 200%.")
    assert both_refuse(source, "It flags 200 more clips.")  # "more", "less" and "per" change what it counts
    assert both_refuse(source, "It reads 200 per second.")
    assert both_refuse(source, "A 200-year-old clip is missed.")  # a hyphen is no way around it
    assert both_allow(source, "It found 200-video clips.")
    assert both_allow(source, "It found 12% more errors and 8% fewer.")
    assert both_allow(source, "It found 12 percent more errors and 8 percent fewer.")
    assert both_allow(source, "It ran 30 tests on 200 clips.")
    assert both_allow("Sales rose by 40.", "Sales rose by 40% now.")  # a number with no word keeps none


def test_rule_1_is_the_rule_of_0_4_to_0_6_for_older_posts():
    """An older post replays under the fact rule it was made with (`[generation] fact_rule`): rule 1
    let through what rule 2 refuses, in the check and in the guard alike."""
    source = "A review of 200 video clips found 12% more errors in 30 tests."
    for text in ("It helps thousands of users.", "It cut errors by 30% in tests.", "It flags 200 more clips."):
        assert both_refuse(source, text)
        assert unfaithful(text, source, rule=1) is None, text
        assert writes(Guard.of(source, rule=1), *[text[i:i + 3] for i in range(0, len(text), 3)]), text
    assert unfaithful("It took 200 seconds.", source, rule=1) is not None  # the rest of the rule is the same


def test_a_prediction_names_no_year_but_its_own():
    from datetime import date

    from digest.quality import score_prediction

    subject = "Artificial general intelligence"
    wrong = "December 2038: Artificial general intelligence is predicted to arrive in December 2045."
    right = "December 2038: Artificial general intelligence arrives by 2038 in labs."
    assert both_refuse(subject, wrong, numbers=False)
    assert both_allow(subject, right, numbers=False)
    date_check = {c.name: c for c in score_prediction(wrong, date(2026, 12, 1), min_words=3, max_words=60).checks}["date"]
    assert not date_check.passed and "2045" in date_check.why
    assert {c.name: c for c in score_prediction(right, date(2026, 12, 1), min_words=3, max_words=60).checks}["date"].passed


BAD_SOURCES = ["Speech model for Welsh radio",  # a title and no text
               "NEW OPEN MODEL BEATS GPT ON CHARTS",  # all capitals
               "2024 1200 7",  # all digits
               "Модель из Москвы и 北京 的模型",  # names in other scripts
               "A model with three heads and a dozen layers"]  # a number only in words


@pytest.mark.parametrize("source", BAD_SOURCES)
@settings(max_examples=25, deadline=None)
@given(pieces=st.lists(st.sampled_from(["a", " ", ".", "T", "t", "2", "0", "4", " three", " two", " chin", "a.", " Tues",
                                        "day", " university", " of", " Москв", "ы", " 北京", " (", "-", "GPT", " 12"]),
                       max_size=30))
def test_bad_input_still_leaves_a_token_to_take(source, pieces):
    """Whatever the guard let through before, some one-character piece is still allowed."""
    state = GuardState(Guard.of(source))
    singles = [c.encode() for c in ONE_CHARACTER]
    for piece in pieces:
        if allowed(state, [piece.encode()])[0]:
            state.take(piece.encode())
        assert allowed(state, singles).any(), state.text


def test_a_run_from_an_older_config_guards_and_checks_under_the_rule_it_ran_with():
    """A recorded config without `fact_rule` (a manifest of 0.4 to 0.6) gives every request a rule-1
    guard and judges under rule 1; today's config, rule 2: the same plural number word passes the one
    and fails the other."""
    from datetime import date

    from digest.config import Config, Prevention, config_from_dict, config_to_dict
    from digest.engine.base import Sampling
    from digest.feeds import read_feed_file
    from digest.pipeline import judge_of, protect
    from digest.prompts import Templates, build_requests
    from digest.resources import samples_dir
    from digest.select import pick

    topics = pick(read_feed_file(samples_dir(), "topics").entries, 2)
    day, templates = date(2026, 11, 23), Templates.load(Config().prompts_path)
    older = config_to_dict(Config())
    del older["generation"]["fact_rule"]
    for config, rule in ((config_from_dict(older), 1), (Config(), 2)):
        judge = judge_of(config, topics, day, templates)
        requests = protect(build_requests(topics, day, templates, run_seed=42, max_tokens=24, sampling=Sampling()),
                           judge, Prevention(guard=True, sentence_attempts=4))
        assert {r.guard.rule for r in requests} == {rule}
        key = next(r.key for r in requests if "faithful" in judge.sections[r.key].kind.checks)
        text = "Teams could help thousands of people with it, and many more would gain from it in time."
        faithful = {c.name: c for c in judge.score(key, text).checks}["faithful"]
        assert faithful.passed == (rule == 1), faithful.why
        assert (judge.sentence_checks(key)(text, []) is None) == (rule == 1)
