"""Write merged weights back into a GGUF: step 6 of the sleep cycle.

The output is the source file with some tensors replaced: the header's key/value section is
copied byte for byte (so every field keeps its exact type, tokenizer and chat template
included), untouched tensors are copied raw in their quantized form, and each replaced tensor is
written as F16 (vectors as F32) under its GGUF name, in GGUF layout (llama q/k re-permuted,
Gemma norms +1; see `models.tensormap`). `models.quantize` then brings the F16 tensors back to
the generation's file type.

The file is written to a temp name beside `dst` and renamed over it at the end, so `dst` is
either absent/old or complete.
"""

from __future__ import annotations

import errno
import mmap
import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Mapping

from assistant.errors import DiskFullError, ModelError
from assistant.fsutil import fsync_dir
from assistant.stoppoints import stop_point
from models.ggufmeta import GGUF_MAGIC, GGUFMeta, read_meta
from models.tensormap import arch_spec, gguf_name, head_counts, name_map, to_gguf

GGML_F32, GGML_F16 = 0, 1
_F16_MAX = 65504.0
_CHUNK = 64 << 20  # copy raw tensor data in 64 MiB slices: bounded memory for big models


@dataclass(frozen=True)
class _Replacement:
    hf_name: str
    ggml_type: int
    n_bytes: int


def plan_replacements(meta: GGUFMeta, replacements: Mapping[str, Any]) -> dict[str, _Replacement]:
    """GGUF tensor name -> what replaces it, after checking every name and shape up front.

    Raises ModelError for a name the file does not hold or a shape that differs from the source
    tensor. Values are checked later, one tensor at a time, as they are encoded.
    """
    names = name_map(meta.arch, meta.n_layers)
    by_name = {t.name: t for t in meta.tensors}
    plan: dict[str, _Replacement] = {}
    for hf_name, value in replacements.items():
        tensor_name = gguf_name(names, hf_name)
        info = by_name.get(tensor_name) if tensor_name else None
        if info is None:
            raise ModelError(f"{meta.path} has no tensor for {hf_name}; the merged weights do not belong to this model")
        if tuple(value.shape) != info.torch_shape:
            raise ModelError(f"merged {hf_name} has shape {tuple(value.shape)}, the model expects {info.torch_shape}")
        ggml_type = GGML_F16 if len(info.shape) > 1 else GGML_F32
        plan[info.name] = _Replacement(hf_name, ggml_type, info.n_elements * (2 if ggml_type == GGML_F16 else 4))
    return plan


def _encode(meta: GGUFMeta, tensor_name: str, rep: _Replacement, value: Any) -> bytes:
    """One replacement's bytes in GGUF layout. ModelError if F16 cannot hold its values."""
    import torch

    w = value.detach().to("cpu", torch.float32)
    # aminmax propagates NaN and is ~50x faster than isfinite().all() on CPU; the bound also
    # catches values that F16 would turn into inf. A diverged merge must never reach a model.
    lo, hi = (float(x) for x in torch.aminmax(w))
    if not (-_F16_MAX <= lo and hi <= _F16_MAX):
        raise ModelError(f"merged {rep.hf_name} holds non-finite or huge values; the night's training diverged")
    w = to_gguf(arch_spec(meta.arch), rep.hf_name, tensor_name, w, head_counts(meta))
    dtype = torch.float16 if rep.ggml_type == GGML_F16 else torch.float32
    return w.to(dtype).contiguous().numpy().tobytes()


def _string(s: str) -> bytes:
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def _pad(n: int, alignment: int) -> int:
    return -n % alignment


def _write_gguf(
    fh: BinaryIO, mm: Any, meta: GGUFMeta, plan: Mapping[str, _Replacement], values: Mapping[str, Any]
) -> None:
    # Layout: magic, version, counts, the source's KV bytes verbatim, the tensor directory with
    # new types/offsets, padding to the alignment, then each tensor's data, each aligned.
    align = meta.alignment
    sizes: list[int] = []
    directory = bytearray()
    offset = 0
    for t in meta.tensors:
        rep = plan.get(t.name)
        ggml_type, size = (rep.ggml_type, rep.n_bytes) if rep else (t.ggml_type, t.n_bytes)
        directory += _string(t.name) + struct.pack("<I", len(t.shape))
        directory += struct.pack(f"<{len(t.shape)}Q", *t.shape) + struct.pack("<IQ", ggml_type, offset)
        sizes.append(size)
        offset += size + _pad(size, align)
    kv_start, kv_end = meta.kv_span
    header = GGUF_MAGIC + struct.pack("<IQQ", meta.version, len(meta.tensors), meta.kv_count)
    head = header + mm[kv_start:kv_end] + bytes(directory)
    fh.write(head + bytes(_pad(len(head), align)))
    for t, size in zip(meta.tensors, sizes):
        stop_point()  # a night asked to stop gives the machine back between tensors (the file is dropped)
        if rep := plan.get(t.name):  # encoded one at a time: peak memory is one tensor
            data = _encode(meta, t.name, rep, values[rep.hf_name])
            if len(data) != size:  # a wrong size would shift every later offset: never write it
                raise ModelError(f"merged {rep.hf_name} encoded to {len(data)} bytes, expected {size}")
            fh.write(data)
        else:
            start = meta.data_offset + t.offset
            for pos in range(start, start + size, _CHUNK):
                fh.write(mm[pos : min(pos + _CHUNK, start + size)])
        fh.write(bytes(_pad(size, align)))


def write_merged_gguf(src: Path, replacements: Mapping[str, Any], dst: Path) -> list[str]:
    """Write `src` with the HF-named tensors in `replacements` replaced, to `dst` (atomically).

    `replacements` maps HF parameter names (e.g. "model.layers.3.self_attn.q_proj.weight") to
    torch tensors in HF layout. Returns the GGUF names of the matrices written as F16 (the ones
    quantization will touch). Raises ModelError (bad name, shape or values) or DiskFullError.
    """
    meta = read_meta(Path(src))
    plan = plan_replacements(meta, replacements)
    dst = Path(dst)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    try:
        with os.fdopen(fd, "wb") as fh, open(meta.path, "rb") as sf:
            with mmap.mmap(sf.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                _write_gguf(fh, mm, meta, plan, replacements)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dst)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(f"the disk holding {dst.parent} is full; free some space and run sleep again") from err
        raise
    fsync_dir(dst.parent)
    return [name for name, rep in plan.items() if rep.ggml_type == GGML_F16]
