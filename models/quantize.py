"""Requantize a GGUF with llama.cpp: step 7 of the sleep cycle.

After write-back the touched tensors are F16; `llama_model_quantize` brings them back to the
generation's file type (e.g. Q4_K_M) with llama.cpp's own per-tensor type choices. Tensors
already of their target type are copied unchanged by llama.cpp. Output goes to a temp name and
is renamed over `dst`.

`overrides` names tensors to store at another type than the file type would choose (llama.cpp's
per-tensor type overrides): sleep keeps the tensors a night changed at Q8_0 inside a Q4_K_M
file (`sleep.touched_type`), because 4-bit rounding erases most of a night's small change. The
file keeps its file type; it grows by the difference (241 -> 278 MiB for the default model,
whose every layer matrix a night touches).
"""

from __future__ import annotations

import ctypes
import os
import re
import tempfile
from pathlib import Path
from typing import Mapping

from assistant.errors import ModelError
from assistant.fsutil import fsync_dir
from models.ggufmeta import read_meta

# general.file_type values that mean "not quantized" (F32, F16, BF16).
_UNQUANTIZED = frozenset({0, 1, 32})


def requantize(
    src: Path, dst: Path, ftype: int | None = None, n_threads: int = 0, overrides: Mapping[str, int] | None = None
) -> None:
    """Quantize `src` to `dst` with llama.cpp (LLAMA_FTYPE `ftype`, default: `src`'s
    `general.file_type`). `overrides` maps GGUF tensor names to the ggml type each must get
    instead. `n_threads` 0 means all cores. Raises ModelError on failure.

    llama.cpp's quantizer is one C call that nothing can interrupt, and on a 1-3B model it runs
    for a minute: it runs in a child process, and the parent waits at a stop point every tenth
    of a second, so a night asked to yield kills the child and raises `Stopped` at once."""
    import multiprocessing

    from assistant.stoppoints import Stopped, stop_point

    src, dst = Path(src), Path(dst)
    if ftype is None:
        ftype = read_meta(src).file_type
        if ftype is None:
            raise ModelError(f"{src} does not record its file type; choose the quantization type explicitly")
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    # spawn, not fork: the parent holds torch's thread pools, which a forked child inherits broken.
    child = multiprocessing.get_context("spawn").Process(
        target=_quantize_child,
        args=(str(src), tmp, int(ftype), int(n_threads), dict(overrides or {})),
        name="nightcap-quantize",
        daemon=True,
    )
    try:
        child.start()
        try:
            while child.is_alive():
                child.join(0.1)
                stop_point()
        except (Stopped, KeyboardInterrupt):
            child.kill()
            child.join()
            raise
        if child.exitcode != 0:
            why = (
                f"code {child.exitcode - _EXIT_BASE}"
                if child.exitcode and child.exitcode > _EXIT_BASE
                else (f"exit status {child.exitcode}")
            )
            raise ModelError(
                f"llama.cpp could not quantize {src.name} to file type {ftype} ({why}); "
                "the previous model keeps serving"
            )
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(dst.parent)


_EXIT_BASE = 64
"""The child exits 64 + llama.cpp's return code when it fails (0 when it succeeds)."""


def _quantize_child(src: str, out: str, ftype: int, n_threads: int, overrides: dict[str, int]) -> None:
    """The child process of `requantize`: one `llama_model_quantize` call."""
    import sys

    import llama_cpp  # deferred: loads the shared library

    from models.runtime import _quiet_llama_logs

    # llama.cpp logs a line per tensor; routed to Python logging, the terminal stays clean.
    _quiet_llama_logs()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = n_threads
    params.allow_requantize = True
    # The array (and the pattern strings it points to) must outlive the call: keep a reference.
    table = _override_table(llama_cpp, overrides)
    if table is not None:
        params.tt_overrides = ctypes.cast(table, ctypes.POINTER(llama_cpp.llama_model_tensor_override))
    rc = llama_cpp.llama_model_quantize(src.encode(), out.encode(), params)
    sys.exit(0 if rc == 0 else _EXIT_BASE + min(abs(int(rc)), 63))


def _override_table(llama_cpp, overrides: Mapping[str, int]):  # type: ignore[no-untyped-def]
    """llama.cpp's override array for `overrides`: one anchored pattern per tensor name,
    terminated by a null pattern. None when there is nothing to override."""
    if not overrides:
        return None
    entry = llama_cpp.llama_model_tensor_override
    table = (entry * (len(overrides) + 1))()
    for slot, (name, ggml_type) in zip(table, sorted(overrides.items())):
        slot.pattern = f"^{re.escape(name)}$".encode()
        slot.type = int(ggml_type)
    table[len(overrides)].pattern = None
    table[len(overrides)].type = llama_cpp.GGML_TYPE_COUNT
    return table


def touched_ggml_type(type_name: str) -> int | None:
    """The ggml type `sleep.touched_type` names (None for "file"). Raises ConfigError."""
    if type_name.lower() == "file":
        return None
    import gguf

    try:
        return int(gguf.GGMLQuantizationType[type_name.upper()])
    except KeyError:
        from assistant.errors import ConfigError

        raise ConfigError(
            f"sleep.touched_type '{type_name}' is not a ggml tensor type; use e.g. Q8_0, Q6_K, F16 or file"
        ) from None


def keep_touched_at(type_name: str, ftype: int | None, touched: list[str]) -> dict[str, int]:
    """The overrides that store each `touched` tensor at `type_name` (a ggml type such as Q8_0,
    or "file" for none) when quantizing to file type `ftype`. An unquantized file type keeps
    every tensor at full precision already: no overrides. Raises ConfigError for an unknown type."""
    ggml_type = touched_ggml_type(type_name)
    if ggml_type is None or not is_quantized_type(ftype):
        return {}
    return {name: ggml_type for name in touched}


def is_quantized_type(ftype: int | None) -> bool:
    """True for file types that `requantize` reproduces with loss (anything but F32/F16/BF16)."""
    return ftype is not None and ftype not in _UNQUANTIZED
