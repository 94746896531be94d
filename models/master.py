"""The weight master: higher-precision copies of the tensors sleep has changed.

Why: a served generation is quantized (Q4_K_M by default). If each night merged its LoRA delta
into the dequantized Q4 weights and quantized again, quantization error would compound night
after night, and nudges smaller than one quantization step would be rounded away every night
instead of adding up. So sleep keeps, for every tensor it has ever touched, an F16 copy in HF
layout: tonight's delta is merged into that copy, the copy is written into the GGUF and quantized
once. A generation is then always one quantization away from its master, however many nights.

The master is derived from conversations, so it must be kept as safely as the episodes: it
only ever leaves this module as bytes (`to_bytes` / `from_bytes`) for the vault to seal. It
records the generation it produced, so a stale master (after a rollback, or a model added by
hand) is recognised and dropped rather than merged into the wrong weights.

`models.drift` measures what this saves (`python -m models.drift MODEL.gguf`).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from assistant.errors import ModelError

FORMAT = "nightcap-weight-master-1"
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_PARENT = {"q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn", "o_proj": "self_attn",
           "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp"}  # fmt: skip


def linear_names(n_layers: int, targets: Iterable[str] = DEFAULT_TARGETS) -> list[str]:
    """HF parameter names of the target linears of every layer (same in all four archs)."""
    return [f"model.layers.{i}.{_PARENT[t]}.{t}.weight" for i in range(n_layers) for t in targets]


@dataclass
class Master:
    """F16 copies of touched tensors (HF names and layout) and the generation they produced."""

    tensors: dict[str, Any] = field(default_factory=dict)
    generation: str = ""
    """Identifies the GGUF quantized from this master (e.g. its sha256); empty if none yet."""

    def matches(self, generation: str) -> bool:
        """True if this master is the source of `generation`, i.e. safe to merge into."""
        return bool(self.generation) and self.generation == generation

    def base(self, hf_name: str, served: Any) -> Any:
        """The weight tonight's delta goes onto: the master copy if held, else the served one."""
        import torch

        held = self.tensors.get(hf_name)
        return held.to(torch.float32) if held is not None else served.detach().to(torch.float32)

    def merged(self, deltas: Mapping[str, Any], served: Mapping[str, Any]) -> "Master":
        """A new master with `base + delta` for each delta (HF name -> float tensor).

        `served` gives the current weights for tensors the master does not hold yet (e.g. the
        bridge model's state dict before LoRA). Tensors not touched tonight are carried over.
        The result's `generation` is empty until the caller `stamp`s the file it produced.
        """
        import torch

        tensors = dict(self.tensors)
        for name, delta in deltas.items():
            if name not in self.tensors and name not in served:
                raise ModelError(f"no weight named {name} to merge into; the adapter does not fit this model")
            current = None if name in self.tensors else served[name]
            value = self.base(name, current) + delta.to(torch.float32)
            tensors[name] = value.to(torch.float16)
        return Master(tensors)

    def stamp(self, generation: str) -> "Master":
        """This master, recorded as the source of `generation`."""
        return Master(self.tensors, generation)

    def replacements(self) -> dict[str, Any]:
        """What `models.writeback.write_merged_gguf` should write: every held tensor."""
        return dict(self.tensors)

    def to_bytes(self) -> bytes:
        """Serialize (safetensors, F16) for the vault to seal. Never write these bytes in clear."""
        from safetensors.torch import save

        return save(
            {k: v.contiguous() for k, v in self.tensors.items()},
            metadata={"format": FORMAT, "generation": self.generation},
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> "Master":
        """Inverse of `to_bytes`. Raises ModelError if the bytes are not a weight master."""
        from safetensors.torch import load

        try:
            (n,) = struct.unpack_from("<Q", data, 0)
            meta = json.loads(bytes(data[8 : 8 + n])).get("__metadata__") or {}
            if meta.get("format") != FORMAT:
                raise ValueError("unknown format")
            return cls(dict(load(bytes(data))), str(meta.get("generation", "")))
        except (struct.error, ValueError, UnicodeDecodeError, RuntimeError, TypeError, AttributeError) as err:
            raise ModelError(
                f"the saved weight master is damaged ({err}); the next sleep will start a new one"
            ) from None
