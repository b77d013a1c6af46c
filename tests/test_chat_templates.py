"""Digest's prompts through real chat templates of ten model families (tests/data/templates, where
each came from is in its README), by the same ChatFormatter the engines use, compared with golden
files that show what reaches the model; and what the formatter does where families differ: a system
role the template lacks, thinking, the date, a template that fails.

Run with DIGEST_UPDATE_GOLDEN=1 to rewrite the goldens after a deliberate change (and read the diff).
"""

from __future__ import annotations

import dataclasses
import datetime as real_datetime
import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

from digest import resources
from digest.engine.base import Message, Sampling
from digest.engine.chat import ChatFormatter, fold_system
from digest.errors import EXIT_MODEL, ModelError
from digest.prompts import Templates, build_requests
from digest.select import Story

pytest.importorskip("llama_cpp")

DATA = Path(__file__).resolve().parent / "data" / "templates"
GOLDEN = DATA / "golden"
DAY = date(2026, 3, 14)
TOPIC = Story(title="Sparse experts halve pretraining compute", excerpt="The authors train sparse models on half the FLOPs.")


@dataclass(frozen=True)
class Family:
    file: str
    bos: str
    eos: str
    end_of_turn: str  # what the template writes after each turn (the model's stop token for its answer)
    generation_prompt: str  # how the prompt ends: the open assistant turn
    system: str = "kept"  # or "folded" (the template has no system role)
    thinks: bool = False  # a thinking template (takes enable_thinking, or writes <think>)
    opens_thinking: bool = False  # its generation prompt opens a <think> block itself
    reads_date: bool = False


FAMILIES = {
    "chatml-qwen2.5": Family("Qwen-Qwen2.5-7B-Instruct.jinja", "", "<|im_end|>", "<|im_end|>",
                             "<|im_start|>assistant\n"),
    "qwen3": Family("Qwen-Qwen3-0.6B.jinja", "", "<|im_end|>", "<|im_end|>",
                    "<|im_start|>assistant\n<think>\n\n</think>\n\n", thinks=True),
    "smollm3": Family("HuggingFaceTB-SmolLM3-3B.jinja", "", "<|im_end|>", "<|im_end|>",
                      "<|im_start|>assistant\n<think>\n\n</think>\n", thinks=True),
    "deepseek-r1": Family("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja", "<｜begin▁of▁sentence｜>",
                          "<｜end▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜Assistant｜><think>\n</think>", thinks=True),
    "gemma2": Family("google-gemma-2-2b-it.jinja", "<bos>", "<eos>", "<end_of_turn>", "<start_of_turn>model\n",
                     system="folded"),
    "gemma4": Family("google-gemma-4-31B-it.jinja", "<bos>", "<eos>", "<turn|>",
                     "<|turn>model\n<|channel>thought\n<channel|>", thinks=True),  # an empty thought channel
    "llama3.2": Family("meta-llama-Llama-3.2-3B-Instruct.jinja", "<|begin_of_text|>", "<|eot_id|>", "<|eot_id|>",
                       "<|start_header_id|>assistant<|end_header_id|>\n\n", reads_date=True),
    "phi3.5": Family("microsoft-Phi-3.5-mini-instruct.jinja", "<s>", "<|endoftext|>", "<|end|>", "<|assistant|>\n"),
    "mistral-nemo": Family("mistralai-Mistral-Nemo-Instruct-2407.jinja", "<s>", "</s>", "</s>", "[/INST]"),
    "granite3.3": Family("ibm-granite-granite-3.3-2B-Instruct.jinja", "<|end_of_text|>", "<|end_of_text|>",
                         "<|end_of_text|>", "<|start_of_role|>assistant<|end_of_role|>", thinks=True),  # <think> asked by `thinking`
}


class _Fixed(real_datetime.datetime):
    @classmethod
    def now(cls, tz=None):
        return cls(2026, 3, 14, 6, 0, 0, tzinfo=tz)


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch):
    """The templates that read the clock read 14 Mar 2026 (the goldens must not change by the day)."""
    import llama_cpp.llama_chat_format as llama_chat_format

    from digest.engine import chat

    monkeypatch.setattr(llama_chat_format, "datetime", _Fixed)
    monkeypatch.setattr(chat, "datetime", _Fixed)


@pytest.fixture(scope="module")
def request_messages() -> tuple[Message, ...]:
    """The messages of one section of a post as digest builds them: system prompt, the example
    exchanges of its kind, the request."""
    templates = Templates.load(resources.prompts_dir())
    requests = build_requests([TOPIC], DAY, templates, run_seed=42, max_tokens=160, sampling=Sampling())
    return requests[0].messages


