"""Chat prompts through the model's own chat template (GGUF metadata `tokenizer.chat_template`).

Both real engines format prompts here, so that the same messages give the same prompt text.

Templates differ by family, and the formatter irons out what digest's prompts need:
- A template with no system role (Gemma 2 raises "System role not supported"; others drop the
  message) gets the system prompt folded into the first user turn, as the families' own templates
  do where they fold it themselves (Gemma 3, Mistral). Which way a template goes is found once, by
  rendering a probe conversation, never by its name.
- A template that takes `enable_thinking` (Qwen3, SmolLM3) is given the engine's `thinking` setting
  (off by default), so a thinking model answers without a reasoning block unless asked.
- A template that reads the clock (Llama 3.x writes today's date into its system header through
  `strftime_now`) is noted (`reads_date`), so that the manifest and replay can say that the prompt
  depends on the day it was made.
- A template whose Jinja fails (a syntax error, an exception it raises on our roles) is one
  ModelError line naming the model and the template's message (exit 5), never a traceback.
- A GGUF without a template (Gemma 3 270M, a base model), or one the user overrides: `chat_format`
  ([model] chat_format, --chat-format, the registry entry's) names one of llama.cpp's built-in
  templates (chatml, gemma, llama3, ...), rendered by llama.cpp itself (`llama_chat_apply_template`),
  or a Jinja file, rendered as a GGUF's template is (`template_source`).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path
from datetime import datetime
from typing import Mapping, Sequence

from ..errors import ModelError
from .base import Message

TEMPLATE_KEY = "tokenizer.chat_template"
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"

# The probe conversation: a system prompt the rendered text must contain if the template keeps it.
_PROBE_SYSTEM = "digest-probe-system-8d1c"
_PROBE_USER = "digest-probe-user-4b7e"


@dataclass(frozen=True)
class TemplateTraits:
    """What a chat template does about thinking and system turns, found once (`of`), for every engine:
    the batching and sequential engines from the GGUF's template, the openai engine from the template a
    server shows (or none), the fake engine as a template that cannot be told not to think."""

    thinks: bool = False  # a thinking family: its template writes or strips reasoning blocks, or takes enable_thinking
    takes_enable_thinking: bool = False  # the template can be told (`enable_thinking`) whether to think
    keeps_system: bool = True  # a system turn stays one (else it is folded into the first user turn)
    thinking: bool = False  # what `enable_thinking` is given: [model] thinking
    thinking_tokens: int = 0  # the reasoning budget asked for: [model] thinking_tokens

    @classmethod
    def of(cls, template: str | None, *, thinking: bool = False, thinking_tokens: int = 0, family: bool = False,
           keeps_system: bool = True) -> "TemplateTraits":
        """The traits of `template`; None: a template digest cannot see (a server's that it does not
        show), which thinks where the registry says its family does (`family`) or thinking is asked
        for, and is taken to be told by `enable_thinking`."""
        if template is None:
            return cls(family or thinking, True, keeps_system, thinking, thinking_tokens)
        marked = THINK_OPEN in template or THINK_CLOSE in template or "enable_thinking" in template
        return cls(marked or family, "enable_thinking" in template, keeps_system, thinking, thinking_tokens)

    @property
    def will_think(self) -> bool:
        """A thinking template that will reason: asked to, or one that cannot be told not to."""
        return self.thinks and (self.thinking or not self.takes_enable_thinking)

    @property
    def budget(self) -> int:
        """The reasoning budget an engine reserves beside max_tokens: `thinking_tokens` for a template
        that will reason, else 0 (a block then counts against max_tokens; no context is reserved for
        one that will not come)."""
        return self.thinking_tokens if self.will_think else 0


def chat_template(metadata: Mapping[str, str], model_label: str) -> str:
    template = metadata.get(TEMPLATE_KEY)
    if not template:
        raise ModelError(
            f"model {model_label} has no chat template ({TEMPLATE_KEY} is missing from its GGUF "
            "metadata): name one with --chat-format ([model] chat_format: a llama.cpp built-in such as "
            "chatml or gemma, or a Jinja file), or use an instruct model whose GGUF carries one"
        )
    return template


@functools.lru_cache(maxsize=1)
def builtin_templates() -> tuple[str, ...]:
    """The names of llama.cpp's built-in chat templates (`llama_chat_builtin_templates`)."""
    import llama_cpp

    n = llama_cpp.llama_chat_builtin_templates(None, 0)
    names = (ctypes.c_char_p * n)()
    llama_cpp.llama_chat_builtin_templates(names, n)
    return tuple(name.decode("utf-8") for name in names)


