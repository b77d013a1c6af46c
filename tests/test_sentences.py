"""Where a sentence ends (digest.sentences): the one definition the cleaners, checks, guard and engines ask."""

from digest import sentences
from digest.facts import SEGMENT, names


def test_a_sentence_ends_at_a_mark_and_its_closers_before_white_space():
    assert sentences.split("One. Two! Three? Four") == ["One.", "Two!", "Three?"]
    assert sentences.split('He said "yes." Then (he left.) Now') == ['He said "yes."', "Then (he left.)"]
    assert sentences.complete("One. Two! Three? Four") == "One. Two! Three?"
    assert sentences.complete("no end at all") == ""
    assert sentences.first("One two. Three.") == "One two." and sentences.first("no end ") == "no end "


def test_a_decimal_an_abbreviation_or_an_ellipsis_ends_no_sentence_early():
    text = "It needs 2.5 times more, e.g. on GPUs. Dr. Lee vs. Mr. Ng, i.e. two labs, Cf. above... Then more."
    assert sentences.split(text) == ["It needs 2.5 times more, e.g. on GPUs.",
                                     "Dr. Lee vs. Mr. Ng, i.e. two labs, Cf. above...", "Then more."]
    assert sentences.split("E.g. this one. And I.E. that one.") == ["E.g. this one.", "And I.E. that one."]
    assert sentences.split("Wait... what?! Yes.") == ["Wait...", "what?!", "Yes."]


def test_the_end_of_a_text_being_written():
    """What the engines ask of a sentence still being written."""
    assert sentences.ends("It works.") and sentences.ends('It works."  ').group(1) == "  "
    assert sentences.ends("It costs 9.")  # may still go on as 9.5: the writer looks at the next piece
    assert not sentences.ends("It costs 9.5") and not sentences.ends("Ask Dr.") and not sentences.ends("as in e.g.")
    assert sentences.next_end("It works. The") == len("It works.")
    assert sentences.next_end('"It works." The') == len('"It works."')
    assert sentences.next_end("It costs 9.5 and e.g. more") is None and sentences.next_end("It works.") is None
    assert [sentences.is_ender(p) for p in (b".", b" .", b'."', b"?!", b".\n\n", b"...")] == [True] * 6
    assert not any(sentences.is_ender(p) for p in (b"", b"a.", b".a", b"9."))


def test_the_fact_rule_begins_a_segment_where_a_sentence_begins():
    """After an abbreviation a capitalised word is no sentence's first: a name the rule looks at."""
    assert SEGMENT.split("Labs win. Google: Yes")[1:] == ["Google:", "Yes"]
    assert names("Labs use tools, e.g. Google tools. Then Dr. Smith said 2.5 Times.") == ["Google", "Dr", "Smith", "Times"]
