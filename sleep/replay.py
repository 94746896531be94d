"""Foundational replay: the model rehearses what it already knows while it learns the day.

Before training, the pre-sleep model writes short continuations of built-in seed prompts (plain
text and chat questions on general topics; no user data, no outside corpus needed), optionally
joined by passages of a user-supplied foundational corpus. During training `KLReplay` adds, at
every step, the KL divergence from the frozen model (peft's disabled adapter) to the adapted
one on a few of those samples, at the continuation positions only. Keeping the distribution,
not just the sampled token, is what holds general knowledge in place.

The 262,144-word output head makes full logits costly, so `HeadKL` computes the KL and its
gradient chunk by chunk in the forward pass, the way `sleep.head_ce` does for cross-entropy.

The frozen side never changes during a night, so by default (`sleep.kl_top_k`) it is computed
once: `Teacher` keeps, for every replay position, the frozen model's `k` likeliest tokens with
their log-probabilities and the mass of all the others. Each step then needs neither the frozen
forward pass nor the frozen logits, and `HeadTopKL` takes the KL between the two distributions
coarsened to those `k` tokens plus one "everything else" bucket: a lower bound of the full KL
that is exact wherever the frozen model puts its mass on its top `k` (the samples are its own
greedy continuations, so it does). About half the cost of the exact term per step.
"""

from __future__ import annotations

import contextlib
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from assistant.stoppoints import stop_point
from sleep.dataset import IGNORE, KIND_REPLAY, Example, TokenizerLike, collate
from sleep.head_ce import fusable, keep_gradient, matmul_dtype, scaled_gradient
from sleep.loss import LMParts, labelled_hidden, lm_parts

KL_LOGIT_BUDGET = 1 << 23
"""Logits (rows x vocab) per chunk of the KL term: 32 MB in fp32. Every replay position is
labelled and the KL keeps five such buffers at once, so its chunks are smaller than the loss's."""

SEED_PROMPTS = [
    "The history of the Roman Empire",
    "Photosynthesis is the process by which",
    "The French Revolution began",
    "Water boils at",
    "The human heart has",
    "Mount Kilimanjaro is located in",
    "The theory of relativity",
    "A healthy breakfast usually includes",
    "The Pacific Ocean is",
    "Shakespeare wrote many plays, including",
    "The capital of Japan is",
    "Electric cars work by",
    "Honey bees live in",
    "The Great Wall of China",
    "In mathematics, a prime number is",
    "The speed of light is",
    "Penguins are birds that",
    "The Mona Lisa was painted by",
    "To bake bread, you need",
    "The Nile is the longest river",
    "DNA stands for",
    "The Moon orbits",
    "Football is played by two teams",
    "Volcanoes erupt when",
    "The piano is a musical instrument",
    "Antarctica is the coldest",
    "A triangle has three",
    "The Industrial Revolution started in",
    "Coffee is made from",
    "The largest planet in the solar system is",
    "Dolphins are mammals that",
    "Paris is famous for",
]
CHAT_PROMPTS = [
    "What is the capital of Italy?",
    "How many days are in a week?",
    "Who wrote Pride and Prejudice?",
    "What do plants need to grow?",
    "Give me a tip for sleeping better.",
    "What is the boiling point of water?",
    "Name a large animal that lives in Africa.",
    "What language is spoken in Mexico?",
    "How do I make a cup of tea?",
    "What is two plus three?",
    "Which planet is known as the red planet?",
    "What is the opposite of dark?",
]

MEMORY_PROMPTS = [
    "What do you remember about me?",
    "What have I told you about myself?",
    "What do you know about my family?",
    "What do you know about my home?",
    "What do you know about my work?",
    "What do you know about my plans?",
    "What do you know about the people in my life?",
    "What do you know about my habits?",
]
"""Questions about the user, for rehearsal: a slept model answers them from what earlier nights
taught it."""

Generate = Callable[[str, int], str]
"""Greedy-ish completion of a prompt by the pre-sleep model (llama.cpp in the cycle)."""