def is_template_file(value: str) -> bool:
    """Whether a chat_format is a Jinja file's path rather than a built-in's name: it has a folder
    in it or a Jinja suffix (the built-ins' names have neither: chatml, granite-4.0, mistral-v7)."""
    return "/" in value or "\\" in value or value.endswith((".jinja", ".jinja2", ".j2"))


@dataclass(frozen=True)
class TemplateSource:
    """Which template writes the prompts: the GGUF's, a llama.cpp built-in (`text` is its name) or a
    Jinja file's text; `chat_format` is what named it ("" for the GGUF's own)."""

    text: str
    builtin: bool = False
    chat_format: str = ""


def template_source(metadata: Mapping[str, str], model_label: str, chat_format: str = "") -> TemplateSource:
    """The template of a model: `chat_format` where one is named (it overrides the GGUF's), else the
    GGUF's own. An unknown name, or a file that cannot be read, is one ModelError line (exit 5)."""
    if not chat_format:
        return TemplateSource(chat_template(metadata, model_label))
    if is_template_file(chat_format):
        try:
            text = Path(chat_format).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ModelError(f"chat format {chat_format}: cannot read the Jinja template: "
                             f"{_one_line(exc)}") from None
        return TemplateSource(text, chat_format=chat_format)
    if chat_format not in builtin_templates():
        raise ModelError(f"unknown chat format '{chat_format}' for model {model_label}: give the name of one of "
                         f"llama.cpp's built-in templates ({', '.join(builtin_templates())}) or the path of a "
                         "Jinja file")
    return TemplateSource(chat_format, builtin=True, chat_format=chat_format)


def apply_builtin(name: str, messages: Sequence[Message]) -> str:
    """`messages` through llama.cpp's built-in template `name`, with the assistant turn opened."""
    import llama_cpp

    chat = (llama_cpp.llama_chat_message * len(messages))()
    texts = [(m.role.encode("utf-8"), m.content.encode("utf-8")) for m in messages]  # alive while C reads them
    for item, (role, content) in zip(chat, texts):
        item.role, item.content = role, content
    size = 256 + 2 * sum(len(role) + len(content) for role, content in texts)
    for _ in range(2):
        buffer = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_chat_apply_template(name.encode("utf-8"), chat, len(messages), True, buffer, size)
        if n < 0:
            raise ModelError(f"llama.cpp's built-in chat template '{name}' fails on digest's prompt")
        if n <= size:
            return buffer.raw[:n].decode("utf-8")
        size = n
    raise ModelError(f"llama.cpp's built-in chat template '{name}' gives no stable length")  # pragma: no cover


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:199] + "…"


def fold_system(messages: Sequence[Message]) -> tuple[Message, ...]:
    """The conversation without system turns: their text goes before the first user turn's."""
    system = "\n\n".join(m.content for m in messages if m.role == "system")
    rest = [m for m in messages if m.role != "system"]
    if not system:
        return tuple(rest)
    for i, message in enumerate(rest):
        if message.role == "user":
            rest[i] = Message("user", f"{system}\n\n{message.content}")
            return tuple(rest)
    return (Message("user", system), *rest)


