"""The engine for OpenAI-compatible chat-completion servers: llama.cpp's llama-server, llama-cpp-python's
server, vLLM, Ollama. The model runs elsewhere (a GPU box, a cluster); digest keeps its prompts, its
seeds, its checks, its format and its manifest.

- Each request is one `POST {url}/chat/completions` with its own `seed`, temperature, top_p, top_k, min_p,
  repeat penalty, max_tokens and stop. Up to `concurrency` requests are in flight at once (0: all of
  them, so that the server's continuous batching sees the whole digest at once).
- A prediction's month and year: the request's GBNF grammar goes to the server where it takes one
  (`grammar` for llama.cpp's servers, `structured_outputs` for vLLM); elsewhere (Ollama, or `grammar =
  "none"`) the text is parsed and retried by the same quality checks as the local engines.
- Network, status and JSON failures go through digest's one HTTP client (digest.http), with its retries
  and backoff; what is left is one GenerationError line (exit 7). A server that cannot be reached at all
  when the engine starts is a ModelError (exit 5): there is no model.
- Thinking models: the server applies the template, so `enable_thinking` goes to it as
  `chat_template_kwargs` (llama.cpp's servers and vLLM read it). Its reasoning, whether sent apart
  (`reasoning_content`, as llama-server and vLLM do with a reasoning parser) or as `<think>...</think>`
  at the start of the content, is never part of the text; its tokens are counted (the server's
  `reasoning_tokens` where it gives them, else one an event of a stream, else an estimate by length).
- Whether the same seed gives the same bytes is the server's business: `describe()` records what the
  server says about itself for the manifest, and docs/models.md has what was measured.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Sequence
from urllib.parse import urlsplit, urlunsplit

from .. import http
from ..facts import guard_gbnf
from ..errors import GenerationError, ModelError
from .base import (Engine, Generation, Progress, ProgressCallback, Request, Result, Stats, check_unique_keys)
from .chat import THINK_CLOSE, TemplateTraits
from .thinking import split_thinking

GRAMMAR_MODES = ("auto", "llama", "vllm", "none")


@dataclass(frozen=True)
class ServerOptions:
    url: str
    model: str = ""  # the server's model id; empty: the only one it lists
    api_key_env: str = ""  # the name of an environment variable holding the key (never the key)
    concurrency: int = 0  # requests in flight at once; 0: all
    timeout: float = 300.0  # seconds one request may take in all
    retries: int = 2
    grammar: str = "auto"
    stream: bool = True  # streamed answers: the time to the first token is measured
    thinking: bool = False  # enable_thinking for the server's chat template
    thinking_tokens: int = 0  # a reasoning block's budget, on top of max_tokens, for a thinking model


def public_url(url: str) -> str:
    """The URL without user name, password, query or fragment: what a manifest may keep."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


def _server_root(base: str) -> str:
    """`http://host:port` of a base URL such as `http://host:port/v1`."""
    parts = urlsplit(base)
    return urlunsplit((parts.scheme, parts.netloc, "", "", ""))


def chat_body(request: Request, grammar_mode: str = "llama") -> dict:
    """One request as an OpenAI chat-completion body, with the sampling fields llama.cpp's servers and
    vLLM read besides OpenAI's own (`grammar_mode`: whose names to use for the repeat penalty and the
    grammar; "none" sends no grammar). No model id and no streaming flag: the caller adds those."""
    s = request.sampling
    body: dict = {
        "messages": [{"role": m.role, "content": m.content} for m in request.messages],
        "max_tokens": request.max_tokens,
        "seed": request.seed,
        "temperature": s.temperature,
        "top_k": s.top_k,
        "top_p": s.top_p,
        "min_p": s.min_p,
    }
    if grammar_mode == "vllm":
        body["repetition_penalty"] = s.repeat_penalty
    else:
        body.update(repeat_penalty=s.repeat_penalty, repeat_last_n=s.repeat_last_n)
    if request.stop:
        body["stop"] = list(request.stop)
    if request.grammar and grammar_mode == "llama":
        body["grammar"] = request.grammar
    elif request.guard is not None and grammar_mode == "llama":
        body["grammar"] = guard_gbnf(request.guard)  # the fact guard, as the grammar it can take
    elif request.grammar and grammar_mode == "vllm":
        body["structured_outputs"] = {"grammar": request.grammar}
    if request.ignore_eos:
        body["ignore_eos"] = True
    return body


