"""Settings, read from `config.toml` in the home directory with tomllib.

Every setting has a default and a docstring here; `nightcap config` style docs in the README are
generated from the same fields. A missing file means all defaults. An unknown key or a value of
the wrong type is a one-line `ConfigError` naming the key, e.g. ``chat.temperature: expected a
number, got "hot"``.

Example::

    [model]
    n_ctx = 4096
    [chat]
    temperature = 0.7
    system_prompt = "You are Nightcap, a helpful private assistant."
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from assistant.errors import ConfigError

FileType = Literal[
    "source",
    "F16",
    "BF16",
    "Q8_0",
    "Q6_K",
    "Q5_K_M",
    "Q5_K_S",
    "Q5_1",
    "Q5_0",
    "Q4_K_M",
    "Q4_K_S",
    "Q4_1",
    "Q4_0",
    "Q3_K_L",
    "Q3_K_M",
    "Q3_K_S",
    "Q2_K",
]
"""What `sleep.file_type` may name: the serving file's own type, or a llama.cpp file type that
needs no importance matrix."""
TensorType = Literal["file", "F16", "BF16", "Q8_0", "Q6_K", "Q5_K", "Q5_1", "Q5_0", "Q4_K", "Q4_1", "Q4_0"]
"""What `sleep.touched_type` may name: the file type's own choice, or a ggml tensor type."""


@dataclass
class ModelConfig:
    """How the current model generation is served by llama.cpp."""

    n_ctx: int = 4096
    """Context window in tokens; history is trimmed oldest-first to fit."""
    n_threads: int = 0
    """CPU threads for llama.cpp; 0 means all physical cores."""
    n_gpu_layers: int = -1
    """Layers offloaded to the GPU when the llama.cpp build supports it; -1 = all, 0 = none."""
    keep_generations: int = 3
    """How many previous model generations are kept for `nightcap models rollback`."""


@dataclass
class ChatConfig:
    """Conversation behaviour and sampling."""

    system_prompt: str = "You are Nightcap, a helpful private assistant. Answer briefly."
    """Sent at the start of every conversation; never trimmed."""
    temperature: float = 0.7
    """Sampling temperature; 0 is greedy."""
    top_p: float = 0.95
    """Nucleus sampling threshold."""
    top_k: int = 40
    """Sample from the k most likely tokens."""
    repeat_penalty: float = 1.1
    """Penalty for repeating recent tokens."""
    max_tokens: int = 256
    """Longest reply, in tokens."""
    seed: int = -1
    """Sampling seed; -1 picks a random one each reply."""


