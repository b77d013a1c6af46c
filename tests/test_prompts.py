"""digest.prompts: loading templates and building the engine requests from them."""

from __future__ import annotations

import hashlib
import re
import shutil
from datetime import date
from pathlib import Path

import pytest

from digest.engine.base import Sampling
from digest.errors import ConfigError, PromptError
from digest.sections import PREDICTION_SUBJECTS
from digest.prompts import EXAMPLES, Templates, build_requests, example_turns, fields_of
from digest.sections import KINDS, prediction_grammar
from digest.select import Story

PROMPTS = Path(__file__).resolve().parents[1] / "prompts"
DAY = date(2026, 1, 2)
MONTHS = "January February March April May June July August September October November December".split()


@pytest.fixture
def prompts_copy(tmp_path) -> Path:
    folder = tmp_path / "prompts"
    shutil.copytree(PROMPTS, folder)
    return folder


@pytest.fixture(scope="module")
def templates() -> Templates:
    return Templates.load(PROMPTS)


TOPICS = [
    Story(title="Sparse experts halve pretraining compute", excerpt="The authors train sparse models."),
    Story(title="Robots fold laundry after watching videos", excerpt=""),
    Story(title="Weather forecasts improve with graph networks", excerpt="A graph network beats physics."),
]


def requests_for(topics, templates, *, run_seed=42, day=DAY, max_tokens=160, sampling=Sampling(), examples=True,
                 example_kinds="own"):
    return build_requests(topics, day, templates, run_seed=run_seed, max_tokens=max_tokens, sampling=sampling,
                          examples=examples, example_kinds=example_kinds)


# ---------------------------------------------------------------------------------------------
# Templates


def test_load_project_prompts(templates):
    assert set(templates.texts) == {*fields_of(), EXAMPLES}
    for name, text in templates.texts.items():
        assert text == text.strip() and text
        assert text == (PROMPTS / f"{name}.txt").read_text(encoding="utf-8").strip()


def test_fill_substitutes_placeholders(templates):
    filled = templates.fill("benefits", title="TITLE-XYZ", context="CONTEXT-XYZ")
    assert "TITLE-XYZ" in filled and "CONTEXT-XYZ" in filled
    assert "${" not in filled


def test_unknown_placeholder_names_file_and_placeholder(prompts_copy):
    path = prompts_copy / "ramifications.txt"
    path.write_text(path.read_text(encoding="utf-8") + "\nAlso consider ${audience}.\n", encoding="utf-8")
    with pytest.raises(PromptError) as info:
        Templates.load(prompts_copy)
    message = str(info.value)
    assert str(path) in message
    assert "audience" in message


def test_placeholder_of_another_template_is_unknown(prompts_copy):
    # ${year} belongs to predictions.txt; the system prompt knows no field at all.
    path = prompts_copy / "system.txt"
    path.write_text("You write in $year.", encoding="utf-8")
    with pytest.raises(PromptError) as info:
        Templates.load(prompts_copy)
    assert str(path) in str(info.value) and "year" in str(info.value)


def test_stray_dollar_is_an_error_and_double_dollar_is_fine(prompts_copy):
    path = prompts_copy / "benefits.txt"
    original = path.read_text(encoding="utf-8")
    path.write_text(original + "\nIt costs $$5 a month.\n", encoding="utf-8")
    assert "$5 a month" in Templates.load(prompts_copy).fill("benefits", title="t", context="c")
    path.write_text(original + "\nIt costs $ 5.\n", encoding="utf-8")
    with pytest.raises(PromptError) as info:
        Templates.load(prompts_copy)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("name", sorted(fields_of()))
def test_missing_template(prompts_copy, name):
    (prompts_copy / f"{name}.txt").unlink()
    with pytest.raises(PromptError) as info:
        Templates.load(prompts_copy)
    assert str(prompts_copy / f"{name}.txt") in str(info.value)