@dataclass
class _Answer:
    text: str
    reason: str | None
    usage: dict
    reasoning: str = ""  # what the server sent apart as reasoning_content
    reasoning_events: int = 0  # stream events of reasoning_content
    content_events: list[int] | None = None  # for a stream: the text's length after each content event


def _reasoning_tokens(usage: dict) -> int | None:
    details = usage.get("completion_tokens_details")
    value = details.get("reasoning_tokens") if isinstance(details, dict) else None
    return int(value) if isinstance(value, int) and value >= 0 else None


def _read_answer(answer, where: str) -> _Answer:
    """The text, finish reason and usage of a chat completion."""
    try:
        choice = answer["choices"][0]
        message = choice["message"]
        text = message["content"]
        reasoning = message.get("reasoning_content") or ""
        if text is None and isinstance(reasoning, str) and reasoning:
            text = ""  # all of it went on reasoning
        if not isinstance(text, str):
            raise TypeError
    except (KeyError, IndexError, TypeError, AttributeError):
        raise GenerationError(f"{where} without a choices[0].message.content string") from None
    usage = answer.get("usage") if isinstance(answer.get("usage"), dict) else {}
    return _Answer(text, choice.get("finish_reason"), usage, reasoning if isinstance(reasoning, str) else "")


def _read_events(body: bytes, where: str) -> _Answer:
    """The text, finish reason and usage of a streamed chat completion: server-sent events, `data: {json}`
    lines ending with `data: [DONE]`. Without usage in the stream, each event with text counts as one
    token (llama.cpp's servers and vLLM send one token an event)."""
    parts: list[str] = []
    reasoning: list[str] = []
    ends: list[int] = []
    reason, usage, events, done = None, {}, 0, False
    for line in body.decode("utf-8", errors="replace").splitlines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            done = True
            break
        try:
            event = json.loads(data)
        except json.JSONDecodeError:
            raise GenerationError(f"{where} with an event that is not JSON: {data[:80]!r}") from None
        if isinstance(event, dict) and isinstance(event.get("usage"), dict):
            usage = event["usage"]
        for choice in (event.get("choices") or []) if isinstance(event, dict) else []:
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str) and delta["content"]:
                parts.append(delta["content"])
                ends.append((ends[-1] if ends else 0) + len(delta["content"]))
                events += 1
            if isinstance(delta.get("reasoning_content"), str) and delta["reasoning_content"]:
                reasoning.append(delta["reasoning_content"])
                events += 1
            reason = choice.get("finish_reason") or reason
    if not done:
        raise GenerationError(f"{where} with a stream that stopped before its end (no 'data: [DONE]')")
    if not usage.get("completion_tokens"):
        usage = {**usage, "completion_tokens": events}
    return _Answer("".join(parts), reason, usage, "".join(reasoning), len(reasoning), ends)


def _thinking_tokens(answer: _Answer, block_end: int) -> int:
    """The tokens a reasoning block took: the server's own count where it gives one; else, for a
    stream, one an event (reasoning events, and content events up to the end of a `<think>` block at
    `block_end` characters of the content); else the block's share of the tokens by length."""
    counted = _reasoning_tokens(answer.usage)
    if counted is not None:
        return counted
    total = int(answer.usage.get("completion_tokens") or 0)
    if answer.content_events is not None:
        starts = [0, *answer.content_events[:-1]] if answer.content_events else []
        return answer.reasoning_events + sum(1 for start in starts if start < block_end)
    length = len(answer.reasoning) + block_end
    whole = len(answer.reasoning) + len(answer.text)
    return round(total * length / whole) if whole else 0


