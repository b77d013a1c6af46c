"""Chat prompts through the model's own chat template (GGUF metadata `tokenizer.chat_template`).

Both real engines format prompts here, so that the same messages give the same prompt text.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from ..errors import ModelError
from .base import Message

TEMPLATE_KEY = "tokenizer.chat_template"


def chat_template(metadata: Mapping[str, str], model_label: str) -> str:
    template = metadata.get(TEMPLATE_KEY)
    if not template:
        raise ModelError(
            f"model {model_label} has no chat template ({TEMPLATE_KEY} is missing from its GGUF "
            "metadata): use an instruct model whose GGUF carries one"
        )
    return template


class ChatFormatter:
    """Formats messages with a Jinja2 chat template, as llama-cpp-python's own handler does."""

    def __init__(self, template: str, *, bos_token: str, eos_token: str):
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self._formatter = Jinja2ChatFormatter(template=template, eos_token=eos_token, bos_token=bos_token)

    def __call__(self, messages: Sequence[Message]) -> str:
        response = self._formatter(messages=[{"role": m.role, "content": m.content} for m in messages])
        return response.prompt
