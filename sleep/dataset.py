"""Training examples: conversations rendered and tokenized exactly as serving sees them.

Serving renders a conversation with `models.templates` and tokenizes the prompt with llama.cpp's
tokenizer (BOS added once, special tokens parsed); the reply is what the model generated after
it. Training does the same: the template's `spans()` split the rendered text into prompt and
reply pieces, each piece is tokenized on its own and the pieces are concatenated, so the reply's
tokens start exactly where serving's generation starts. For the Gemma template this equals
tokenizing the whole text at once (checked in tests against the real tokenizer), because every
span boundary falls after a newline or a special token.

Loss is taken only on the assistant pieces (the reply and its end-of-turn marker). Episodes
longer than `max_seq_len` lose their oldest tokens, keeping BOS, as serving drops the oldest
turns first. Nothing here is written to disk: examples live in memory only.

Usage::

    examples = build_examples(episodes, template, tokenizer, system_prompt, max_seq_len=256)
    batch = collate(examples[:8])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Protocol, Sequence

from assistant.episode import Episode, Message, with_system
from models.templates import ChatTemplate

if TYPE_CHECKING:  # torch is imported lazily: `nightcap ask` must never pay for it
    import torch

IGNORE = -100
"""Label of a position without loss (the value torch's cross-entropy ignores)."""

KIND_EPISODE = "episode"
KIND_DREAM = "dream"
KIND_REPLAY = "replay"


class TokenizerLike(Protocol):
    """What the dataset needs from a tokenizer: llama.cpp's, or a fake in tests."""

    def encode(self, text: str, *, add_bos: bool, special: bool = True) -> list[int]: ...


@dataclass
class Example:
    """One training sequence. `labels[i]` is the token to predict at position i, or IGNORE."""

    input_ids: list[int]
    labels: list[int]
    weight: float = 1.0
    """Multiplies this example's mean cross-entropy (importance, dream or replay weight)."""
    kind: str = KIND_EPISODE
    """Where it came from: episode, dream, replay, ... (reports count by kind)."""
    source: str = ""
    """Id of the episode it was made from (never its content)."""
    lead: int = 0
    """How many of the first labelled tokens are the answer proper ("Lisbon." before the
    restatement of the fact); they weigh `lead_weight` each in the example's mean, the others 1."""
    lead_weight: float = 1.0
    rivals: tuple[int, ...] = ()
    """Tokens the answer must not start with: the first tokens of the night's other answers
    (`rival_tokens`). Their total probability at the answer's first position is pushed down
    with weight `rival_weight`, so that a question about one fact is not answered with another's
    value."""
    rival_weight: float = 0.0

    @property
    def first_label(self) -> int | None:
        """The first labelled token (the start of the answer), or None."""
        return next((t for t in self.labels if t != IGNORE), None)

    @property
    def n_labels(self) -> int:
        return sum(1 for t in self.labels if t != IGNORE)

    @property
    def label_mass(self) -> float:
        """What its labels weigh in all: each 1, the lead's `lead_weight` (as `collate` sets them)."""
        return self.n_labels + (self.lead_weight - 1.0) * self.lead

    def __len__(self) -> int:
        return len(self.input_ids)


def encode_spans(spans: Sequence[tuple[str, bool]], tokenizer: TokenizerLike) -> tuple[list[int], list[int], int]:
    """Tokenize (text, is_assistant) spans; returns input ids, labels and the BOS prefix length."""
    ids: list[int] = []
    labels: list[int] = []
    n_bos = 0
    for i, (text, is_assistant) in enumerate(spans):
        piece = tokenizer.encode(text, add_bos=i == 0, special=True)
        if i == 0:
            # What add_bos put in front (normally one token; zero for models without BOS).
            n_bos = len(piece) - len(tokenizer.encode(text, add_bos=False, special=True))
        ids += piece
        labels += piece if is_assistant else [IGNORE] * len(piece)
    if n_bos > 0:
        labels[:n_bos] = [IGNORE] * n_bos  # BOS is given, never predicted
    return ids, labels, max(n_bos, 0)


def truncate_left(ids: list[int], labels: list[int], max_len: int, keep: int = 0) -> tuple[list[int], list[int]]:
    """Drop the oldest tokens so at most `max_len` remain, keeping the first `keep` (BOS)."""
    if len(ids) <= max_len:
        return ids, labels
    tail = max_len - keep
    if tail <= 0:
        raise ValueError(f"max_seq_len {max_len} leaves no room after {keep} BOS token(s)")
    return ids[:keep] + ids[-tail:], [IGNORE] * keep + labels[-tail:]


def example_from_messages(
    messages: list[Message],
    template: ChatTemplate,
    tokenizer: TokenizerLike,
    *,
    max_seq_len: int,
    weight: float = 1.0,
    kind: str = KIND_EPISODE,
    source: str = "",
    lead: str = "",
    lead_weight: float = 1.0,
) -> Example | None:
    """One example from a conversation (system message first, as serving sends it), or None
    when nothing is left to learn (no assistant text, or a non-positive weight). `lead` is the
    start of the first reply that answers the question; its tokens weigh `lead_weight` each
    (when they are the reply's first tokens as tokenized in place)."""
    if weight <= 0:
        return None
    ids, labels, n_bos = encode_spans(template.spans(messages), tokenizer)
    ids, labels = truncate_left(ids, labels, max_seq_len, keep=n_bos)
    example = Example(ids, labels, float(weight), kind, source)
    if lead and lead_weight != 1.0:
        want = tokenizer.encode(lead, add_bos=False, special=False)
        first = next((i for i, t in enumerate(labels) if t != IGNORE), len(labels))
        if want and labels[first : first + len(want)] == want:
            example.lead, example.lead_weight = len(want), float(lead_weight)
    return example if example.n_labels > 0 else None


def build_examples(
    episodes: Iterable[Episode],
    template: ChatTemplate,
    tokenizer: TokenizerLike,
    system_prompt: str | None,
    max_seq_len: int,
) -> list[Example]:
    """Examples for the episodes' target messages (the correction replaces the reply), weighted
    by importance. `system_prompt` is prepended as serving does; None or "" leaves it out."""
    out: list[Example] = []
    for ep in episodes:
        messages = with_system(system_prompt, ep.target_messages())
        ex = example_from_messages(
            messages, template, tokenizer, max_seq_len=max_seq_len, weight=ep.importance, source=ep.id
        )
        if ex is not None:
            out.append(ex)
    return out


@dataclass
class Batch:
    """Right-padded tensors for a list of examples."""

    input_ids: "torch.Tensor"
    """[B, T] token ids; padding is `pad_id`."""
    attention_mask: "torch.Tensor"
    """[B, T] 1 for real tokens, 0 for padding."""
    labels: "torch.Tensor"
    """[B, T] targets, IGNORE on prompt tokens and padding."""
    weights: "torch.Tensor"
    """[B] float weight per example."""
    label_weights: "torch.Tensor"
    """[B, T] weight of each label within its example's mean (1, or the example's lead weight
    on its lead tokens; 0 where there is no label)."""
    n_tokens: int
    """Real (non-padding) tokens in the batch."""
    n_labels: int
    """Tokens that carry loss."""
    rivals: "torch.Tensor | None" = None
    """[B, K] each row's rival tokens (`Example.rivals`), padded with -1; None when no row has any."""
    rival_weights: "torch.Tensor | None" = None
    """[B] weight of each row's rival term (0 for rows without rivals)."""

    def to(self, device: Any) -> "Batch":
        return Batch(
            self.input_ids.to(device),
            self.attention_mask.to(device),
            self.labels.to(device),
            self.weights.to(device),
            self.label_weights.to(device),
            self.n_tokens,
            self.n_labels,
            None if self.rivals is None else self.rivals.to(device),
            None if self.rival_weights is None else self.rival_weights.to(device),
        )


def collate(examples: Sequence[Example], pad_id: int = 0) -> Batch:
    """Pad `examples` on the right to the longest one."""
    import torch  # deferred: see the module docstring

    if not examples:
        raise ValueError("cannot collate an empty batch")
    width = max(len(e) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e)
        ids[row, :n] = torch.tensor(e.input_ids, dtype=torch.long)
        labels[row, :n] = torch.tensor(e.labels, dtype=torch.long)
        mask[row, :n] = 1
    weights = torch.tensor([e.weight for e in examples], dtype=torch.float32)
    label_weights = (labels != IGNORE).float()
    for row, e in enumerate(examples):
        if e.lead > 0 and e.lead_weight != 1.0:
            at = (labels[row] != IGNORE).nonzero().flatten()[: e.lead]
            label_weights[row, at] = e.lead_weight
    rivals = rival_weights = None
    if any(e.rivals and e.rival_weight > 0 for e in examples):
        rivals = torch.full((len(examples), max(len(e.rivals) for e in examples)), -1, dtype=torch.long)
        for row, e in enumerate(examples):
            rivals[row, : len(e.rivals)] = torch.tensor(e.rivals, dtype=torch.long)
        rival_weights = torch.tensor([e.rival_weight if e.rivals else 0.0 for e in examples], dtype=torch.float32)
    return Batch(
        ids,
        mask,
        labels,
        weights,
        label_weights,
        sum(len(e) for e in examples),
        sum(e.n_labels for e in examples),
        rivals,
        rival_weights,
    )


def rival_tokens(examples: Sequence[Example], weight: float) -> None:
    """Give each example that leads with an answer (`lead` > 0) the first tokens of every other
    such answer of the night as rivals (its own first token excluded), at `weight`. No word
    list: the rivals are whatever the night's other answers start with."""
    if weight <= 0:
        return
    leads = [e for e in examples if e.lead > 0 and e.first_label is not None]
    firsts = {e.first_label for e in leads}
    for e in leads:
        e.rivals = tuple(sorted(t for t in firsts if t is not None and t != e.first_label))
        e.rival_weight = float(weight)


def weigh_by_tokens(examples: Sequence[Example]) -> None:
    """Scale each example's weight by its labelled tokens (lead tokens counted `lead_weight`
    times) over the mean of `examples`, so that the loss, a mean over each example's tokens,
    becomes a sum over every token of the night at one constant scale: a short answer no
    longer puts its example's whole weight on a few tokens, and a long one is not diluted."""
    sizes = [e.label_mass for e in examples]
    mean = sum(sizes) / len(sizes) if sizes else 0.0
    if mean <= 0:
        return
    for e, size in zip(examples, sizes):
        e.weight *= size / mean


def micro_batches(examples: Sequence[Example], max_tokens: int) -> list[list[Example]]:
    """Split a batch into pieces of at most `max_tokens` padded positions each (an example
    longer than that goes alone), grouping similar lengths to waste little on padding.
    Activation memory scales with the padded positions of one forward pass; the trainer adds
    the pieces' gradients, which is exact because the loss is a sum over examples."""
    order = sorted(examples, key=len, reverse=True)
    pieces: list[list[Example]] = []
    for e in order:
        # Sorted longest first, so the first example of a piece sets its padded width.
        if pieces and len(pieces[-1][0]) * (len(pieces[-1]) + 1) <= max_tokens:
            pieces[-1].append(e)
        else:
            pieces.append([e])
    return pieces
