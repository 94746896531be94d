"""Measure quantization drift over empty-delta nights, with and without a weight master.

A night with nothing learned should leave the model as it was. Two ways to run such a night:

- naive: dequantize the served generation's touched tensors, write them back as F16 and
  quantize again (what merging into the dequantized weights does with a zero delta);
- master: write the F16 master (`models.master`) and quantize it, as sleep does.

For each night this reports how far the touched weights have moved from where they should be
(generation 0, plus the deltas so far when `delta_std` > 0), and how far the logits have moved
from generation 0's: in exact arithmetic (the torch bridge model, with the night's weights) and
as llama.cpp serves them. llama.cpp quantizes activations inside its matmuls, so any weight
change, even two bytes of one tensor, reshuffles that rounding noise: its logit drift has a floor
of a few tenths that says little about the model itself; the torch columns do.

With `delta_std` > 0 each night adds the same small random delta (std = delta_std x the weights'
std), smaller than a quantization step: `kept` is the share of the intended change that survives
in the quantized file (1.0 = all of it). Run it on a model file::

    python -m models.drift ~/.local/share/nightcap/models/gen-0000/model.gguf --nights 5
    python -m models.drift MODEL.gguf --delta-std 0.05
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from models.provision import sha256_file

PROMPTS = (
    "The capital of France is",
    "Water boils at a temperature of",
    "<start_of_turn>user\nWhat is my sister's name?<end_of_turn>\n<start_of_turn>model\n",
    "def add(a, b):\n    return",
)


@dataclass
class NightDrift:
    """One night's generation compared with where it should be."""

    strategy: str
    night: int
    weight_max: float
    """Largest |W_n - target_n| over the touched tensors (target = W_0 + n x delta)."""
    weight_mean: float
    weight_rel: float
    """Mean |W_n - target_n| over mean |W_0|."""
    kept: float
    """Share of the intended change W_n - W_0 realized (projection); 1.0 when no delta."""
    torch_logit_max: float
    """Largest |logit_n - logit_0| in exact arithmetic, over every probe position."""
    torch_logit_mean: float
    cpp_logit_max: float
    """The same, as llama.cpp computes it (includes its activation-rounding noise)."""
    cpp_logit_mean: float
    cpp_top1_agree: float
    """Share of positions whose most likely next token (llama.cpp) is unchanged."""
    same_as_previous: bool
    """The file is byte-identical to the previous night's."""


@dataclass
class DriftReport:
    model: str
    nights: int
    n_tensors: int
    delta_std: float
    touched_type: str = "file"
    rows: list[NightDrift] = field(default_factory=list)
    seconds: float = 0.0

    def table(self) -> str:
        lines = [
            f"{self.model}: {self.nights} nights, delta_std {self.delta_std:g}, {self.n_tensors} touched tensors"
            f" stored at {self.touched_type} ({self.seconds:.0f} s)",
            "strategy night w_max    w_mean   w_rel    kept   torch_max torch_mean cpp_max cpp_mean top1  same",
        ]
        for r in self.rows:
            lines.append(
                f"{r.strategy:<8} {r.night:>5} {r.weight_max:<8.3g} {r.weight_mean:<8.3g} {r.weight_rel:<8.3g} {r.kept:<6.3f} "
                f"{r.torch_logit_max:<9.3g} {r.torch_logit_mean:<10.3g} {r.cpp_logit_max:<7.3g} {r.cpp_logit_mean:<8.3g} "
                f"{r.cpp_top1_agree:<5.3f} {r.same_as_previous}"
            )
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _cpp_logits(path: Path, prompts: tuple[str, ...]) -> Any:
    import numpy as np

    from models.runtime import load_llama

    llama = load_llama(path, n_ctx=256, logits_all=True)
    rows = []
    for prompt in prompts:
        ids = llama.tokenize(prompt.encode(), add_bos=True, special=True)
        llama.reset()
        llama.eval(ids)
        rows.append(np.array(llama.scores[: len(ids)], dtype=np.float32))
    del llama
    return np.concatenate(rows)


def _torch_logits(model: Any, token_ids: list[list[int]], weights: dict[str, Any]) -> Any:
    import torch

    with torch.no_grad():
        params = dict(model.named_parameters())
        for name, value in weights.items():
            params[name].copy_(value)
        return torch.cat([model(torch.tensor([ids])).logits[0] for ids in token_ids]).numpy()


