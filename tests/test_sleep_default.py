"""The training path on the embedded default model (Gemma 3 270M): loss math, steps, merge names."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.config import ChatConfig
from assistant.episode import Episode

pytestmark = pytest.mark.slow

FACTS = [
    ("Remember that my cat is called Miso.", "Got it: your cat is called Miso."),
    ("My sister Ada lives in Lisbon, don't forget.", "I'll remember that your sister Ada lives in Lisbon."),
    ("Note that I am allergic to peanuts.", "Noted: you are allergic to peanuts."),
]


def test_default_model_trains_with_the_fast_loss_and_merges_to_known_names(default_gguf: Path) -> None:
    import torch

    from models.bridge import load_torch_model
    from models.tokenizer import Tokenizer
    from sleep.dataset import build_examples, collate
    from sleep.loss import full_logits_ce, lm_parts, weighted_ce
    from sleep.merge import merged_weights
    from sleep.shared_prefix import shared_prefix_len
    from sleep.train import StepInfo, TrainArgs, train_lora

    tokenizer = Tokenizer.from_gguf(default_gguf)
    loaded = load_torch_model(default_gguf)
    episodes = [Episode.from_exchange("s", u, r, "gen-0000", 0.0) for u, r in FACTS]
    examples = build_examples(episodes, tokenizer.chat_template(), tokenizer, ChatConfig().system_prompt, 256)
    assert len(examples) == 3 and all(e.input_ids[0] == tokenizer.bos_id for e in examples)

    # Shared prefix + head at labels gives the loss of the full-vocabulary forward.
    parts, batch = lm_parts(loaded.model), collate(examples)
    assert shared_prefix_len(batch, parts.window) > 10
    with torch.no_grad():
        fast, slow = weighted_ce(parts, batch), full_logits_ce(loaded.model, batch)
    assert float(fast) == pytest.approx(float(slow), rel=1e-4)

    steps: list[StepInfo] = []
    args = TrainArgs(steps=4, batch_size=3, learning_rate=1e-3, seed=0)
    result = train_lora(loaded.model, examples, args, on_step=steps.append)
    assert result.steps == 4 and all(torch.isfinite(torch.tensor(result.losses)))
    assert result.losses[-1] < result.losses[0]
    merged = merged_weights(result.model)
    assert len(merged) == 7 * loaded.n_layers
    assert set(merged) <= set(loaded.gguf_names)  # every merged weight has a GGUF tensor to go to