def formatter(family: Family, thinking: bool = False) -> ChatFormatter:
    return ChatFormatter((DATA / family.file).read_text(encoding="utf-8"), bos_token=family.bos, eos_token=family.eos,
                         model_label=family.file, thinking=thinking)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_digests_prompt_through_each_family_matches_its_golden(name, request_messages):
    family = FAMILIES[name]
    fmt = formatter(family)
    prompt = fmt(request_messages)
    golden = GOLDEN / f"{name}.txt"
    if os.environ.get("DIGEST_UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(prompt, encoding="utf-8")
    assert prompt == golden.read_text(encoding="utf-8"), f"{name}: the prompt differs from {golden}"

    system = request_messages[0].content
    assert prompt.count(system.strip()) == 1, "the system prompt reaches the model exactly once"
    assert fmt.describe()["system_role"].startswith("folded" if family.system == "folded" else "kept")
    for message in request_messages[1:]:
        assert message.content.strip() in prompt
        if message.role == "assistant":  # every example answer ends its turn with the family's token
            assert message.content.strip() + family.end_of_turn in prompt
    assert prompt.endswith(family.generation_prompt)
    if "bos_token" in fmt.template:  # (Granite's and Qwen's templates write none)
        assert prompt.startswith(family.bos)
    assert fmt.traits.thinks == family.thinks
    assert fmt.traits.keeps_system == (family.system != "folded")
    # Thinking off: a budget is kept only where the template cannot be told not to think.
    asked = dataclasses.replace(fmt.traits, thinking_tokens=100)
    assert asked.budget == (100 if family.thinks and "enable_thinking" not in fmt.template else 0)
    assert fmt.opens_thinking(prompt) == family.opens_thinking
    assert fmt.reads_date == family.reads_date
    if family.reads_date:
        assert "14 Mar 2026" in prompt and fmt.describe()["date_read"] == "2026-03-14"


def test_at_least_eight_families_are_covered():
    assert len({f.file for f in FAMILIES.values()}) >= 8
    assert {p.stem for p in GOLDEN.glob("*.txt")} == set(FAMILIES)


def test_thinking_on_leaves_the_assistant_turn_open_for_the_reasoning(request_messages):
    qwen3 = formatter(FAMILIES["qwen3"], thinking=True)
    prompt = qwen3(request_messages)
    assert prompt.endswith("<|im_start|>assistant\n") and "</think>" not in prompt
    smollm3 = formatter(FAMILIES["smollm3"], thinking=True)(request_messages)
    assert "Reasoning Mode: /think" in smollm3 and smollm3.endswith("<|im_start|>assistant\n")
    off = formatter(FAMILIES["smollm3"])(request_messages)
    assert "Reasoning Mode: /no_think" in off
    # DeepSeek-R1's generation prompt opens the block itself: the model's text starts inside it.
    r1 = formatter(FAMILIES["deepseek-r1"], thinking=True)
    assert r1.opens_thinking(r1(request_messages))


def test_a_template_without_a_system_role_gets_it_folded_into_the_first_user_turn(request_messages):
    gemma = formatter(FAMILIES["gemma2"])
    prompt = gemma(request_messages)
    first_user = next(m.content for m in request_messages if m.role == "user")
    system = request_messages[0].content
    assert f"<start_of_turn>user\n{system.strip()}\n\n{first_user.strip()}<end_of_turn>" in prompt
    assert "<start_of_turn>system" not in prompt
    assert fold_system([Message("system", "S"), Message("assistant", "a")]) == (Message("user", "S"), Message("assistant", "a"))


def test_a_template_that_fails_on_digests_prompt_is_one_line_exit_5():
    # Raises on a role it does not take, as Gemma 2 does on roles out of turn.
    raising = ("{% for m in messages %}{% if m.role == 'assistant' %}"
               "{{ raise_exception('Only user messages are supported') }}{% endif %}{{ m.content }}{% endfor %}")
    fmt = ChatFormatter(raising, bos_token="", eos_token="", model_label="x.gguf")
    with pytest.raises(ModelError) as caught:
        fmt((Message("system", "s"), Message("user", "u"), Message("assistant", "a"), Message("user", "v")))
    message = str(caught.value)
    assert caught.value.exit_code == EXIT_MODEL and "\n" not in message
    assert "x.gguf" in message and "Only user messages are supported" in message

    with pytest.raises(ModelError, match=r"x\.gguf: its chat template is not valid Jinja") as caught:
        ChatFormatter("{% for m in messages %}{{ m.content }", bos_token="", eos_token="", model_label="x.gguf")
    assert "\n" not in str(caught.value)
    with pytest.raises(ModelError, match="fails on digest's prompt"):  # a bug of the template's own
        ChatFormatter("{{ messages[0].content.nope() }}", bos_token="", eos_token="", model_label="x.gguf")(
            (Message("user", "u"),))


def test_a_templates_traits_are_found_once_and_give_every_engine_its_reasoning_budget():
    """TemplateTraits: whether a template thinks, can be told not to, and so what budget an engine
    reserves beside max_tokens; the registry's `thinking` where the template does not tell, and for a
    template digest cannot see (a server's), the registry or the setting."""
    from digest.engine.chat import TemplateTraits
    from digest.engine.fake import FakeEngine

    told = "{% if enable_thinking %}<think>{% endif %}{{ messages }}"  # Qwen3, SmolLM3
    untold = "{{ messages }}<｜Assistant｜><think>\n"  # the DeepSeek-R1 distills
    plain = "{{ messages }}"
    of = lambda template, **kw: TemplateTraits.of(template, thinking_tokens=100, **kw).budget
    assert (of(told), of(told, thinking=True), of(untold), of(plain, thinking=True)) == (0, 100, 100, 0)
    assert of(plain, family=True) == 100 and TemplateTraits.of(plain, family=True).thinks
    assert (of(None), of(None, thinking=True), of(None, family=True)) == (0, 100, 0)
    assert not TemplateTraits.of(None).thinks and TemplateTraits.of(None, family=True).thinks
    # The fake engine stands for a template that cannot be told not to think: its budget is its traits'.
    assert FakeEngine(thinking_tokens=100).thinking_budget == 100 == FakeEngine(thinking_tokens=100).traits.budget
