"""Chat templates: one piece of code renders conversations for serving *and* for training.

Serving renders the prompt here and streams a raw completion from llama.cpp, so the tokens the
sleep cycle trains on are exactly the tokens the model sees when it answers. A GGUF's own
`tokenizer.chat_template` (Jinja) is used when present; otherwise a built-in format per
architecture (the default Gemma base model ships none).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

Message = dict[str, str]


def _gemma(messages: list[Message], add_generation_prompt: bool) -> str:
    # Gemma has no system role: the system prompt is folded into the first user turn.
    out, system = [], ""
    for m in messages:
        if m["role"] == "system":
            system = m["content"].strip()
            continue
        role = "model" if m["role"] == "assistant" else "user"
        content = m["content"].strip()
        if role == "user" and system:
            content, system = f"{system}\n\n{content}", ""
        out.append(f"<start_of_turn>{role}\n{content}<end_of_turn>\n")
    if add_generation_prompt:
        out.append("<start_of_turn>model\n")
    return "".join(out)


def _chatml(messages: list[Message], add_generation_prompt: bool) -> str:
    out = [f"<|im_start|>{m['role']}\n{m['content'].strip()}<|im_end|>\n" for m in messages]
    if add_generation_prompt:
        out.append("<|im_start|>assistant\n")
    return "".join(out)


def _llama3(messages: list[Message], add_generation_prompt: bool) -> str:
    out = [f"<|start_header_id|>{m['role']}<|end_header_id|>\n\n{m['content'].strip()}<|eot_id|>" for m in messages]
    if add_generation_prompt:
        out.append("<|start_header_id|>assistant<|end_header_id|>\n\n")
    return "".join(out)


_BUILTIN: dict[str, tuple[Callable[[list[Message], bool], str], list[str]]] = {
    "gemma": (_gemma, ["<end_of_turn>"]),
    "chatml": (_chatml, ["<|im_end|>"]),
    "llama3": (_llama3, ["<|eot_id|>"]),
}


@dataclass
class ChatTemplate:
    """Renders messages to prompt text. `stop` ends a reply; `name` says which format is used."""

    name: str
    stop: list[str]
    _render: Callable[[list[Message], bool], str]

    def render(self, messages: list[Message], add_generation_prompt: bool = True) -> str:
        """Prompt text (without BOS: the tokenizer adds it) for `messages`."""
        return self._render(messages, add_generation_prompt)

    def spans(self, messages: list[Message]) -> list[tuple[str, bool]]:
        """Split the rendered conversation into (text, is_assistant) pieces for training.

        Each assistant piece is the reply plus the end-of-turn marker, so the model also learns
        to stop. Derived from `render` alone, so it holds for Jinja templates too.
        """
        pieces: list[tuple[str, bool]] = []
        done = ""
        for i, m in enumerate(messages):
            if m["role"] != "assistant":
                continue
            prefix = self.render(messages[:i], add_generation_prompt=True)
            full = self.render(messages[: i + 1], add_generation_prompt=False)
            if not (prefix.startswith(done) and full.startswith(prefix)):
                raise ValueError(f"chat template '{self.name}' does not render incrementally")
            if len(prefix) > len(done):
                pieces.append((prefix[len(done) :], False))
            pieces.append((full[len(prefix) :], True))
            done = full
        rest = self.render(messages, add_generation_prompt=False)
        if len(rest) > len(done):
            pieces.append((rest[len(done) :], False))
        return pieces


def _jinja(source: str, bos: str, eos: str) -> Callable[[list[Message], bool], str]:
    import jinja2  # deferred: only GGUFs that carry their own template need it
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)

    def raise_exception(message: str) -> None:
        raise ValueError(message)

    template = env.from_string(source)

    def render(messages: list[Message], add_generation_prompt: bool) -> str:
        text = template.render(
            messages=messages,
            add_generation_prompt=add_generation_prompt,
            bos_token=bos,
            eos_token=eos,
            raise_exception=raise_exception,
        )
        # llama.cpp adds BOS itself when tokenizing; a template that writes it would double it.
        return text[len(bos) :] if bos and text.startswith(bos) else text

    return render


def template_for(
    arch: str,
    chat_template: str | None = None,
    *,
    bos: str = "",
    eos: str = "",
    has_token: Callable[[str], bool] | None = None,
) -> ChatTemplate:
    """The template for a model: its own Jinja template if it has one, else a built-in."""
    if chat_template:
        stop = [eos] if eos else []
        for marker in ("<end_of_turn>", "<|im_end|>", "<|eot_id|>"):
            if marker in chat_template and marker not in stop:
                stop.append(marker)
        return ChatTemplate("gguf", stop, _jinja(chat_template, bos, eos))
    if arch.startswith("gemma"):
        name = "gemma"
    elif arch == "llama" and has_token is not None and has_token("<|start_header_id|>"):
        name = "llama3"
    else:
        name = "chatml"
    render, stop = _BUILTIN[name]
    # A GGUF without a chat template is almost always a base model, which rarely emits its
    # end-of-turn token and rambles on into invented turns: end its replies at the line break.
    return ChatTemplate(name, [*stop, "\n"], render)
