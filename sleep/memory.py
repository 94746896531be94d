"""Keeping a night's training memory flat on CPU.

Two things make a CPU night's resident memory climb step after step although each step frees
what it allocated: glibc keeps freed heap blocks for reuse instead of handing them back, and
oneDNN (torch's CPU kernels) keeps a compiled kernel per tensor shape it has met, up to 1,024
of them, while every micro-batch has its own sequence length. Measured on the default model,
20 training steps on a 36-item night's examples (one run each):

    glibc and oneDNN defaults                 2.55 s/step, peak 3283 MB
    malloc_trim after every step              3.08 s/step, peak 3008 MB
      + a kernel cache of 256                 2.68 s/step, peak 2832 MB
      + a kernel cache of 64                  2.97 s/step, peak 2699 MB
      + no kernel cache                       5.71 s/step, peak 2633 MB

A whole night of 40 development items (`nightcap bench nights --nights 1 --per-night 40`, 120
steps, one run each; the training itself is the same in all three, same losses and recall):

    glibc and oneDNN defaults                 night 719 s (train 572 s), peak 3854 MB (merge 3666)
    trim after every step + cache of 256      night 796 s (train 636 s), peak 3084 MB (merge 2226)
    trim after every step + cache of 64       night 734 s (train 589 s), peak 2969 MB (merge 2216)

The times of single runs spread by about 10% here (the 256 run was the slowest, against the
20-step figures above), so the cost of the trim is a few percent at most.

A night in a long-lived process (the daemon) also leaves objects that only the cycle collector
frees; `settle` collects them and trims, before and after the night and before the stages that
follow the most garbage (`sleep.cycle.SETTLE_BEFORE`). Two short nights (4 conversations, 8 steps)
in one process on a slept default model, one run each:

    without settle                after night 1: 1142 MB held; night 2 peak 3166 MB (train 3059, gate 2625)
    settle before every stage     after night 1:  721 MB held; night 2 peak 3137 MB (train 3044, gate 2455)
    settle before train and gate  after night 1:  725 MB held; night 2 peak 3167 MB (train 2779, gate 2440)

(night 2's peak is in its replay stage, which the settles leave alike). A fresh process's night
1 peaked at 2748-2780 MB: what a process keeps of its first night (torch and the rest imported, a
fragmented heap) still costs a later night in it about 400 MB, which is why the daemon runs each
night in a process of its own (`sleep.daemon.night_in_child`).

`release_freed_memory` is the trim; `limit_kernel_cache` sets the cache's capacity, which
oneDNN reads once, at its first use in the process: it runs when the command line starts.
No torch import here.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import os

KERNEL_CACHE_CAPACITY = 64
"""oneDNN primitive-cache entries (its default is 1,024): enough for a step's own shapes to be
reused within it, small enough that a night's many sequence lengths do not pile up."""


def limit_kernel_cache(capacity: int = KERNEL_CACHE_CAPACITY) -> None:
    """Cap oneDNN's kernel cache unless the environment already sets it. Only effective before
    torch first runs a CPU kernel in this process."""
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", str(capacity))


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


def release_freed_memory() -> None:
    """Hand memory that Python and torch freed back to the OS (glibc keeps small freed blocks
    for reuse; without this the process stays as large as its largest moment). A no-op where
    the C library is not glibc."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def settle() -> None:
    """Free what only the cycle collector can (objects in reference cycles, such as a closed
    llama.cpp wrapper and the buffers it points to), then hand the freed memory back to the OS.
    Before the heaviest of a night's stages and around the night, so that a stage starts from
    what the night still needs and a long-lived process does not keep what a night left."""
    gc.collect()
    release_freed_memory()
