"""llama.cpp serving: the current generation, loaded lazily, streaming one reply at a time.

The prompt is rendered by `models.templates` (the same code the sleep cycle trains with) and
streamed as a raw completion. History is trimmed oldest-first to fit the context window; the
system prompt is always kept. One completion runs at a time (a lock), since a llama.cpp context
is not safe to share.
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Protocol

from assistant.config import ChatConfig, ModelConfig
from assistant.errors import ModelError
from models.templates import ChatTemplate, Message, template_for


class Runtime(Protocol):
    """What a chat session needs from a model. Fakes implement this in tests."""

    @property
    def generation(self) -> str:
        """Name of the model generation answering (recorded in each episode)."""
        ...

    def stream_chat(self, messages: list[Message], options: "ReplyOptions | None" = None) -> Iterator[str]:
        """Yield the reply to `messages` piece by piece; `options` (the API's per-request
        settings) overrides the configured sampling and receives the reply's counts.

        Raises:
            ModelError: the model cannot be loaded or the conversation cannot fit.
        """
        ...


@dataclass
class Sampling:
    temperature: float
    top_p: float
    top_k: int
    repeat_penalty: float
    max_tokens: int
    seed: int

    @classmethod
    def from_config(cls, chat: ChatConfig) -> "Sampling":
        return cls(chat.temperature, chat.top_p, chat.top_k, chat.repeat_penalty, chat.max_tokens, chat.seed)


@dataclass
class ReplyOptions:
    """One reply's settings where a caller overrides the configured sampling (None keeps the
    setting), and what the runtime reports back about the reply once it has streamed."""

    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    """Stop strings added to the template's own."""
    # Filled in by the runtime:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"
    """"stop" (end of turn or a stop string) or "length" (the max_tokens cap)."""

    def applied_to(self, sampling: Sampling) -> Sampling:
        given = {k: getattr(self, k) for k in ("temperature", "top_p", "max_tokens", "seed")}
        return replace(sampling, **{k: v for k, v in given.items() if v is not None})


_log_callback: Any = None


def _quiet_llama_logs() -> None:
    """Route llama.cpp's C-level log lines to Python logging instead of the terminal.

    Some warnings (e.g. about the sliding-window cache) bypass `verbose=False`; printed to
    stderr they would corrupt the TUI and the CLI's one-line error contract.
    """
    global _log_callback
    if _log_callback is not None:
        return
    import ctypes
    import logging

    import llama_cpp

    log = logging.getLogger("nightcap.llama")

    @llama_cpp.llama_log_callback
    def callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        if level == 4:  # GGML_LOG_LEVEL_ERROR in the ggml bundled with the pinned release
            log.error(text.decode("utf-8", "replace").rstrip())

    _log_callback = callback  # keep a reference: the C side holds only a pointer
    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))


_PARAMS_LOCK = threading.Lock()


def has_amx() -> bool:
    """Whether llama.cpp's CPU backend runs with Intel AMX (it says so in its system info)."""
    import llama_cpp

    return b"AMX_INT8 = 1" in llama_cpp.llama_print_system_info()


@contextlib.contextmanager
def plain_cpu_buffers() -> Iterator[None]:
    """Models loaded inside keep their weights in plain CPU buffers where the CPU has AMX.

    llama.cpp repacks weights into an AMX buffer on such CPUs, and its AMX matrix product
    crashes the process (a segmentation fault at the first completion) on the K-quant files
    Nightcap serves (ggml-org/llama.cpp#20824). llama-cpp-python has no argument for it, so the
    default model parameters it starts from are given `use_extra_bufts = False` for the load
    (which also turns off the CPU repack on those machines). Elsewhere nothing changes."""
    import llama_cpp.llama_cpp as native

    if not has_amx():
        yield
        return
    default = native.llama_model_default_params

    def plain() -> Any:
        params = default()
        params.use_extra_bufts = False
        return params

    with _PARAMS_LOCK:
        native.llama_model_default_params = plain
        try:
            yield
        finally:
            native.llama_model_default_params = default


def load_llama(path: Path, n_ctx: int = 2048, n_threads: int = 0, n_gpu_layers: int = 0, **kw: Any) -> Any:
    """Open a GGUF in llama.cpp with Nightcap's defaults. Raises ModelError on failure."""
    import llama_cpp  # deferred: the native library takes a moment to load

    _quiet_llama_logs()

    if not Path(path).is_file():
        raise ModelError(f"model file {path} is missing; run `nightcap models list` and `nightcap models use GEN`")
    if not llama_cpp.llama_supports_gpu_offload():
        n_gpu_layers = 0
    try:
        with plain_cpu_buffers():
            return llama_cpp.Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_threads=n_threads or max(1, (os.cpu_count() or 2)),
                n_gpu_layers=n_gpu_layers,
                verbose=False,
                **kw,
            )
    except (ValueError, RuntimeError, OSError) as err:
        raise ModelError(f"llama.cpp could not load {path} ({err}); try `nightcap models rollback`") from err


