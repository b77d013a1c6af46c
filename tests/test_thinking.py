"""Thinking models: a `<think>...</think>` block (or a server's `reasoning_content`) never reaches the
text that is cleaned, checked or written, in any engine; the manifest counts its tokens; a block left
open at its budget is a retry, then one clear error, never a paragraph of reasoning.

The fake and openai engines (scripted servers on 127.0.0.1) here; the batched and sequential engines
with the real model in tests/test_template_e2e.py.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from conftest import describe
from digest import engine as engine_pkg  # engine_of builds every engine through its create_engine
from digest.engine.base import Message, Request
from digest.engine.fake import FakeEngine, fake_text
from digest.engine.openai import OpenAIEngine, ServerOptions
from digest.engine.thinking import ThinkingState, split_thinking
from digest.errors import EXIT_GENERATION

DAY = "2026-11-23"
REASONING = "Okay, the user wants benefits. Let me think about who gains here and how to say it well."


def test_split_thinking():
    assert split_thinking("Plain answer.") == split_thinking("Plain answer.", inside=False)
    assert split_thinking("Plain answer.").answer == "Plain answer." and split_thinking("Plain answer.").thought is None
    s = split_thinking(f"\n<think>\n{REASONING}\n</think>\n\nThe answer.")
    assert (s.answer, s.thought.strip(), s.closed) == ("The answer.", REASONING, True)
    s = split_thinking(f"<think>{REASONING}")
    assert (s.answer, s.closed) == ("", False)
    s = split_thinking(f"{REASONING}</think>The answer.", inside=True)  # the prompt opened the block
    assert (s.answer, s.thought) == ("The answer.", REASONING)
    assert split_thinking(REASONING, inside=True).closed is False
    assert split_thinking("Before. <think>late reasoning</think> After.").answer == "Before.  After."
    assert split_thinking("Before. <think>never closed").answer == "Before. "


def test_thinking_state_follows_tokens():
    state = ThinkingState()
    text = ""
    for n, piece in enumerate(["<th", "ink>", "why", "</think>", "Yes"], 1):
        text += piece
        state.update(text, n)
        if piece == "why":
            assert state.in_block
    assert state.mode == "answer" and state.thinking_tokens == 4
    plain = ThinkingState()
    plain.update("The", 1)
    assert plain.mode == "answer" and plain.thinking_tokens == 0


def _thinking_respond(request: Request) -> str:
    return f"<think>\n{REASONING}\n</think>\n\n{fake_text(request)}"


def _use(monkeypatch, respond, **kw):
    monkeypatch.setattr(engine_pkg, "create_engine", lambda name, model_path, **options: FakeEngine(
        respond=respond, model_name="fake-model", thinking_tokens=options.get("thinking_tokens", 0), **kw))


def _post(site: Path) -> Path:
    (post,) = (site / "content" / "posts").glob("*.md")
    return post


def test_fake_engine_a_thinking_model_writes_a_post_without_its_reasoning(run_cli, tmp_path, monkeypatch):
    _use(monkeypatch, _thinking_respond)
    result = run_cli("run", "--sample-feeds", "--engine", "fake", "--out", tmp_path, "--date", DAY)
    assert result.exit_code == 0, describe(result)
    text = _post(tmp_path).read_text(encoding="utf-8")
    assert "think" not in text.lower() and "Let me think" not in text
    assert run_cli("check", _post(tmp_path)).exit_code == 0
    manifest = json.loads(next((tmp_path / ".digest" / "manifests").glob("*.json")).read_text())
    words = len(REASONING.split()) + 2
    assert all(s["thinking_tokens"] == words for s in manifest["sections"])
    assert manifest["stats"]["thinking_tokens"] >= words * len(manifest["sections"])  # with the retries' tries
    assert manifest["engine"]["thinking"] is False and manifest["engine"]["thinking_tokens"] == 1024


def test_fake_engine_a_block_never_closed_is_retried_then_one_error_and_nothing_written(run_cli, tmp_path, monkeypatch):
    _use(monkeypatch, lambda request: f"<think>{REASONING} " * 3)
    result = run_cli("run", "--sample-feeds", "--engine", "fake", "--out", tmp_path, "--date", DAY)
    assert result.exit_code == EXIT_GENERATION, describe(result)
    errors = [line for line in result.stderr.splitlines() if line.startswith("digest: error:")]
    assert len(errors) == 1 and "still thinking" in errors[0] and "thinking_tokens" in errors[0]
    assert "Traceback" not in result.stderr and not list(tmp_path.rglob("*.md"))


def test_fake_engine_the_block_has_its_own_budget():
    request = Request("k", (Message("user", "Sparse experts halve compute"),), seed=1, max_tokens=30)
    long_reasoning = lambda r: "<think>" + " ".join(["hmm"] * 50) + "</think> " + " ".join(["word"] * 20)
    (result,) = FakeEngine(respond=long_reasoning, thinking_tokens=100).generate([request]).results
    assert result.text == " ".join(["word"] * 20) and result.thinking_tokens == 52 and result.finish_reason == "stop"
    (result,) = FakeEngine(respond=long_reasoning, thinking_tokens=10).generate([request]).results
    assert (result.text, result.finish_reason, result.thinking_tokens) == ("", "thinking", 10)
    (result,) = FakeEngine(respond=long_reasoning).generate([request]).results  # no budget: it counts against max_tokens
    assert (result.text, result.finish_reason) == ("", "thinking")


# ---------------------------------------------------------------------------------------------
# --engine openai against scripted servers that answer as thinking models do


def _server(chat_server, answers: list[dict], *, stream: bool) -> list[dict]:
    """The scripted chat server answering as `answers` say (streamed or not), in turn; returns the
    POST bodies seen."""
    bodies = [(200, _events(answer) if stream else json.dumps(answer).encode()) for answer in answers]
    return chat_server(bodies * 40).bodies


def _events(answer: dict) -> bytes:
    message = answer["choices"][0]["message"]
    events = []
    for piece in (message.get("reasoning_content") or "").split(" "):
        if piece:
            events.append({"choices": [{"index": 0, "delta": {"reasoning_content": piece + " "}, "finish_reason": None}]})
    content = message.get("content") or ""
    for i in range(0, len(content), 12):
        events.append({"choices": [{"index": 0, "delta": {"content": content[i:i + 12]}, "finish_reason": None}]})
    events.append({"choices": [{"index": 0, "delta": {}, "finish_reason": answer["choices"][0]["finish_reason"]}]})
    if "usage" in answer:
        events.append({"choices": [], "usage": answer["usage"]})
    return ("".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n").encode()


PARAGRAPH = ("Researchers with small budgets could train capable models on half the compute, so more labs can "
             "run their own experiments. Cloud bills fall, and the saved energy matters for the planet too.")


def _answer(content: str | None, reasoning: str | None = None, finish: str = "stop", **usage) -> dict:
    message = {"role": "assistant", "content": content}
    if reasoning is not None:
        message["reasoning_content"] = reasoning
    return {"choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 50, "completion_tokens": 80, **usage}}


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("how", ["reasoning_content", "think-in-content"])
def test_openai_engine_reasoning_never_reaches_the_text(how, stream, chat_server, http_server):
    answer = (_answer(PARAGRAPH, REASONING) if how == "reasoning_content"
              else _answer(f"<think>\n{REASONING}\n</think>\n\n{PARAGRAPH}"))
    posts = _server(chat_server, [answer], stream=stream)
    engine = OpenAIEngine(ServerOptions(url=http_server.base + "/v1", grammar="llama", stream=stream,
                                        thinking_tokens=256))
    request = Request("benefits:x", (Message("system", "s"), Message("user", "u")), seed=1, max_tokens=160)
    (result,) = engine.generate([request]).results
    assert result.text == PARAGRAPH and result.finish_reason == "stop"
    assert 0 < result.thinking_tokens < 80
    assert posts[0]["chat_template_kwargs"] == {"enable_thinking": False}
    # The server shows no template here: the budget is added only when thinking is asked for.
    assert posts[0]["max_tokens"] == 160
    engine.options = dataclasses.replace(engine.options, thinking=True)
    assert engine.payload(request)["max_tokens"] == 160 + 256
    assert engine.payload(request)["chat_template_kwargs"] == {"enable_thinking": True}


def test_openai_engine_counts_the_servers_reasoning_tokens_and_an_open_block_is_thinking(chat_server, http_server):
    _server(chat_server, [_answer(PARAGRAPH, REASONING, completion_tokens_details={"reasoning_tokens": 33}),
                          _answer(f"<think>{REASONING}", finish="length")], stream=False)
    engine = OpenAIEngine(ServerOptions(url=http_server.base + "/v1", grammar="none", stream=False, concurrency=1))
    first, second = engine.generate([Request("a", (Message("user", "u"),), seed=1),
                                     Request("b", (Message("user", "u"),), seed=2)]).results
    assert (first.text, first.thinking_tokens) == (PARAGRAPH, 33)
    assert (second.text, second.finish_reason) == ("", "thinking")


@pytest.mark.parametrize("how", ["reasoning_content", "think-in-content"])
def test_openai_engine_a_post_from_a_thinking_server_passes_check_without_reasoning(how, run_cli, tmp_path,
                                                                                    chat_server, http_server):
    """The issue's case: a server answering as a thinking model put its reasoning into the post."""

    def respond(body: dict) -> tuple[int, bytes]:
        asked = body["messages"][-1]["content"]
        text = "March 2031: " + PARAGRAPH.split(", so")[0] + "." if asked.startswith("Today is") else PARAGRAPH
        answer = (_answer(text, REASONING) if how == "reasoning_content"
                  else _answer(f"<think>\n{REASONING}\n</think>\n\n{text}"))
        return 200, json.dumps(answer).encode()

    chat_server(respond, model="qwen3-4b")
    base = http_server.base
    config = tmp_path / "digest.toml"
    config.write_text(f'[model]\nurl = "{base}/v1"\ngrammar = "none"\nstream = false\n'
                      '[generation]\nengine = "openai"\n', encoding="utf-8")
    result = run_cli("run", "--config", config, "--sample-feeds", "--out", tmp_path / "site", "--date", DAY)
    assert result.exit_code == 0, describe(result)
    post = _post(tmp_path / "site")
    text = post.read_text(encoding="utf-8")
    assert "think" not in text.lower() and "Let me think" not in text and PARAGRAPH in text
    assert run_cli("check", post).exit_code == 0
    manifest = json.loads(next((tmp_path / "site" / ".digest" / "manifests").glob("*.json")).read_text())
    assert all(s["thinking_tokens"] > 0 for s in manifest["sections"])


