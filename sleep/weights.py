"""Where tonight's weight change is merged: into the sealed F16 weight master, not the Q4 weights.

Merging each night's delta into the dequantized served weights and quantizing again would let
quantization error compound and round away every nudge smaller than a quantization step
(`python -m models.drift` measures it). So the merge goes into `models.master.Master`, an F16
copy of every tensor sleep has touched, and the new generation is always one quantization away
from it. The master is learned from conversations, so it lives only as a sealed vault blob, and
it is bound to the sha256 of the generation it produced: after a rollback or a hand-added model
it no longer matches and a fresh one starts from the served weights.

    master = load_master(vault, gen_sha)                 # before the merge
    master = merge_night(master, peft_model)             # W_master += scale * B @ A
    write_merged_gguf(src, master.replacements(), dst)   # then quantize, gate...
    keep_master(vault, master, new_gen_sha)              # only once the candidate is promoted
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from assistant.errors import ModelError
from assistant.vault.derived import WEIGHT_MASTER as BLOB

if TYPE_CHECKING:
    from assistant.vault import Vault
    from models.master import Master


def load_master(vault: "Vault", generation_sha: str | None) -> "Master":
    """The sealed master if it produced the serving generation, else an empty one (a stale or
    damaged master is destroyed: merging into the wrong weights would corrupt the model)."""
    from models.master import Master

    data = vault.open_blob_or_discard(BLOB)
    if data is None:
        return Master()
    try:
        master = Master.from_bytes(data)
    except ModelError:
        vault.drop_blob(BLOB)
        return Master()
    if not generation_sha or not master.matches(generation_sha):
        vault.drop_blob(BLOB)
        return Master()
    return master


def merge_night(master: "Master", peft_model: Any) -> "Master":
    """`master` with tonight's adapter merged into each touched weight (served weights for
    tensors the master does not hold yet). The peft model is left unchanged. One layer's float32
    delta exists at a time (all of them at once would be 400 MB for the default model)."""
    import torch

    from assistant.stoppoints import stop_point
    from sleep.merge import delta_weight, lora_layers

    with torch.no_grad():
        for name, layer in lora_layers(peft_model):
            stop_point()  # one layer at a time: a night asked to stop yields between them
            delta = delta_weight(layer)
            if delta is not None:
                served = {} if name in master.tensors else {name: layer.get_base_layer().weight.detach().cpu()}
                master = master.merged({name: delta.detach().cpu()}, served)
    return master


def keep_master(vault: "Vault", master: "Master", generation_sha: str) -> None:
    """Seal `master` as the source of the generation with `generation_sha`."""
    vault.seal_blob(BLOB, master.stamp(generation_sha).to_bytes(), about=generation_sha)
