"""llama.cpp's own tokenizer, for the training side.

Sleep tokenizes episodes with exactly the tokenizer that serves them (llama.cpp reading the
GGUF's vocabulary), so the tokens a LoRA is trained on are the tokens the model sees at chat
time. Loading only the vocabulary takes well under a second, against ~36 s for transformers'
GGUF tokenizer conversion on the default model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from assistant.errors import ModelError

if TYPE_CHECKING:
    from llama_cpp import Llama

    from models.templates import ChatTemplate


@dataclass
class Tokenizer:
    """Encode/decode with the vocabulary of one GGUF file."""

    _llama: "Llama"
    bos_id: int
    eos_id: int
    n_vocab: int

    @classmethod
    def from_gguf(cls, path: Path) -> "Tokenizer":
        """Load the vocabulary of `path` (no weights). Raises ModelError if it cannot be read."""
        import llama_cpp  # deferred: chat start-up never needs a second llama.cpp handle

        from models.runtime import _quiet_llama_logs

        # llama.cpp prints context warnings even with verbose=False; route them to logging.
        _quiet_llama_logs()

        path = Path(path)
        if not path.is_file():
            raise ModelError(f"{path} does not exist; check the path to the model file")
        try:
            llama = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)
        except (ValueError, RuntimeError) as err:
            raise ModelError(f"llama.cpp cannot read the vocabulary of {path} ({err}); check the model file") from None
        return cls(llama, llama.token_bos(), llama.token_eos(), llama.n_vocab())

    def encode(self, text: str, *, add_bos: bool, special: bool = True) -> list[int]:
        """Token ids of `text`. `special=True` parses control tokens like `<start_of_turn>`,
        as serving does for chat templates; pass False for untrusted user text."""
        return list(self._llama.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special))

    def decode(self, ids: Sequence[int], *, special: bool = False) -> str:
        """Text of `ids`; `special=True` also renders control tokens. Broken UTF-8 at the
        edges (a multi-byte character split across a cut) is replaced, not raised."""
        return self._llama.detokenize(list(ids), special=special).decode("utf-8", errors="replace")

    def chat_template(self) -> "ChatTemplate":
        """The chat template of the same GGUF (its own, or the built-in one of its architecture):
        what serving renders a conversation with, so training renders it the same way."""
        from models.runtime import template_of

        return template_of(self._llama)