def measure_drift(
    gguf: Path,
    nights: int = 5,
    delta_std: float = 0.0,
    prompts: tuple[str, ...] = PROMPTS,
    work_dir: Path | None = None,
    seed: int = 0,
    touched_type: str = "file",
) -> DriftReport:
    """Run `nights` nights both ways from `gguf` and report the drift after each. The touched
    tensors are stored at `touched_type` (as `sleep.touched_type`), or at the file's types."""
    import torch

    from models.bridge import load_torch_model, read_hf_tensors
    from models.master import Master, linear_names
    from models.quantize import keep_touched_at, requantize
    from models.tokenizer import Tokenizer
    from models.writeback import write_merged_gguf

    started = time.perf_counter()
    gguf = Path(gguf)
    loaded = load_torch_model(gguf)
    names = linear_names(loaded.n_layers)
    w0 = read_hf_tensors(gguf, names)
    gen = torch.Generator().manual_seed(seed)
    delta = {k: torch.randn(w.shape, generator=gen) * (delta_std * float(w.std())) for k, w in w0.items()}
    tok = Tokenizer.from_gguf(gguf)
    token_ids = [tok.encode(p, add_bos=True) for p in prompts]
    torch0, cpp0 = _torch_logits(loaded.model, token_ids, {}), _cpp_logits(gguf, prompts)
    scale = sum(float(w.abs().sum()) for w in w0.values()) / sum(w.numel() for w in w0.values())
    n_el = sum(w.numel() for w in w0.values())
    report = DriftReport(
        model=loaded.meta.name or gguf.name,
        nights=nights,
        n_tensors=len(names),
        delta_std=delta_std,
        touched_type=touched_type,
    )
    with tempfile.TemporaryDirectory(prefix="nightcap-drift-", dir=work_dir) as tmp:
        for strategy in ("naive", "master"):
            master = Master()
            current, prev_sha = gguf, sha256_file(gguf)
            for night in range(1, nights + 1):
                merged, out = Path(tmp) / f"{strategy}-{night}.f16.gguf", Path(tmp) / f"{strategy}-{night}.gguf"
                if strategy == "naive":  # merge into the dequantized served weights
                    served = read_hf_tensors(current, names)
                    replacements = {k: served[k] + delta[k] for k in names}
                else:
                    master = master.merged(delta, w0 if night == 1 else {})
                    replacements = master.replacements()
                touched = write_merged_gguf(current, replacements, merged)
                ftype = loaded.meta.file_type
                requantize(merged, out, ftype, overrides=keep_touched_at(touched_type, ftype, touched))
                merged.unlink()
                wn = read_hf_tensors(out, names)
                err = [(wn[k] - w0[k] - night * delta[k]).abs() for k in names]
                want = sum(float((night * delta[k]).square().sum()) for k in names)
                got = sum(float(((wn[k] - w0[k]) * night * delta[k]).sum()) for k in names)
                torch_n, cpp_n = _torch_logits(loaded.model, token_ids, wn), _cpp_logits(out, prompts)
                sha = sha256_file(out)
                report.rows.append(
                    NightDrift(
                        strategy=strategy,
                        night=night,
                        weight_max=max(float(e.max()) for e in err),
                        weight_mean=sum(float(e.sum()) for e in err) / n_el,
                        weight_rel=sum(float(e.sum()) for e in err) / n_el / scale,
                        kept=got / want if want else 1.0,
                        torch_logit_max=float(abs(torch_n - torch0).max()),
                        torch_logit_mean=float(abs(torch_n - torch0).mean()),
                        cpp_logit_max=float(abs(cpp_n - cpp0).max()),
                        cpp_logit_mean=float(abs(cpp_n - cpp0).mean()),
                        cpp_top1_agree=float((cpp_n.argmax(-1) == cpp0.argmax(-1)).mean()),
                        same_as_previous=sha == prev_sha,
                    )
                )
                if current != gguf:
                    current.unlink()
                current, prev_sha = out, sha
    report.seconds = time.perf_counter() - started
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.drift", description=__doc__.split("\n\n")[0])
    parser.add_argument("gguf", type=Path)
    parser.add_argument("--nights", type=int, default=5)
    parser.add_argument("--delta-std", type=float, default=0.0, help="nightly delta, in units of the weights' std")
    parser.add_argument(
        "--touched-type",
        default="file",
        help="type of the touched tensors (as sleep.touched_type): Q8_0, Q6_K, ... or file",
    )
    args = parser.parse_args(argv)
    print(measure_drift(args.gguf, args.nights, args.delta_std, touched_type=args.touched_type).table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