def test_missing_folder(tmp_path):
    with pytest.raises(PromptError) as info:
        Templates.load(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(info.value)


def test_prompt_error_is_a_config_error():
    assert issubclass(PromptError, ConfigError)


def test_sha256_changes_with_the_text(prompts_copy):
    from digest.manifest import prompts_record

    names = list(Templates.load(prompts_copy).texts)
    before = prompts_record(prompts_copy, names)["sha256"]
    (prompts_copy / "system.txt").write_text("Another system prompt.", encoding="utf-8")
    after = prompts_record(prompts_copy, names)["sha256"]
    assert before["system"] != after["system"]
    assert {k: v for k, v in before.items() if k != "system"} == {k: v for k, v in after.items() if k != "system"}


# ---------------------------------------------------------------------------------------------
# build_requests


def test_two_requests_per_topic_and_two_predictions(templates):
    requests = requests_for(TOPICS, templates)
    assert len(requests) == 2 * len(TOPICS) + len(PREDICTION_SUBJECTS) == 2 * len(TOPICS) + 2
    keys = [r.key for r in requests]
    assert len(set(keys)) == len(keys)
    for story in TOPICS:
        mine = [r for r in requests if story.title in r.key]
        assert len(mine) == 2
        assert all(story.title in r.messages[-1].content for r in mine)
    for subject in PREDICTION_SUBJECTS:
        mine = [r for r in requests if subject in r.key]
        assert len(mine) == 1


def test_messages_are_system_then_user(templates):
    for request in requests_for(TOPICS, templates, examples=False):
        assert [m.role for m in request.messages] == ["system", "user"]
        assert request.messages[0].content == templates.texts["system"]
        assert "${" not in request.messages[1].content


def test_examples_are_the_same_user_assistant_turns_before_every_request(templates):
    examples = templates.examples()
    assert {e.kind for e in examples} == {"benefits", "ramifications", "predictions"}
    turns = example_turns(templates, DAY)
    assert [m.role for m in turns] == ["user", "assistant"] * len(examples)
    requests = requests_for(TOPICS, templates, example_kinds="all")
    for request in requests:
        # system, the examples, then the request's own user turn: a prefix all requests share
        assert request.messages[:-1] == (requests[0].messages[0], *turns)
        assert request.messages[-1].role == "user"
    # An example's user turn is made from the same template as a real request of its kind.
    benefits = next(i for i, e in enumerate(examples) if e.kind == "benefits")
    assert turns[2 * benefits].content == templates.fill("benefits", title=examples[benefits].title,
                                                         context=f"What it says: {examples[benefits].text}")
    # A prediction's answer names a year after the post's.
    predictions = next(i for i, e in enumerate(examples) if e.kind == "predictions")
    assert re.match(rf"\w+ {DAY.year + 6}: ", turns[2 * predictions + 1].content)
    # Switched off, the requests are as before; the request's own turn does not change.
    plain = requests_for(TOPICS, templates, examples=False)
    assert [r.messages[-1] for r in plain] == [r.messages[-1] for r in requests]
    assert [(r.key, r.seed) for r in plain] == [(r.key, r.seed) for r in requests]


def test_by_default_a_section_sees_the_examples_of_its_own_kind_only(templates):
    """example_kinds = "own": a Benefits request is shown the Benefits example and no other; the
    requests of one kind share their whole prefix; the request's own turn and seed do not change."""
    examples = templates.examples()
    mine = requests_for(TOPICS, templates)
    every = requests_for(TOPICS, templates, example_kinds="all")
    by_kind: dict[str, set] = {}
    for request, full in zip(mine, every):
        kind = KINDS[request.key.split(":", 1)[0]].template_name
        shown = [e for e in examples if e.kind == kind]
        assert shown, request.key
        assert request.messages[:-1] == (full.messages[0], *example_turns(templates, DAY, KINDS[request.key.split(":")[0]]))
        assert len(request.messages) == 2 + 2 * len(shown)
        assert (request.messages[-1], request.key, request.seed) == (full.messages[-1], full.key, full.seed)
        by_kind.setdefault(kind, set()).add(request.messages[:-1])
    assert set(by_kind) == {"benefits", "ramifications", "predictions"}
    assert all(len(prefixes) == 1 for prefixes in by_kind.values())
    assert len({p for prefixes in by_kind.values() for p in prefixes}) == 3
    with pytest.raises(ValueError, match="example_kinds"):
        requests_for(TOPICS, templates, example_kinds="some")


def test_examples_file_is_optional(prompts_copy):
    (prompts_copy / "examples.txt").unlink()
    templates = Templates.load(prompts_copy)
    assert templates.examples() == [] and EXAMPLES not in templates.texts
    assert [m.role for m in requests_for(TOPICS, templates)[0].messages] == ["system", "user"]


@pytest.mark.parametrize("text, why", [
    ("== benefits\ntitle: T\ntext: X\n", "'--' line"),
    ("== opinions\ntitle: T\n--\nAnswer.", "not one of"),
    ("== benefits\nheadline: T\n--\nAnswer.", "expected title: ..."),
    ("Some stray text\n== benefits\ntitle: T\n--\nAnswer.", "before the first"),
    ("== predictions\nsubject: S\n--\nMay ${soon}: x.", "unknown placeholder"),
])
def test_a_malformed_examples_file_is_one_clear_error(prompts_copy, text, why):
    path = prompts_copy / "examples.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PromptError) as info:
        Templates.load(prompts_copy)
    assert str(path) in str(info.value) and why in str(info.value)


def test_excerpt_reaches_the_prompt(templates):
    requests = requests_for(TOPICS, templates)
    for story in TOPICS:
        for request in (r for r in requests if story.title in r.key):
            if story.excerpt:
                assert story.excerpt in request.messages[-1].content


def test_benefits_and_ramifications_prompts_differ(templates):
    requests = requests_for(TOPICS[:1], templates)
    assert requests[0].messages[-1].content != requests[1].messages[-1].content


def test_sampling_and_max_tokens_are_passed_on(templates):
    sampling = Sampling(temperature=0.3, top_k=7, top_p=0.5, min_p=0.1, repeat_penalty=1.3)
    for request in requests_for(TOPICS, templates, max_tokens=77, sampling=sampling):
        assert request.max_tokens == 77
        assert request.sampling == sampling


def test_seeds_are_distinct_and_in_range(templates):
    seeds = [r.seed for r in requests_for(TOPICS, templates)]
    assert len(set(seeds)) == len(seeds)
    assert all(0 <= s < 2**31 for s in seeds)


def test_seeds_depend_on_run_seed(templates):
    a = {r.key: r.seed for r in requests_for(TOPICS, templates, run_seed=1)}
    b = {r.key: r.seed for r in requests_for(TOPICS, templates, run_seed=2)}
    again = {r.key: r.seed for r in requests_for(TOPICS, templates, run_seed=1)}
    assert a == again
    assert a.keys() == b.keys()
    assert all(a[k] != b[k] for k in a)


def test_seeds_do_not_depend_on_topic_position(templates):
    forward = {r.key: r for r in requests_for(TOPICS, templates)}
    backward = {r.key: r for r in requests_for(list(reversed(TOPICS)), templates)}
    assert forward.keys() == backward.keys()
    for key in forward:
        assert forward[key].seed == backward[key].seed
        assert forward[key].messages == backward[key].messages
    # A topic's requests are the same alone as among others.
    alone = {r.key: r.seed for r in requests_for(TOPICS[1:2], templates)}
    assert all(forward[k].seed == s for k, s in alone.items())


def grammar_years(grammar: str) -> list[int]:
    (line,) = [l for l in grammar.splitlines() if l.startswith("year ::=")]
    return [int(y) for y in re.findall(r'"(\d+)"', line)]


@pytest.mark.parametrize("day", [DAY, date(2031, 12, 31), date(1999, 6, 1)])
def test_prediction_requests_carry_future_year_grammar(templates, day):
    requests = requests_for(TOPICS, templates, day=day)
    predictions = [r for r in requests if r.grammar is not None]
    assert len(predictions) == len(PREDICTION_SUBJECTS)
    assert {r.key for r in predictions} == {r.key for r in requests if any(s in r.key for s in PREDICTION_SUBJECTS)}
    for request in predictions:
        years = grammar_years(request.grammar)
        assert years, request.grammar
        assert min(years) == day.year + 1
        assert all(y > day.year for y in years)
        month_line = next(l for l in request.grammar.splitlines() if l.startswith("month ::="))
        assert re.findall(r'"([A-Za-z]+)"', month_line) == MONTHS
        assert request.grammar.splitlines()[0].startswith("root ::=")
        user = request.messages[-1].content
        assert str(day.year) in user
        assert day.strftime("%B") in user


def test_prediction_prompt_names_its_subject(templates):
    requests = requests_for(TOPICS, templates)
    for subject in PREDICTION_SUBJECTS:
        (request,) = [r for r in requests if subject in r.key]
        assert subject.lower() in request.messages[-1].content.lower()


def test_topic_requests_have_no_grammar(templates):
    for request in requests_for(TOPICS, templates):
        if not any(s in request.key for s in PREDICTION_SUBJECTS):
            assert request.grammar is None


def test_prediction_grammar_only_depends_on_year():
    assert prediction_grammar(date(2026, 1, 1)) == prediction_grammar(date(2026, 12, 31))
    assert prediction_grammar(date(2026, 1, 1)) != prediction_grammar(date(2027, 1, 1))


def test_a_template_hashes_as_its_file_not_its_stripped_text(prompts_copy):
    """One definition of a template's sha256 (its file's bytes): a file whose text the loader strips
    is recorded (and checked by replay) by the bytes on disk."""
    from digest.manifest import prompts_record

    path = prompts_copy / "system.txt"
    path.write_bytes(path.read_bytes().strip() + b"\n\n  \n")
    templates = Templates.load(prompts_copy)
    recorded = prompts_record(prompts_copy, list(templates.texts))["sha256"]
    assert templates.texts["system"] == path.read_text(encoding="utf-8").strip()
    assert recorded["system"] == hashlib.sha256(path.read_bytes()).hexdigest()