@dataclass
class SleepConfig:
    """The nightly consolidation cycle."""

    device: Literal["auto", "cuda", "mps", "cpu"] = "auto"
    """Training device: auto (cuda, then mps, then cpu), cuda, mps or cpu."""
    lora_r: int = 16
    """LoRA rank."""
    lora_alpha: int = 32
    """LoRA alpha (scale = alpha / r)."""
    lora_targets: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    """Linear layers that get a LoRA adapter. The MLP's alone (`--set 'lora_targets=["gate_proj",
    "up_proj", "down_proj"]'`) were measured against all seven: on the first 36 development items
    told over three nights (`nightcap bench consolidation --nights 3 --limit 36`, seeds 0-1, 202
    probes) MC 0.668 against 0.634 (paired +20/-13, p 0.30) and generation 0.342 against 0.317
    (+20/-15), perplexity 19.84 against 19.73, general MC 0.769 against 0.788; but on the whole
    development set (three nights, seed 0, 267 probes) MC 0.581 either way (+14/-14), generation
    0.221 against 0.258 (+15/-25), bleed 0.58 against 0.49, perplexity 20.82 against 20.47
    (pre-sleep 19.47), general 0.800 against 0.787, and nights of 597-649 s against 498-624 s. The
    gain on 36 items does not carry to the other 64, so all seven stay."""
    learning_rate: float = 8e-4
    """AdamW learning rate for the adapter (the peak, under a schedule). On the first 36
    development items told in one day (one night, 120 steps, seeds 0-1, `nightcap bench
    consolidation --limit 36 --set learning_rate=...`): 8e-4 gave MC 0.569 and generation 0.233
    (tune 0.587/0.207, check 0.555/0.255), general MC 0.775, perplexity 19.67; 1.6e-3 gave 0.614
    and 0.287 (tune 0.598/0.250, check 0.627/0.318), general 0.769, perplexity 19.59; 3.2e-3
    gave 0.594 and 0.317, general 0.750, perplexity 20.01. But told over three nights (12 a
    night, seed 0) 1.6e-3 gave MC 0.634 and generation 0.337 against 0.653 and 0.337 at 8e-4,
    night-1 MC 0.559 against 0.618 (bleed 0.317 against 0.396, perplexity 19.41 against 19.59).
    One seed of 109 probes (about +/-0.09) proves nothing either way, but it does not confirm
    the one-night gain where the nights add up, so 8e-4 stays."""
    lr_schedule: Literal["cosine", "constant"] = "cosine"
    """cosine: from `learning_rate` down to a tenth of it at the night's last step, so the night
    ends on small steps that settle every fact rather than on the last batches; or constant."""
    steps: int = 40
    """Optimizer steps per night."""
    batch_size: int = 8
    """Sequences per step."""
    max_batch_tokens: int = 512
    """Padded tokens per forward pass of training: a step's sequences run in pieces of at most
    this many, whose gradients add up. Activation memory follows it (about 2 MB per token on the
    default model). On a night of 41 conversations on a slept default model (120 steps, one run
    each): 512 peaked at 3048 MB with 403 s of training, 256 at 2983 MB with 446 s: below 512
    the peak is the replay term's (its samples run in one pass), and training is slower."""
    max_seq_len: int = 256
    """Longest training sequence in tokens; longer episodes are cut from the left."""
    seed: int = 0
    """Seed for sampling batches and adapter init."""
    threads: int = 0
    """torch CPU threads; 0 leaves torch's default."""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """Training matmul precision: auto (bf16 where the hardware does it natively, else fp32),
    fp32 or bf16. Weights, adapter and optimizer state stay fp32 either way."""
    augment: bool = True
    """Deterministic augmentations of each stated fact: second-person restatements as answers to
    templated questions about its topic and to questions a span of it answers, and a
    fill-in-the-blank for every span."""
    cloze_blank_only: bool = False
    """Answer each fill-in-the-blank with the blank alone ("Lisbon.") instead of the blank and
    then the whole fact, which the question already holds. Off by default: on the first 36
    development items (`nightcap bench consolidation --limit 36 --set cloze_blank_only=true`,
    both measured on one machine) one night (seeds 0-1) gave MC 0.604 and generation 0.272
    against 0.584 and 0.213 (check half 0.582/0.282 against 0.573/0.200; paired over 202
    probes, generation +22/-10), perplexity 19.79 against 19.58 (pre-sleep 19.56) and nights
    7% shorter; but told over three nights (seed 0) MC 0.644 and generation 0.287 against
    0.614 and 0.337 (check 0.618/0.309 against 0.600/0.309, night-1 MC 0.647 against 0.618),
    and perplexity 20.43 against 19.54: the short answers move the weights more per example."""
    token_loss: bool = False
    """Weigh every answer token of the night alike: each example's weight is scaled by its
    labelled tokens (a lead's counted `lead_weight` times) over the night's mean, so the loss is
    a sum over tokens instead of a mean per example, in which a short statement's few tokens
    weigh as much as a long one's many. Off by default: on the first 36 development items
    (`nightcap bench consolidation --limit 36 --set token_loss=true`, on one machine) one night
    (seeds 0-1) gave MC 0.589 and generation 0.277 against 0.584 and 0.213 (check half
    0.573/0.273 against 0.573/0.200; paired over 202 probes, generation +20/-7), bleed 0.33
    against 0.40 and perplexity 19.41 against 19.58 (pre-sleep 19.56); but told over three
    nights (seeds 0-1) MC 0.649 and generation 0.297 against 0.634 and 0.317 (paired over 202
    probes +13/-10 and +22/-26), perplexity 19.65 against 19.73."""
    dreams: bool = True
    """Model-written dreams: the pre-sleep model paraphrases each fact and writes question/answer
    pairs about it; only those that pass verification against the episode are trained on. On
    the first 36 development items (one night, seeds 0-1) 11 of the 105 it wrote passed, the
    stage took 34 s of a 591 s night, and recall was the same without them (`--set
    dreams=false`: MC 0.584 and generation 0.213 either way, paired +13/-13 and +15/-15 of 202
    probes; perplexity 19.86 against 19.58)."""
    dream_weight: float = 1.0
    """Weight of each augmentation or dream relative to its episode's importance."""
    lead_weight: float = 3.0
    """Weight of each token of an answer proper ("Lisbon." in "Lisbon. Your sister lives in
    Lisbon.") against the restatement after it, within the example's mean loss: the answer is
    what a question asks for, the restatement only ties it to its subject. 1 weighs all alike.
    8 was measured against 3 on the first 36 development items (`nightcap bench consolidation
    --limit 36 --set lead_weight=8`, on one machine): one night (seeds 0-1) gave MC 0.599 and
    generation 0.272 against 0.584 and 0.213 (paired over 202 probes +14/-11 and +21/-9, check
    half 0.582/0.282 against 0.573/0.200) at the same perplexity; but told over three nights (seed
    0) MC 0.624 and generation 0.287 against 0.614 and 0.337 (paired +8/-7 and +9/-14), bleed
    0.36 against 0.45, perplexity 20.05 against 19.54: the one-night gain does not hold where
    nights add up, so 3 stays."""
    answer_order: Literal["value", "subject", "both"] = "value"
    """How a question whose answer is a span of the fact is answered in training: value, the value
    first and then the restated fact ("Lisbon. Your sister Priya lives in Lisbon."); subject, the
    restated fact alone wherever it names the value ("Your sister Priya lives in Lisbon."), so a
    reply names its subject before the value and the value follows the words it follows in the
    statement; both, each question twice, once in each order. On the first 36 development items
    (`nightcap bench consolidation --limit 36 --set 'answer_order="..."'`, one machine; paired
    with `nightcap bench compare`): one night (120 steps, seeds 0-1) in subject order gave
    generation 0.322 against 0.213 (+43/-21 of 202, p 0.008) but MC 0.401 against 0.584
    (+10/-47): multiple choice scores each option as the first words of the reply, where a
    subject-first model puts "Your"; over three nights (seed 0) subject gave generation 0.307
    against 0.337. Told over three nights (seeds 0-1, 202 probes), both gave generation 0.371
    against 0.317 (+29/-18, p 0.14; check half 0.409 against 0.309, +18/-7, p 0.04), MC 0.624
    against 0.634, bleed 0.27 against 0.42, night-1 MC 0.574 against 0.632, perplexity 19.71
    against 19.73 (pre-sleep 19.56), and 89-101 steps a night against 57-65 (nights of 401-549 s
    against 290-358 s); about 40% of its replies name the subject first, which value order never
    does. The steps are not what helps generation: value order with as many steps (`min_epochs`
    = 5) gave generation 0.297 and MC 0.678 (both against it: generation +32/-17, p 0.044; MC
    +11/-22, p 0.08); and each question once in one order or the other (half each: value's
    examples and steps) gave MC 0.614 and generation 0.307. So both trades multiple choice and
    night-1 recall for generation, and in one night of 36 items, where the 120-step cap halves
    its passes, it gave MC 0.525 and generation 0.267 (seed 0). Value stays the default."""
    rival_weight: float = 0.0
    """Weight of the rival term: at the first token of each answer, the total probability of
    the night's other answers' first tokens is pushed down (-log(1 - p)), so that a question
    about one fact is not answered with another fact's value. 0 turns it off. Off by default:
    at 1.0, one night on 36 development items (seed 0) went from generation recall 27 to 21 of
    101 (multiple choice 51 to 53); the slept model answered with values from outside the night
    instead of the right one."""
    stale_weight: float = 0.0
    """Weight of the stale-answer term: before training, a model that slept before answers
    each of the night's questions that lead with a value; where its answer does not hold the
    value the user told tonight (an old value the user has since changed, or another fact's),
    the tokens of that answer that tonight's answer does not use are pushed down at the answer's
    first position (-log(1 - p)), as rivals of that example. 0 turns it off. Off by default:
    on 30 development items (the 15 update items and 15 others, 3 nights, 2 seeds) it found a
    stale answer for 111 of a night's 114 questions (a slept model rarely answers a new fact's
    question with its value), made the dream stage 16-37 s longer, and gave MC 0.541 and
    generation 0.259 against 0.553 and 0.276 off (update-new MC 0.41 against 0.44), bleed 0.31
    against 0.27."""
    reconsolidate: bool = True
    """Reconsolidation (`sleep.reconsolidate`): a model that slept before is asked what it
    knows about each thing tonight's statements name; the questions an earlier night trained on
    what it recalls are trained again with tonight's value where tonight changes it and answers
    them in exactly one way of the same kind ("Where does my cousin live?" after "he's in
    Bristol now"), and asked about before with the recalled value. On 30 development items (the
    15 update items and 15 others, 3 nights, 2 seeds) against off: MC 0.629 against 0.594,
    generation 0.341 against 0.300, update-new MC 0.47 against 0.32, update-old MC 0.43 against
    0.60, bleed 0.28 against 0.33, general 0.794 against 0.769; slept nights 15-25% longer (one
    short completion per thing named, about 50 s a night of 15 facts, and more examples). On the
    whole development set (100 items, 3 nights, seed 0; 70 of its items were not among the 30
    it was chosen on) against off: MC 0.588 against 0.566, generation 0.255 against 0.210,
    bleed 0.43 against 0.48, general 0.762 against 0.775, perplexity +8.1% against +5.9%."""
    replay: bool = True
    """Foundational replay: a KL term to the frozen pre-sleep model on samples it wrote itself."""
    replay_samples: int = 24
    """Self-generated replay samples per night (more for nights with many episodes, up to 64)."""
    replay_tokens: int = 40
    """Length of each self-generated replay sample, in tokens."""
    replay_corpus: str = ""
    """Optional plain-text file of foundational passages (blank-line separated) to replay too."""
    replay_anchor: bool = False
    """Hold general knowledge to the model the home started from, not only to last night's: the
    night that trains a model that never slept keeps its replay samples and their top-k
    teacher distributions (`kl_top_k`) in the home's cache/ (no user data: the samples and the
    distributions are that model's own); every later night's replay term is the KL to that
    first model on those samples, so the drift of one night is pulled back by the next instead
    of adding up. Needs `replay` and `kl_top_k` > 0. Off by default: on the whole development
    set (`nightcap bench consolidation --nights 3 --rows=+anchor`, seed 0) it left the
    perplexity rise where it was (+7.4% against +8.1%) and recall a little lower (MC 0.573
    against 0.588, generation 0.240 against 0.255, bleed 0.48 against 0.43), for general MC 0.800
    against 0.762 and nights 2 and 3 shorter by a tenth (no replay samples to write)."""
    replay_chat: bool = False
    """Also replay chat-formatted questions. Off by default: a base model's chat replies are
    often poor (the default one echoes its system prompt), and holding them in place fights
    the night's learning; general knowledge is held by the plain-text samples."""
    rehearse: bool = False
    """Rehearsal: a slept model answers questions about its user (sampled, in memory only) and a
    KL term keeps those answers while the night learns, so earlier nights' facts are not
    overwritten. A model that never slept has nothing to rehearse. Off by default: over three
    nights on the default model it left night-1 recall where it was and made nights 40% longer."""
    rehearse_questions: bool = False
    """With `rehearse`: also rehearse the questions a night trains on (`sleep.dreams.augment`:
    wh-questions, names, fill-in-the-blanks) made from each sentence of the sampled answers, in
    the user's voice, each answered by the slept model itself (greedy, in memory only). A later
    night's "What is my cousin's name?" -> "Tomasz." otherwise also moves what the model
    answers to every other "What is my ...'s name?" an earlier night taught, which free
    recollections do not hold in place. Off by default: on the first 36 development items told
    over three nights (`nightcap bench consolidation --nights 3 --limit 36 --set rehearse=true
    --set rehearse_questions=true`, seeds 0-1, 24 questions a night), against the default, the
    night-1 items' generation recall went from 0.18 to 0.42 (paired +15/-1 of 60, p 0.001), but
    the night-3 items' from 0.42 to 0.24 (+6/-18, p 0.02): what it holds of earlier nights it
    takes from tonight's learning, and all items together gave MC 0.619 against 0.634 and
    generation 0.307 against 0.317 (+26/-28), bleed 0.26 against 0.42, perplexity 19.85 against
    19.73, general MC 0.800 against 0.788, nights 2-3 of 418-494 s against 290-358 s, and a peak
    of 3135 MB."""
    rehearse_samples: int = 24
    """Sampled answers rehearsed per night (and at most as many questions with
    `rehearse_questions`)."""
    rehearse_tokens: int = 48
    """Length of each rehearsed answer, in tokens."""
    rehearse_weight: float = 4.0
    """Weight of the rehearsal KL term (`kl_weight` is the replay term's). At 1, with
    `rehearse_questions`, on the first 36 development items told over three nights (`nightcap
    bench consolidation --nights 3 --limit 36 --set rehearse=true --set rehearse_questions=true
    --set rehearse_weight=1`, seed 0, paired with `nightcap bench compare` against the default):
    MC 0.653 against 0.604 (+12/-7) and generation 0.337 against 0.277 (+15/-9), but all of it on
    the tune half (generation 0.196 -> 0.413, +12/-2) while the check half lost (0.345 -> 0.273,
    +3/-7); by the night an item was told, generation 0.12 -> 0.41 (+10/-0) on night 1's and
    0.39 -> 0.27 (+1/-5) on night 3's, the trade 4 makes; update-new MC 0.14 against 0.43 (7
    probes); nights 2-3 of 639-676 s against 512-522 s on the same machine."""
    kl_weight: float = 4.0
    """Weight of the replay KL term. It and EWC (`ewc`, `ewc_weight`) hold general text in place,
    and they are also what holds a night's learning back. On the first 36 development items told
    in one day (`nightcap bench consolidation --nights 1 --limit 36 --seeds 1 --fit 40 --set ...`,
    seed 0, pre-sleep perplexity 19.56), the night's cross-entropy over its first and last five
    steps, MC and generation recall (of 101 probes), its own training questions answered after
    sleep (fit) and perplexity were: KL 4 and EWC 1 (the defaults) 3.25 -> 0.21, 60 and 23,
    25/40, 19.70; KL 4 alone 3.15 -> 0.10, 59 and 33, 29/40, 21.26; EWC 1 alone 3.24 -> 0.20, 64
    and 31, 27/40, 22.71; KL 16 alone 3.28 -> 0.20, 63 and 26, 27/40, 20.19; neither 3.16 ->
    0.07, 66 and 38, 31/40, 132.4. Each row that frees the night recalls more and pays in
    perplexity; only both terms together keep its rise within 2%."""
    kl_per_step: int = 6
    """Replay samples in the KL term of each step."""
    kl_top_k: int = 128
    """The frozen model's side of the KL term is computed once per night and kept as its `k`
    likeliest tokens at each position (plus the mass of the rest): about half the cost of the
    exact term per step. 0 runs the frozen model at every step instead (exact KL)."""
    min_epochs: float = 3.0
    """With augmentations or dreams on, train at least this many passes over the night's
    examples: steps become max(steps, min_epochs x examples / batch_size), at most `max_steps`.
    At 5, on the first 36 development items told over three nights (`nightcap bench
    consolidation --nights 3 --limit 36 --set min_epochs=5`, seeds 0-1, 202 probes; 95-107 steps
    a night against 57-65): MC 0.678 against 0.634 (paired +20/-11, p 0.15), night-1 MC 0.706
    against 0.632, but generation 0.297 against 0.317 (+20/-24), perplexity 19.80 against 19.73,
    and nights of 480-536 s against 290-358 s. More passes in value order buy multiple choice,
    not generation (`answer_order` is the other way round), so 3 stays."""
    max_steps: int = 120
    """Upper bound on the steps `min_epochs` may ask for (bounds the night's duration). A day of
    40 facts makes ~455 examples: 120 steps are 2.1 passes over them. On `nightcap bench nights
    --nights 1 --per-night 40` (seed 0, 120 of its probes) 170 steps (3 passes, as a 10-fact
    night gets) gave MC 0.59 and generation 0.30 against 0.60 and 0.27 at 120, general MC 0.787
    against 0.800, and a night of 1037 s against 796 s."""
    ewc: bool = True
    """EWC: penalise changing weights the old knowledge relies on (diagonal Fisher, estimated
    once per model generation and sealed in the vault; the previous generation's is dropped)."""
    ewc_weight: float = 1.0
    """Weight of the EWC penalty (the Fisher is normalised to mean 1 over the adapted layers).
    At 0.3, on the first 36 development items (`nightcap bench consolidation --limit 36 --set
    ewc_weight=0.3`, against 1.0 on the same machine): one night (seeds 0-1) gave MC 0.609 and
    generation 0.267 against 0.584 and 0.213, perplexity 19.65 against 19.58; three nights
    (seeds 0 and 1) gave MC 0.634 and 0.653 against 0.614 and 0.653, generation 0.297 and 0.277
    against 0.337 and 0.297, night-1 MC 0.559 and 0.529 against 0.618 and 0.647, perplexity
    19.89 and 20.52 against 19.54 and 19.92 (paired over both seeds' 202 probes: MC +14/-12,
    generation +16/-22). The one-night gain is not kept where nights add up, so 1.0 stays."""
    surprise: bool = True
    """Scale each episode's importance by how surprising its user turn was to the pre-sleep model."""
    correction_boost: float = 1.5
    """Extra importance of corrections, so that they override what the model said before."""
    file_type: FileType = "source"
    """Quantization of the slept model: "source" keeps the serving generation's file type, or a
    llama.cpp file type (F16, Q8_0, Q6_K, Q5_K_M, Q4_K_M, ...)."""
    touched_type: TensorType = "Q8_0"
    """Type of the tensors a night changed, inside a file of a lower type: 4-bit rounding
    (Q4_K_M) erases most of a night's small change (measured on the default model). "file"
    quantizes them like the rest. Every other tensor keeps the file type's choice. Q8_0 loses
    next to nothing against F16: on the first 36 development items told in one day (`nightcap
    bench consolidation --nights 1 --limit 36 --seeds 1 --fit 40`, seed 0, the same training)
    F16 recalled the same (MC 59 against 60 of 101 probes, generation 23 against 23, paired
    +0/-1 and +2/-2), fit 27/40 against 25/40, perplexity 19.58 against 19.70."""
    gates: Literal["full", "health"] = "full"
    """Checks before promotion: "full" (health, recall, retention, perplexity, drift) or "health"
    (loads, finite logits, answers). Each quality gate also turns off with its threshold below."""
    gate_min_recall: float = 0.5
    """Fraction of held-out recall probes whose answer must become more likely; 0 turns it off."""
    gate_min_retention: float = 0.95
    """Candidate's general multiple-choice accuracy as a fraction of the pre-sleep model's;
    0 turns it off."""
    gate_max_perplexity_rise: float = 0.05
    """Largest relative perplexity rise on held-out general text (0.05 = 5%); 0 turns it off."""
    gate_max_drift: float = 0.5
    """Largest mean KL (nats) from the pre-sleep next-token distributions; 0 turns it off."""
    forget_steps: int = 24
    """Optimizer steps of `nightcap forget` (unlearning one consolidated statement). At 12 (on
    `nightcap bench forget`, 5 forgets after a 20-fact night) a forget took 152-190 s instead of
    219-281 s, but 2 of the 5 candidates failed the perplexity gate (+6%) and general MC fell
    to 0.775 (0.787 at 24 steps); the other facts' loss was the same (MC 0.633 -> 0.510)."""
    forget_learning_rate: float = 8e-4
    """Peak learning rate of a forget's unlearning pass (a night uses `learning_rate`): every
    figure in the docs of the other forget_ settings was measured at 8e-4."""
    forget_kl_per_step: int = 3
    """Replay samples and rehearsed answers in each of a forget's KL terms per step (a night uses
    `kl_per_step`). At 3, on `nightcap bench forget --forget-kl-per-step 3` (5 forgets after a
    20-fact night, seed 0, alone on 2 cores): forgets of 142-180 s (training 72-88 s of them);
    the forgotten facts' MC 0.842 -> 0.526 (pre-sleep 0.526; 0.474 after a 5-fact relearning
    night), the other 15 facts' 0.551 -> 0.571, general MC 0.812 -> 0.800: every target of
    `bench forget` met. At 6, the default before, on the same night: forgets of 166-190 s
    (training 87-106 s), forgotten MC 0.684, the other facts' 0.490, general 0.787: none met."""
    forget_npo_weight: float = 3.0
    """Weight of the term that pushes the forgotten statement's answers down (NPO). See
    `forget_idk_weight` for what 1 and 3 gave."""
    forget_idk_weight: float = 0.0
    """Weight of the forget's lessons that answer the statement's questions with "I don't know"
    (0: NPO alone, and no pass is spent on them). On `nightcap bench forget` (5 forgets after a
    20-fact night, seed 0; MC of the forgotten facts, pre-sleep 0.526, slept 0.842, then of the
    other 15 facts, slept 0.633): lessons 1 with NPO 1, 0.526 and 0.510; lessons 0.3, 0.632 and
    0.531; lessons 0 with NPO 1, 0.684 and 0.633; lessons 0 with NPO 3, 0.632 and 0.612. The
    lessons teach "questions about you: I don't know" as much as "this statement: I don't know",
    and that harm to the other facts barely shrinks with their weight; a stronger NPO forgets
    almost as much without it."""
    weight_master: bool = True
    """Merge each night into a sealed F16 copy of the touched weights and quantize from it, so
    quantization error does not compound night after night (costs ~2 bytes per adapted weight
    in the vault: about 200 MB for the default model)."""