def replay_texts(
    generate: Generate, render_chat: Callable[[str], str] | None, n: int, max_tokens: int, corpus: str = ""
) -> list[tuple[str, str]]:
    """(prompt, continuation) pairs: `n` self-generated samples, then corpus passages. Chat
    questions (rendered by `render_chat`) are mixed in only when it is given."""
    order = list(SEED_PROMPTS)
    if render_chat is not None:
        # Interleave plain and chat prompts so a small `n` still gets both kinds.
        chats = [render_chat(q) for q in CHAT_PROMPTS]
        order = [x for pair in zip(SEED_PROMPTS, chats) for x in pair] + SEED_PROMPTS[len(chats) :]
    out = []
    for prompt in order[:n]:
        text = generate(prompt, max_tokens)
        if text.strip():
            out.append((prompt, text))
    for passage in corpus_passages(corpus):
        out.append(("", passage))
    return out


def rehearsal_texts(
    sample: Callable[[str, int, int], str], render_chat: Callable[[str], str], n: int, max_tokens: int
) -> list[tuple[str, str]]:
    """(prompt, reply) pairs: `n` replies the pre-sleep model samples (`sample(prompt, max_tokens,
    seed)`) to questions about its user. What earlier nights taught it comes back in them, and
    the KL term then keeps it in place while tonight's facts are learned: memories rehearsed
    from the model itself, since the logs they came from are gone. In memory only."""
    out = []
    for i in range(n):
        prompt = render_chat(MEMORY_PROMPTS[i % len(MEMORY_PROMPTS)])
        text = sample(prompt, max_tokens, i)
        if text.strip():
            out.append((prompt, text))
    return out


def corpus_passages(path: str, max_chars: int = 600, limit: int = 64) -> list[str]:
    """Paragraphs of a user-supplied foundational text file ("" for none)."""
    if not path:
        return []
    text = Path(path).expanduser().read_text(encoding="utf-8", errors="replace")
    paras = [p.strip() for p in text.split("\n\n") if len(p.strip()) > 40]
    return [p[:max_chars] for p in paras[:limit]]


def replay_example(prompt: str, text: str, tokenizer: TokenizerLike, max_len: int) -> Example | None:
    """An example whose labels are the continuation tokens (the prompt is context only); None
    when no continuation token is left to label."""
    head = tokenizer.encode(prompt, add_bos=True, special=True) if prompt else tokenizer.encode("", add_bos=True)
    tail = tokenizer.encode(text, add_bos=False, special=True)
    ids = (head + tail)[:max_len]
    labels = ([IGNORE] * len(head) + tail)[:max_len]
    return Example(ids, labels, 1.0, KIND_REPLAY, "replay") if any(t != IGNORE for t in labels[1:]) else None


def replay_examples(pairs: Sequence[tuple[str, str]], tokenizer: TokenizerLike, max_len: int) -> list[Example]:
    """The `replay_example` of each (prompt, continuation) pair that makes one."""
    made = (replay_example(prompt, text, tokenizer, max_len) for prompt, text in pairs)
    return [ex for ex in made if ex is not None]