class OpenAIEngine(Engine):
    name = "openai"

    def __init__(self, options: ServerOptions, *, thinking_family: bool = False):
        """`thinking_family`: the model registry says the model thinks (for a server that does not show
        its template: TemplateTraits.of)."""
        self.thinking_family = thinking_family
        if options.grammar not in GRAMMAR_MODES:
            raise ModelError(f"[model] grammar = {options.grammar!r}: use one of {', '.join(GRAMMAR_MODES)}")
        self.options = options
        self.base = options.url.rstrip("/")
        self.headers = {}
        if options.api_key_env:
            key = os.environ.get(options.api_key_env)
            if not key:
                raise ModelError(f"[model] api_key_env names ${options.api_key_env}, which is not set")
            self.headers["Authorization"] = f"Bearer {key}"
        try:
            models = http.get_json(f"{self.base}/models", headers=self.headers, timeout=min(options.timeout, 30.0),
                                   retries=options.retries)
        except http.HTTPFailure as exc:
            raise ModelError(f"no model server at {public_url(self.base)}: {exc}") from None
        try:
            ids = [m["id"] for m in models["data"]]
        except (KeyError, TypeError):
            raise ModelError(f"{public_url(self.base)}/models did not answer with a model list ({{'data': [{{'id': ...}}]}})") from None
        if options.model:
            if ids and options.model not in ids:
                raise ModelError(f"the server at {public_url(self.base)} has no model '{options.model}' (it lists: {', '.join(ids)})")
            self.model_id = options.model
        elif len(ids) == 1:
            self.model_id = ids[0]
        else:
            raise ModelError(f"the server at {public_url(self.base)} lists {len(ids)} models ({', '.join(ids) or 'none'}): "
                             "set [model] name to one of them")
        self.server = {"url": public_url(self.base), "model_id": self.model_id, "models": models}
        root = _server_root(self.base)
        for path, key in (("/props", "props"), ("/version", "version"), ("/api/version", "ollama_version")):
            answer = self._probe(root + path)
            if answer is not None:
                self.server[key] = answer
        self.grammar_mode = options.grammar if options.grammar != "auto" else self._detect_grammar()
        self.server["grammar"] = self.grammar_mode
        # llama.cpp's servers take the fact guard as a grammar (digest.facts.guard_gbnf); the rest of
        # prevention needs the model's own state, which a server does not show.
        self.prevents = frozenset({"guard"}) if self.grammar_mode == "llama" else frozenset()

    # -- talking to the server ------------------------------------------------------------------

    def _probe(self, url: str) -> dict | None:
        """What a server tells about itself at `url`, or None where it has no such page."""
        try:
            answer = http.get_json(url, headers=self.headers, timeout=10.0, retries=0)
        except http.HTTPFailure:
            return None
        if not isinstance(answer, dict):
            return None
        # llama-server's /props carries its whole default settings: keep what identifies it.
        keep = ("build_info", "model_path", "total_slots", "n_ctx", "version", "chat_template")
        return {k: v for k, v in answer.items() if k in keep} if "default_generation_settings" in answer else answer

    def _detect_grammar(self) -> str:
        if "props" in self.server:
            return "llama"  # llama-server
        if "ollama_version" in self.server:
            return "none"  # Ollama takes a JSON schema, not a grammar
        if "version" in self.server:
            return "vllm"
        owned = [m.get("owned_by") for m in self.server["models"].get("data", []) if isinstance(m, dict)]
        if "llamacpp" in owned or "me" in owned:
            return "llama"  # llama-cpp-python's server
        return "none"

    @property
    def traits(self) -> TemplateTraits:
        """The template's traits, where the server shows it (llama-server's /props); elsewhere those of a
        template digest cannot see (a thinking one where the registry says so or thinking is asked for:
        a model that reasons whatever it is told, as the DeepSeek-R1 distills, needs one of them)."""
        template = (self.server.get("props") or {}).get("chat_template")
        return TemplateTraits.of(template if isinstance(template, str) else None, thinking=self.options.thinking,
                                 thinking_tokens=self.options.thinking_tokens, family=self.thinking_family)

    @property
    def thinking_budget(self) -> int:
        """The reasoning budget added to each request's max_tokens (TemplateTraits.budget)."""
        return self.traits.budget

    def payload(self, request: Request) -> dict:
        body = {"model": self.model_id, **chat_body(request, self.grammar_mode), "stream": self.options.stream}
        body["max_tokens"] = request.max_tokens + self.thinking_budget
        if self.grammar_mode in ("llama", "vllm"):
            body["chat_template_kwargs"] = {"enable_thinking": self.options.thinking}
        if self.grammar_mode == "llama":
            # llama-server reuses a slot's cached prompt by default, so a section's bits would depend on
            # what that slot served before (measured: a replay on the same server differed); off, every
            # prompt is read whole, the same on every run.
            body["cache_prompt"] = False
        if self.options.stream:
            body["stream_options"] = {"include_usage": True}  # the token counts, in the last event
        return body

    def _one(self, request: Request) -> Result:
        started = time.perf_counter()
        url = f"{self.base}/chat/completions"
        where = f"{public_url(url)} answered section '{request.key}'"
        first_token = None
        try:
            if self.options.stream:
                response = http.post(url, self.payload(request), headers={**self.headers, "Accept": "text/event-stream"},
                                     timeout=self.options.timeout, retries=self.options.retries)
                answer = _read_events(response.body, where)
                first_token = response.first_byte_seconds
            else:
                answer = _read_answer(http.post_json(url, self.payload(request), headers=self.headers,
                                                     timeout=self.options.timeout, retries=self.options.retries),
                                      where)
        except http.HTTPFailure as exc:
            raise GenerationError(f"section '{request.key}': {exc}") from None
        split = split_thinking(answer.text)
        reason = "length" if answer.reason == "length" else "stop"
        block_end = 0
        if split.thought is not None:
            close = answer.text.find(THINK_CLOSE)
            block_end = len(answer.text) if close < 0 else close + len(THINK_CLOSE)
        thinking = _thinking_tokens(answer, block_end) if (answer.reasoning or split.thought is not None) else 0
        if not split.closed or (answer.reasoning and not split.answer.strip() and reason == "length"):
            reason = "thinking"  # the budget ran out inside the reasoning
        return Result(key=request.key, text="" if reason == "thinking" else split.answer.strip(),
                      prompt_tokens=int(answer.usage.get("prompt_tokens") or 0),
                      completion_tokens=int(answer.usage.get("completion_tokens") or 0),
                      finish_reason=reason, seconds=time.perf_counter() - started,
                      first_token_seconds=first_token, thinking_tokens=thinking)

    # -- the Engine interface -----------------------------------------------------------------

    @property
    def model_name(self) -> str:
        name = self.model_id.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
        return name[:-5] if name.lower().endswith(".gguf") else name

    def describe(self) -> dict:
        return dict(self.server)

    def generate(self, requests: Sequence[Request], progress: ProgressCallback | None = None) -> Generation:
        check_unique_keys(requests)
        started = time.perf_counter()
        stats = Stats(requests=len(requests))
        if not requests:
            return Generation([], stats)
        results: dict[str, Result] = {}
        workers = min(self.options.concurrency or len(requests), len(requests))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="digest-openai")
        try:
            pending: set[Future] = {pool.submit(self._one, r) for r in requests}
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    result = future.result()  # the first failure ends the run
                    results[result.key] = result
                    stats.add_unbatched(result)
                    if progress:
                        progress(Progress(len(results), len(requests), stats.completion_tokens,
                                          time.perf_counter() - started, result))
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        stats.wall_seconds = time.perf_counter() - started
        return Generation([results[r.key] for r in requests], stats)