@dataclass
class DaemonConfig:
    """When the overnight daemon (`nightcap daemon`) may start a sleep cycle."""

    window_start: str = "22:00"
    """Start of the preferred sleep window, local time HH:MM; cycles only start inside it."""
    window_end: str = "07:00"
    """End of the window, HH:MM. Earlier than the start crosses midnight; equal means any time."""
    min_idle_seconds: float = 900.0
    """How long nobody may have touched keyboard or mouse before a cycle starts."""
    min_pending_episodes: int = 1
    """Fewest pending (not yet consolidated) episodes worth a cycle."""
    poll_seconds: float = 60.0
    """How often the daemon re-checks the conditions while waiting."""
    desktop_counts_as_plugged: bool = True
    """A machine without a battery counts as on power; false makes it never sleep on its own."""
    max_temperature: float = 0.0
    """Highest sensor temperature (degrees C) at which a cycle may run; 0 turns the check off."""


@dataclass
class VaultConfig:
    """The encrypted episode vault."""

    keyring: Literal["auto", "on", "off"] = "auto"
    """Where the master key lives: auto (the OS keyring when a real one exists, else a passphrase),
    on (the OS keyring or fail), off (always a passphrase). NIGHTCAP_KEYRING overrides it."""


@dataclass
class ServeConfig:
    """`nightcap serve`: the OpenAI-compatible API on this machine."""

    host: str = "127.0.0.1"
    """Address to listen on. Anything but a loopback address also needs `--allow-remote`."""
    port: int = 8765
    """TCP port."""
    max_body_bytes: int = 1_000_000
    """Largest request body accepted; larger ones are refused with a 400 before they are read."""
    cors_origins: list[str] = field(default_factory=list)
    """Browser origins allowed to call the API (CORS); empty turns CORS off."""
    with_daemon: bool = False
    """Run the API inside the overnight daemon too (what `nightcap daemon install --serve` sets up)."""