class ChatFormatter:
    """Formats messages with a Jinja2 chat template, as llama-cpp-python's own handler does, or with
    one of llama.cpp's built-in templates (`source.builtin`)."""

    def __init__(self, template: "str | TemplateSource", *, bos_token: str, eos_token: str, model_label: str = "model",
                 thinking: bool = False, thinking_tokens: int = 0, thinking_family: bool = False,
                 add_bos: bool = False):
        """`thinking`, `thinking_tokens`, `thinking_family`: see TemplateTraits.of (`family`). `add_bos`:
        the model's vocabulary wants a BOS token first, which a built-in template does not write (a
        Jinja template writes `bos_token` itself), so it goes before a built-in's text."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.source = template if isinstance(template, TemplateSource) else TemplateSource(template)
        self.template = self.source.text
        self.model_label = model_label
        self.bos_token, self.eos_token = bos_token, eos_token
        self.thinking = thinking
        self.reads_date = False
        self.date_read: str | None = None  # the day it read, last time
        self._bos_first = bos_token if add_bos and self.source.builtin else ""
        self._formatter = None
        if not self.source.builtin:
            try:
                self._formatter = Jinja2ChatFormatter(template=self.template, eos_token=eos_token, bos_token=bos_token)
            except Exception as exc:  # jinja2's TemplateSyntaxError, or anything else its parser raises
                raise ModelError(f"model {model_label}: {self._named} is not valid Jinja: {_one_line(exc)}") from None
            # An instance attribute, so the template's strftime_now is this one: it notes that the template
            # read the clock (and reads it as llama-cpp-python does).
            clock = self._formatter.strftime_now

            def strftime_now(fmt: str) -> str:
                self.reads_date = True
                self.date_read = datetime.now().date().isoformat()
                return clock(fmt)

            self._formatter.strftime_now = strftime_now
        # Does the template keep a system turn? Render one and look for it.
        probe = (Message("system", _PROBE_SYSTEM), Message("user", _PROBE_USER))
        try:
            rendered: str | None = self._render(probe)
        except ModelError:
            rendered = None
        kept = rendered is not None and _PROBE_SYSTEM in rendered
        # (A built-in's name is no template text: its thinking is the registry's, `thinking_family`.)
        self.traits = TemplateTraits.of("" if self.source.builtin else self.template, thinking=thinking,
                                        thinking_tokens=thinking_tokens, family=thinking_family, keeps_system=kept)
        # What the manifest records of the template: the sha256 of its text, and for a built-in (which has
        # none digest can read) of what it writes for the probe conversation, which changes with it.
        hashed = self.template
        if self.source.builtin:
            hashed = rendered if rendered is not None else self._render(probe)  # (this raises its error)
        self.sha256 = hashlib.sha256(hashed.encode("utf-8")).hexdigest()

    @property
    def _named(self) -> str:
        """The template as an error line names it."""
        return f"chat format {self.source.chat_format}" if self.source.chat_format else "its chat template"

    def _render(self, messages: Sequence[Message]) -> str:
        if self.source.builtin:
            return self._bos_first + apply_builtin(self.template, messages)
        try:
            response = self._formatter(messages=[{"role": m.role, "content": m.content} for m in messages],
                                       enable_thinking=self.thinking)
        except Exception as exc:  # raise_exception's ValueError, jinja2's errors, a template's own bugs
            raise ModelError(f"model {self.model_label}: {self._named} fails on digest's prompt: "
                             f"{_one_line(exc)}") from None
        return response.prompt

    def __call__(self, messages: Sequence[Message]) -> str:
        if not self.traits.keeps_system:
            messages = fold_system(messages)
        return self._render(messages)

    def opens_thinking(self, prompt: str) -> bool:
        """Whether `prompt` (this formatter's) ends inside a reasoning block the template opened (the
        DeepSeek-R1 distills' generation prompt ends with `<think>`): the answer then starts there."""
        return prompt.rstrip().endswith(THINK_OPEN)

    def describe(self) -> dict:
        """What the manifest records of the template and of what was done with it."""
        return {"sha256": self.sha256,
                **({"chat_format": self.source.chat_format, "builtin": self.source.builtin}
                   if self.source.chat_format else {}),
                "system_role": "kept" if self.traits.keeps_system else "folded into the first user turn",
                "thinking_template": self.traits.thinks, "enable_thinking": self.thinking, "reads_date": self.reads_date,
                **({"date_read": self.date_read} if self.reads_date else {})}
