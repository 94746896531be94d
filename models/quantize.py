"""Requantize a GGUF with llama.cpp: step 7 of the sleep cycle.

After write-back the touched tensors are F16; `llama_model_quantize` brings them back to the
generation's file type (e.g. Q4_K_M) with llama.cpp's own per-tensor type choices, so the new
generation has the same size and tensor-type mix as the old one. Tensors already of their target
type are copied unchanged by llama.cpp. Output goes to a temp name and is renamed over `dst`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from assistant.errors import ModelError
from assistant.fsutil import fsync_dir
from models.ggufmeta import read_meta

# general.file_type values that mean "not quantized" (F32, F16, BF16).
_UNQUANTIZED = frozenset({0, 1, 32})


def requantize(src: Path, dst: Path, ftype: int | None = None, n_threads: int = 0) -> None:
    """Quantize `src` to `dst` with llama.cpp (LLAMA_FTYPE `ftype`, default: `src`'s
    `general.file_type`). `n_threads` 0 means all cores. Raises ModelError on failure."""
    import llama_cpp  # deferred: loads the shared library

    from models.runtime import _quiet_llama_logs

    # llama.cpp logs a line per tensor; routed to Python logging, the terminal stays clean.
    _quiet_llama_logs()

    src, dst = Path(src), Path(dst)
    if ftype is None:
        ftype = read_meta(src).file_type
        if ftype is None:
            raise ModelError(f"{src} does not record its file type; choose the quantization type explicitly")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = int(ftype)
    params.nthread = int(n_threads)
    params.allow_requantize = True
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    try:
        rc = llama_cpp.llama_model_quantize(str(src).encode(), tmp.encode(), params)
        if rc != 0:
            raise ModelError(f"llama.cpp could not quantize {src.name} to file type {ftype} (code {rc}); the previous model keeps serving")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(dst.parent)


def is_quantized_type(ftype: int | None) -> bool:
    """True for file types that `requantize` reproduces with loss (anything but F32/F16/BF16)."""
    return ftype is not None and ftype not in _UNQUANTIZED