@dataclass
class Config:
    """All of Nightcap's settings. Sections map to TOML tables."""

    model: ModelConfig = field(default_factory=ModelConfig)
    chat: ChatConfig = field(default_factory=ChatConfig)
    sleep: SleepConfig = field(default_factory=SleepConfig)
    vault: VaultConfig = field(default_factory=VaultConfig)
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)

    @classmethod
    def load(cls, path: Path) -> "Config":
        """Read `path` (all defaults when it does not exist). Raises ConfigError."""
        if not path.exists():
            return cls()
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise ConfigError(f"{path}: not valid TOML ({err}); fix or delete the file") from err
        return _build(cls, data, "")


def _type_ok(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return value in typing.get_args(tp)
    if origin is list:
        (item,) = typing.get_args(tp)
        return isinstance(value, list) and all(_type_ok(v, item) for v in value)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if key not in fields:
            raise ConfigError(f"config.toml: unknown setting '{name}'; see the README for valid keys")
        tp = hints[key]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise ConfigError(f"config.toml: '{name}' must be a table ([{name}])")
            kwargs[key] = _build(tp, value, f"{name}.")
        elif not _type_ok(value, tp):
            if typing.get_origin(tp) is Literal:  # a choice: checked when the file is read, not when used
                want = "one of " + ", ".join(f'"{c}"' for c in typing.get_args(tp))
            else:
                want = _TYPE_NAMES.get(tp, "a list of strings" if typing.get_origin(tp) is list else str(tp))
            raise ConfigError(f"config.toml: '{name}' must be {want}, got {value!r}")
        else:
            kwargs[key] = float(value) if tp is float else value
    return cls(**kwargs)


# The README's settings table ------------------------------------------------------------------
TABLE_BEGIN = "<!-- settings table: generated from assistant/config.py by `python -m assistant.config` -->"
TABLE_END = "<!-- end of settings table -->"


def field_docs(cls: type) -> dict[str, str]:
    """Each field's docstring (the string right under it in the class body), read from the source."""
    import ast
    import inspect

    body = ast.parse(inspect.getsource(cls)).body[0]
    assert isinstance(body, ast.ClassDef)
    docs = {}
    for node, after in zip(body.body, body.body[1:]):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def _toml(value: Any) -> str:
    """A default as config.toml would spell it (long strings shortened)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"' if len(value) <= 24 else f'"{value[:20]}..."'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def settings_table() -> str:
    """The README's table of every setting: key, default, its docstring and, for a choice, its values."""
    rows = ["| key | default | meaning |", "|---|---|---|"]
    sections = typing.get_type_hints(Config)
    for section in dataclasses.fields(Config):
        cls = sections[section.name]
        docs, hints, defaults = field_docs(cls), typing.get_type_hints(cls), cls()
        for f in dataclasses.fields(cls):
            meaning = docs[f.name]
            if typing.get_origin(hints[f.name]) is Literal:
                meaning += " One of: " + ", ".join(typing.get_args(hints[f.name])) + "."
            meaning = meaning.replace("|", "\\|")
            rows.append(f"| `{section.name}.{f.name}` | `{_toml(getattr(defaults, f.name))}` | {meaning} |")
    return "\n".join(rows)


def readme_with_settings(readme: str) -> str:
    """`readme` with the text between the table's markers replaced by today's `settings_table()`."""
    start, end = readme.index(TABLE_BEGIN) + len(TABLE_BEGIN), readme.index(TABLE_END)
    return readme[:start] + "\n" + settings_table() + "\n" + readme[end:]


if __name__ == "__main__":
    readme_path = Path(__file__).resolve().parent.parent / "README.md"
    readme_path.write_text(readme_with_settings(readme_path.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"wrote the settings table into {readme_path}")