# ---------------------------------------------------------------------------------------------
# A chat template that reads the date: the manifest and replay say so


class _DatedFake(FakeEngine):
    """The fake engine as a model whose template wrote the day into its prompts (Llama 3.x)."""

    def chat_template(self) -> dict:
        return {"sha256": "0" * 64, "system_role": "kept", "thinking_template": False, "enable_thinking": False,
                "reads_date": True, "date_read": "2026-11-23"}


def test_a_template_that_reads_the_date_is_recorded_and_replay_says_so(run_cli, tmp_path, monkeypatch):
    monkeypatch.setattr(engine_pkg, "create_engine", lambda name, model_path, **kw: _DatedFake(model_name="fake-model"))
    result = run_cli("run", "--sample-feeds", "--engine", "fake", "--out", tmp_path, "--date", DAY)
    assert result.exit_code == 0, describe(result)
    manifest_path = next((tmp_path / ".digest" / "manifests").glob("*.json"))
    recorded = json.loads(manifest_path.read_text())["engine"]["chat_template"]
    assert recorded["reads_date"] is True and recorded["date_read"] == "2026-11-23"
    again = run_cli("replay", manifest_path)
    assert again.exit_code == 0, describe(again)
    assert "writes the day it runs on into the prompt" in again.stderr and "2026-11-23" in again.stderr