class HeadKL(torch.autograd.Function):
    """Per-row KL(frozen || adapted) of the softcapped head's distributions, gradient fused.

    d KL / d z_adapted = softmax(z_adapted) - softmax(z_frozen); computed chunk by chunk in the
    forward pass so at most `chunk x vocab` logits exist at once and none are kept."""

    @staticmethod
    def forward(
        ctx: Any, hidden: torch.Tensor, frozen: torch.Tensor, weight: torch.Tensor, softcap: float | None, chunk: int
    ) -> torch.Tensor:
        n = hidden.shape[0]
        out = torch.empty(n, dtype=torch.float32, device=hidden.device)
        grad = torch.empty(hidden.shape, dtype=torch.float32, device=hidden.device) if hidden.requires_grad else None
        with torch.autocast(hidden.device.type, enabled=False), torch.no_grad():
            for i in range(0, n, chunk):
                za = (hidden[i : i + chunk].to(weight.dtype) @ weight.T).float()
                zf = (frozen[i : i + chunk].to(weight.dtype) @ weight.T).float()
                if softcap:
                    za.div_(softcap).tanh_()
                    capped = za.clone()
                    za.mul_(softcap)
                    zf.div_(softcap).tanh_().mul_(softcap)
                la, lf = torch.log_softmax(za, dim=1), torch.log_softmax(zf, dim=1)
                pf = lf.exp()
                out[i : i + chunk] = (pf * (lf - la)).sum(dim=1)
                if grad is None:
                    continue
                g = la.exp_().sub_(pf)
                if softcap:
                    g.mul_(capped.square_().neg_().add_(1.0))
                grad[i : i + chunk] = (g.to(weight.dtype) @ weight).float()
        keep_gradient(ctx, grad, hidden)
        return out

    @staticmethod
    def backward(ctx: Any, upstream: torch.Tensor) -> tuple[Any, ...]:
        return scaled_gradient(ctx, upstream), None, None, None, None