def template_of(llm: Any) -> ChatTemplate:
    """The chat template for a loaded llama.cpp model, from its GGUF metadata."""
    meta = llm.metadata or {}

    def token_text(tid: int) -> str:
        return llm.detokenize([tid], special=True).decode("utf-8", "replace") if tid >= 0 else ""

    def has_token(text: str) -> bool:
        ids = llm.tokenize(text.encode(), add_bos=False, special=True)
        return len(ids) == 1

    return template_for(
        meta.get("general.architecture", ""),
        meta.get("tokenizer.chat_template"),
        bos=token_text(llm.token_bos()),
        eos=token_text(llm.token_eos()),
        has_token=has_token,
    )


class LlamaRuntime:
    """Serves one GGUF through llama-cpp-python."""

    def __init__(self, gguf: Path, generation: str, model: ModelConfig, chat: ChatConfig) -> None:
        self.gguf = Path(gguf)
        self.generation = generation
        self.model_cfg = model
        self.sampling = Sampling.from_config(chat)
        self._llm: Any = None
        self._template: ChatTemplate | None = None
        self._lock = threading.Lock()

    def load(self) -> None:
        """Load the model now (otherwise the first reply does)."""
        with self._lock:
            self._ensure()

    def _ensure(self) -> Any:
        if self._llm is None:
            self._llm = load_llama(
                self.gguf, self.model_cfg.n_ctx, self.model_cfg.n_threads, self.model_cfg.n_gpu_layers
            )
            self._template = template_of(self._llm)
        return self._llm

    @property
    def template(self) -> ChatTemplate:
        with self._lock:
            self._ensure()
        assert self._template is not None
        return self._template

    def _fit(self, llm: Any, messages: list[Message], max_tokens: int) -> tuple[str, int]:
        """Render `messages`, dropping the oldest turns until prompt + reply fit `n_ctx`; the
        prompt and its length in tokens."""
        assert self._template is not None
        budget = llm.n_ctx() - max_tokens
        system = [m for m in messages[:1] if m["role"] == "system"]
        turns = messages[len(system) :]
        while True:
            prompt = self._template.render(system + turns, add_generation_prompt=True)
            n = len(llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True))
            if n <= budget:
                return prompt, n
            if len(turns) <= 1:
                raise ModelError(
                    f"the message is too long for the model's context ({n} tokens, {budget} fit); "
                    "shorten it or raise model.n_ctx in config.toml"
                )
            # Drop the oldest exchange (user turn and the reply after it).
            turns = turns[2:] if len(turns) > 2 and turns[1]["role"] == "assistant" else turns[1:]

    def stream_chat(self, messages: list[Message], options: ReplyOptions | None = None) -> Iterator[str]:
        with self._lock:
            llm = self._ensure()
            s = options.applied_to(self.sampling) if options else self.sampling
            # A client may ask for more tokens than the context holds (many send 4096 by
            # default): history is trimmed to leave at most half the context for the reply, and
            # the reply gets whatever room the prompt leaves.
            prompt, n_prompt = self._fit(llm, messages, min(s.max_tokens, llm.n_ctx() // 2))
            s = replace(s, max_tokens=max(1, min(s.max_tokens, llm.n_ctx() - n_prompt)))
            stop = list(self._template.stop if self._template else []) + (options.stop if options else [])
            stream = llm.create_completion(
                prompt,
                max_tokens=s.max_tokens,
                temperature=s.temperature,
                top_p=s.top_p,
                top_k=s.top_k,
                repeat_penalty=s.repeat_penalty,
                seed=None if s.seed < 0 else s.seed,
                stop=stop or None,
                stream=True,
            )
            pieces: list[str] = []
            for chunk in stream:
                choice = chunk["choices"][0]
                text = choice["text"]
                if options is not None and choice.get("finish_reason"):
                    options.finish_reason = str(choice["finish_reason"])
                if text:
                    pieces.append(text)
                    yield text
            if options is not None:
                options.prompt_tokens = n_prompt
                options.completion_tokens = len(llm.tokenize("".join(pieces).encode("utf-8"), add_bos=False))

    def close(self) -> None:
        with self._lock:
            if self._llm is not None:
                self._llm.close()
                self._llm = None
