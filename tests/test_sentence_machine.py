"""The sentence machine (digest.engine.rollback) on its own: scripted sentences, no model. Both engines
drive it, so what it decides here is what each of them does with a real model's sentences."""

from digest.engine.base import derive_seed
from digest.engine.rollback import SentenceMachine
from digest.prevention import SENTENCE_MAX_WORDS, SentenceRule


def bad_when(word: str):
    """The checks of one sentence, refusing any that holds `word`."""
    return lambda sentence, before: f"says {word}" if word in sentence.lower() else None


def machine(attempts: int = 3, min_words: int = 6, max_words: int = 0, most: int = 0, hold: bool = False,
            checks=bad_when("bad")) -> SentenceMachine:
    return SentenceMachine(SentenceRule(checks, min_words, max_words, attempts, most, hold), seed=7)


def test_a_good_sentence_is_kept_and_a_bad_one_undone_with_its_attempts_own_seed():
    m = machine()
    assert m.finished("One two three.") == "kept" and m.kept == ["One two three."] and m.attempt == 0
    assert m.finished("A bad one.") == "undo" and m.attempt == 1 and m.rollbacks == 1
    assert m.attempt_seed() == derive_seed(7, "sentence 1 attempt 1")
    assert m.finished("Another bad one.") == "undo" and m.attempt_seed() == derive_seed(7, "sentence 1 attempt 2")
    assert m.finished("Four five six.") == "kept" and m.attempt == 0 and m.rollbacks == 2
    assert m.attempt_seed() == derive_seed(7, "sentence 2 attempt 0")


def test_spent_attempts_keep_the_last_one_until_the_paragraph_is_long_enough_then_end_before_it():
    m = machine(attempts=2)
    assert [m.finished("It is bad."), m.finished("Still bad.")] == ["undo", "kept"]  # too short to end: it stands
    assert m.kept == ["Still bad."] and m.attempt == 0
    m = machine(attempts=2)
    m.finished("One two three four five six.")
    assert [m.finished("It is bad."), m.finished("Still bad.")] == ["undo", "end"]
    assert m.kept == ["One two three four five six."]


def test_a_failing_last_sentence_ends_a_long_enough_paragraph_before_it():
    m = machine()
    assert m.finished("Bad and last.", last=True) == "undo"  # nothing kept yet: written again
    m.finished("One two three four five six.")
    assert m.finished("Bad and last.", last=True) == "end"


def test_a_sentence_past_the_word_limit_ends_a_long_enough_paragraph():
    m = machine(max_words=10)
    assert m.finished("One two three four five six seven eight nine ten eleven.") == "kept"  # nothing before it
    m = machine(max_words=10)
    m.finished("One two three four five six.")
    assert m.finished("Seven eight nine ten eleven.") == "end" and len(m.kept) == 1


def test_a_broken_sentence_is_undone_until_its_attempts_are_spent_or_the_paragraph_is_long_enough():
    m = machine(attempts=3)
    assert [m.broken(), m.broken(), m.broken()] == ["undo", "undo", "end"] and m.rollbacks == 2
    m = machine(attempts=3)
    m.finished("One two three four five six.")
    assert m.broken() == "end" and m.rollbacks == 0


def test_the_hold_the_lean_the_runaway_and_the_end_of_a_paragraph():
    m = machine(min_words=6, hold=True)
    assert not m.may_end("") and not m.may_end("One two three four five six")  # mid-sentence
    assert m.may_end("One two three four five six.")
    assert machine(hold=False).may_end("One")
    assert m.lean(" ".join(["w"] * 30)) == 0 and m.lean(" ".join(["w"] * 45)) == 7.5
    assert not m.runaway(" ".join(["w"] * SENTENCE_MAX_WORDS)) and m.runaway(" ".join(["w"] * (SENTENCE_MAX_WORDS + 1)))
    assert not m.ends_early()
    m.finished("One two three.")
    assert not m.ends_early() and not m.stops(new_paragraph=True)
    m.finished("Four five six.")
    assert m.ends_early() and m.stops(new_paragraph=True) and not m.stops(new_paragraph=False)
    one = machine(most=1)
    one.finished("Just one.")
    assert one.stops(new_paragraph=False)


def test_a_sentence_refused_by_the_checks_is_never_kept_while_attempts_remain():
    """A property over scripted runs: whatever the order of good and bad sentences, a bad one is kept
    only as a last attempt, and every undo is counted."""
    import random

    rng = random.Random(3)
    for _ in range(200):
        m = machine(attempts=rng.randint(1, 4), min_words=rng.randint(0, 12))
        undos = 0
        for _ in range(rng.randint(1, 8)):
            sentence = rng.choice(["One two three.", "A bad sentence.", "Four five six seven."])
            attempt = m.attempt
            verdict = m.finished(sentence)
            undos += verdict == "undo"
            if verdict == "kept" and "bad" in sentence:
                assert attempt + 1 == m.rule.attempts
            if verdict == "end":
                break
        assert m.rollbacks == undos