def kl_to_frozen(model: Any, parts: LMParts, examples: Sequence[Example]) -> torch.Tensor:
    """Mean per-token KL(frozen || adapted) over the labelled positions of `examples`."""
    batch = collate(examples).to(next(model.parameters()).device)
    with torch.no_grad(), model.disable_adapter():
        frozen = labelled_hidden(parts, batch)[0]
    hidden = labelled_hidden(parts, batch)[0]
    if not fusable(parts.head):
        raise TypeError("KL replay needs a frozen bias-free linear output head")
    weight = parts.head_weight(matmul_dtype(hidden.device))
    chunk = max(1, KL_LOGIT_BUDGET // weight.shape[0])
    return HeadKL.apply(hidden, frozen.detach(), weight, parts.softcap, chunk).mean()


class HeadTopKL(torch.autograd.Function):
    """Per-row KL(frozen || adapted) with the frozen distribution given as its top `k` tokens
    (`ids` [N, k], log-probabilities `logp` [N, k]) and the log-mass of the rest (`rest` [N]);
    the adapted one is coarsened the same way. Gradient fused, chunk by chunk, as in `HeadKL`:
    d KL / d z_j = p_a(j) - p_f(j) for the top tokens, p_a(j) * (1 - p_f(rest) / p_a(rest))
    for the others (their mass is matched, their shape left to the adapted model)."""

    @staticmethod
    def forward(
        ctx: Any,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        softcap: float | None,
        chunk: int,
        ids: torch.Tensor,
        logp: torch.Tensor,
        rest: torch.Tensor,
    ) -> torch.Tensor:
        n = hidden.shape[0]
        out = torch.empty(n, dtype=torch.float32, device=hidden.device)
        grad = torch.empty(hidden.shape, dtype=torch.float32, device=hidden.device) if hidden.requires_grad else None
        with torch.autocast(hidden.device.type, enabled=False), torch.no_grad():
            for i in range(0, n, chunk):
                top_ids, lf, lf_rest = ids[i : i + chunk], logp[i : i + chunk], rest[i : i + chunk]
                z = (hidden[i : i + chunk].to(weight.dtype) @ weight.T).float()
                capped = None
                if softcap:
                    z.div_(softcap).tanh_()
                    capped = z.clone() if grad is not None else None
                    z.mul_(softcap)
                # In place from here: each [chunk, vocab] pass is memory-bound.
                peak = z.amax(dim=1, keepdim=True)
                z.sub_(peak).exp_()
                z.div_(z.sum(dim=1, keepdim=True))  # p_a
                pa = z.gather(1, top_ids)
                pa_rest = (1.0 - pa.sum(dim=1)).clamp_min(1e-12)
                pf, pf_rest = lf.exp(), lf_rest.exp()
                out[i : i + chunk] = (pf * (lf - pa.clamp_min(1e-30).log())).sum(dim=1) + pf_rest * (
                    lf_rest - pa_rest.log()
                )
                if grad is None:
                    continue
                z.mul_((1.0 - pf_rest / pa_rest).unsqueeze(1))
                z.scatter_(1, top_ids, pa - pf)
                if capped is not None:
                    z.mul_(capped.square_().neg_().add_(1.0))
                grad[i : i + chunk] = (z.to(weight.dtype) @ weight).float()
        keep_gradient(ctx, grad, hidden)
        return out

    @staticmethod
    def backward(ctx: Any, upstream: torch.Tensor) -> tuple[Any, ...]:
        return scaled_gradient(ctx, upstream), None, None, None, None, None, None


@dataclass
class Teacher:
    """The frozen model's distribution at the labelled positions of one replay example: its `k`
    likeliest tokens (`ids`), their log-probabilities (`logp`) and the log-mass of the rest."""

    ids: torch.Tensor
    logp: torch.Tensor
    rest: torch.Tensor


def teacher(model: Any, parts: LMParts, example: Example, k: int) -> Teacher:
    """The frozen model's top-`k` distribution at every labelled position of `example` (a model
    without an adapter yet is its own frozen copy)."""
    batch = collate([example]).to(next(model.parameters()).device)
    frozen = model.disable_adapter() if hasattr(model, "disable_adapter") else contextlib.nullcontext()
    with torch.no_grad(), frozen:
        hidden = labelled_hidden(parts, batch)[0]
        weight = parts.head_weight(matmul_dtype(hidden.device))
        z = (hidden.to(weight.dtype) @ weight.T).float()
        if parts.softcap:
            z = torch.tanh(z / parts.softcap) * parts.softcap
        logp, ids = torch.log_softmax(z, dim=1).topk(min(k, z.shape[1]), dim=1)
        rest = torch.log1p(-logp.exp().sum(dim=1).clamp(max=1.0 - 1e-7))
    return Teacher(ids, logp, rest)


def kl_to_teacher(model: Any, parts: LMParts, examples: Sequence[Example], teachers: Sequence[Teacher]) -> torch.Tensor:
    """Mean per-token top-k KL(frozen || adapted) over the labelled positions of `examples`."""
    batch = collate(examples).to(next(model.parameters()).device)
    hidden = labelled_hidden(parts, batch)[0]
    if not fusable(parts.head):
        raise TypeError("KL replay needs a frozen bias-free linear output head")
    ids, logp, rest = (torch.cat([getattr(t, f) for t in teachers]).to(hidden.device) for f in ("ids", "logp", "rest"))
    if ids.shape[0] != hidden.shape[0]:
        raise ValueError("replay teacher rows do not match the batch's labelled positions")
    weight = parts.head_weight(matmul_dtype(hidden.device))
    chunk = max(1, KL_LOGIT_BUDGET // weight.shape[0])
    return HeadTopKL.apply(hidden, weight, parts.softcap, chunk, ids, logp, rest).mean()


class KLReplay:
    """`LossTerm`: weight x KL to the frozen model on `per_step` replay samples per step.

    With `top_k` > 0 the frozen side is each sample's `Teacher`, computed the first time the
    term runs (the adapter then still equals the frozen model, and a resumed run computes the
    same, since it disables the adapter); 0 runs the frozen model at every step (exact KL).
    The samples of step s are a pure function of s (round robin), so a resumed run equals an
    uninterrupted one."""

    def __init__(
        self,
        examples: Sequence[Example],
        weight: float = 1.0,
        per_step: int = 4,
        name: str = "kl",
        top_k: int = 0,
        teachers: Sequence[Teacher] | None = None,
    ) -> None:
        if not examples:
            raise ValueError("KLReplay needs at least one replay example")
        if teachers is not None and len(teachers) != len(examples):
            raise ValueError("KLReplay needs one teacher per replay example")
        self.examples, self.weight, self.per_step = list(examples), float(weight), max(1, per_step)
        self.name, self.top_k = name, max(0, top_k)
        self._parts: LMParts | None = None
        self._teachers: list[Teacher] | None = list(teachers) if teachers is not None else None
        if self._teachers is not None and not self.top_k:
            raise ValueError("given teachers need top_k > 0")

    def _teach(self, model: Any, parts: LMParts) -> list[Teacher]:
        return teachers_for(model, self.examples, self.top_k, parts)

    def pick(self, step: int) -> list[Example]:
        return [self.examples[i] for i in self.pick_indices(step)]

    def pick_indices(self, step: int) -> list[int]:
        n = len(self.examples)
        start = (step * self.per_step) % n
        return [(start + i) % n for i in range(min(self.per_step, n))]

    def __call__(self, model: Any, step: int) -> torch.Tensor:
        if self._parts is None:
            self._parts = lm_parts(model)
        if not self.top_k:
            return self.weight * kl_to_frozen(model, self._parts, self.pick(step))
        if self._teachers is None:
            self._teachers = self._teach(model, self._parts)
        chosen = self.pick_indices(step)
        return self.weight * kl_to_teacher(
            model, self._parts, [self.examples[i] for i in chosen], [self._teachers[i] for i in chosen]
        )


ANCHOR_FILE = "replay-anchor.pt"
"""The home's cache file of the foundation model's replay samples and teachers (`sleep.replay_anchor`)."""


def teachers_for(model: Any, examples: Sequence[Example], k: int, parts: LMParts | None = None) -> list[Teacher]:
    """The frozen model's top-`k` teacher of each example (the adapter disabled), with a stop
    point after each (a night yields mid-pass: the pass takes seconds, and nothing of it needs
    keeping)."""
    parts = parts or lm_parts(model)
    out = []
    for ex in examples:
        out.append(teacher(model, parts, ex, k))
        stop_point()
    return out


def labelled_count(ex: Example) -> int:
    """Rows of `ex`'s teacher: its labelled positions."""
    return sum(1 for t in ex.labels[1:] if t != IGNORE)


def save_anchor(
    path: Path, made_from: dict[str, Any], pairs: Sequence[tuple[str, str]], teachers: Sequence[Teacher]
) -> None:
    """Keep a foundation model's replay `pairs` and `teachers`; `made_from` names the model."""
    from assistant.fsutil import atomic_write_bytes, ensure_dir

    buf = io.BytesIO()
    torch.save(
        {
            "made_from": {k: str(v) for k, v in made_from.items()},
            "pairs": [[p, t] for p, t in pairs],
            "teachers": [[t.ids.cpu(), t.logp.cpu(), t.rest.cpu()] for t in teachers],
        },
        buf,
    )
    ensure_dir(path.parent)  # private, as every directory of the home
    atomic_write_bytes(path, buf.getvalue())


def load_anchor(path: Path) -> tuple[dict[str, str], list[tuple[str, str]], list[Teacher]] | None:
    """What `save_anchor` kept, or None (absent or damaged: the night then replays as usual)."""
    if not path.is_file():
        return None
    try:
        raw = torch.load(io.BytesIO(path.read_bytes()), map_location="cpu", weights_only=True)
        pairs = [(str(p), str(t)) for p, t in raw["pairs"]]
        teachers = [Teacher(ids, logp, rest) for ids, logp, rest in raw["teachers"]]
        made_from = {str(k): str(v) for k, v in raw["made_from"].items()}
    except Exception:  # noqa: BLE001 - a damaged cache is remade on a foundation night, never trusted
        return None
    return (made_from, pairs, teachers) if len(pairs) == len(teachers) else None


def sample_count(n_episodes: int, base: int, cap: int = 64) -> int:
    """More replay for bigger nights: `base` samples, growing with the square root of episodes."""
    return min(cap, max(base, int(base * math.sqrt(max(1, n_episodes) / 8))))
