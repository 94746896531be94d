"""Where and in what precision the sleep cycle trains: cuda, then mps, then cpu; fp32 or bf16.

bf16 mixed precision (autocast) runs the matmuls in bf16 while weights, the LoRA adapter, the
optimizer state and the loss stay fp32. "auto" uses it only where the hardware has native bf16
(CUDA GPUs that support it, CPUs with AVX512-BF16 or AMX): emulated bf16 is slower than fp32.
On the default model on a 2-core AVX512-BF16 CPU it made a training step about 1.5x faster.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch

from assistant.errors import ConfigError, SleepError


def pick_device(pref: str = "auto") -> torch.device:
    """The training device: for "auto" cuda, then mps, then cpu; an explicit choice must exist."""
    pref = (pref or "auto").strip().lower()
    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if pref == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu")
    if pref.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SleepError('sleep.device is "cuda" but torch sees no CUDA GPU; set sleep.device = "auto"')
        return torch.device(pref)
    if pref == "mps":
        if not has_mps:
            raise SleepError('sleep.device is "mps" but torch has no Metal support here; set sleep.device = "auto"')
        return torch.device("mps")
    if pref == "cpu":
        return torch.device("cpu")
    raise ConfigError(f"config.toml: 'sleep.device' must be auto, cuda, mps or cpu, got {pref!r}")


def _native_bf16(device: torch.device) -> bool:
    """Whether bf16 matmuls run natively (fast) here, rather than emulated (slow)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        try:  # Linux reports AVX512-BF16 / AMX in cpuinfo; elsewhere assume emulation
            with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
                flags = fh.read()
        except OSError:
            return False
        return "avx512_bf16" in flags or "amx_bf16" in flags
    return False


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 when training should run its matmuls under autocast, None for plain fp32."""
    precision = (precision or "auto").strip().lower()
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "auto":
        return torch.bfloat16 if _native_bf16(device) else None
    raise ConfigError(f"config.toml: 'sleep.precision' must be auto, fp32 or bf16, got {precision!r}")


def autocast(device: torch.device, dtype: torch.dtype | None) -> Any:
    """bf16 autocast on `device`, or nothing for fp32."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


@contextlib.contextmanager
def lora_input_casts_off(peft_model: Any, active: bool) -> Iterator[None]:
    """Under autocast, stop peft from casting each LoRA input back to fp32 (autocast casts it
    to bf16 again right after): two copies per adapted layer saved, about 4% of a step."""
    if not active:
        yield
        return
    from peft.helpers import disable_input_dtype_casting  # deferred: peft is heavy

    with disable_input_dtype_casting(peft_model):
        yield
