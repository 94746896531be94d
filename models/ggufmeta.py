"""Fast, defensive reader of a GGUF file's header: metadata fields and tensor directory.

`read_meta(path)` parses only the header (no tensor data) with `struct` over a memory map, so
validating a 250 MB model takes a fraction of a second; `gguf.GGUFReader` needs ~10 s on the
default model because it builds a numpy view for each of its 262,144 vocabulary strings.
Anything malformed (bad magic, unsupported version, truncated header or tensor data) is a
one-line `ModelError`. The bridge, write-back and model store all read files through here.

The byte span of the key/value section is kept (`kv_span`) so that write-back can copy every
field verbatim, whatever its type.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assistant.errors import ModelError

GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32

# GGUF value types -> struct format of one scalar (8 = string, 9 = array are handled apart).
_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
# Arrays longer than this (vocabularies, merges, scores) are skipped, not decoded: only their
# length is recorded, in `GGUFMeta.array_lengths`.
_KEEP_ARRAY_MAX = 4096


class _Truncated(Exception):
    """The header ends before a field it announces."""


@dataclass(frozen=True)
class TensorInfo:
    """One entry of the tensor directory. `shape` is in GGUF order (innermost dimension first)."""

    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int
    """Byte offset of the data, relative to `GGUFMeta.data_offset`."""
    n_bytes: int

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def torch_shape(self) -> tuple[int, ...]:
        """The same tensor's shape in row-major (numpy / torch) order."""
        return tuple(reversed(self.shape))


@dataclass
class GGUFMeta:
    """What Nightcap needs to know about a GGUF model file, read from its header."""

    path: Path
    version: int
    arch: str
    name: str | None
    file_type: int | None
    """`general.file_type` (llama.cpp's LLAMA_FTYPE, e.g. 15 = Q4_K_M), if the file records it."""
    n_layers: int
    chat_template: str | None
    n_params: int
    n_vocab: int
    alignment: int
    fields: dict[str, Any]
    """Every scalar field and every short array, decoded."""
    array_lengths: dict[str, int]
    """Length of every array field (long ones are not decoded)."""
    tensors: list[TensorInfo]
    kv_count: int
    kv_span: tuple[int, int]
    """Byte range [start, end) of the key/value section, for verbatim copies."""
    data_offset: int
    file_size: int
    _by_name: dict[str, TensorInfo] = field(default_factory=dict, repr=False)

    @property
    def file_type_name(self) -> str | None:
        """Human name of the file type, e.g. "Q4_K_M", or None if unknown."""
        if self.file_type is None:
            return None
        import gguf  # deferred: only this property needs the enum

        try:
            return gguf.LlamaFileType(self.file_type).name.removeprefix("MOSTLY_").removeprefix("ALL_")
        except ValueError:
            return f"type {self.file_type}"

    def arch_field(self, key: str, default: Any = None) -> Any:
        """A field under the architecture's prefix, e.g. `arch_field("block_count")`."""
        return self.fields.get(f"{self.arch}.{key}", default)

    def tensor(self, name: str) -> TensorInfo:
        if not self._by_name:
            self._by_name = {t.name: t for t in self.tensors}
        try:
            return self._by_name[name]
        except KeyError:
            raise ModelError(f"{self.path} has no tensor {name!r}; the model file is incomplete") from None


class _Cursor:
    """Bounds-checked little-endian reads from a buffer."""

    def __init__(self, buf: Any, pos: int = 0) -> None:
        self.buf, self.pos, self.end = buf, pos, len(buf)

    def take(self, n: int) -> int:
        start = self.pos
        if n < 0 or start + n > self.end:
            raise _Truncated
        self.pos = start + n
        return start

    def unpack(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        return struct.unpack_from(fmt, self.buf, self.take(size))[0]

    def string(self) -> str:
        n = self.unpack("<Q")
        start = self.take(n)
        return bytes(self.buf[start : start + n]).decode("utf-8", errors="replace")

    def skip_strings(self, count: int) -> None:
        buf, pos, end = self.buf, self.pos, self.end
        for _ in range(count):  # a vocabulary is ~262k strings: keep this loop lean
            if pos + 8 > end:
                raise _Truncated
            pos += 8 + int.from_bytes(buf[pos : pos + 8], "little")
        if pos > end:
            raise _Truncated
        self.pos = pos

    def value(self, vtype: int) -> tuple[Any, int | None]:
        """Read one value; returns (decoded value or None if skipped, array length or None)."""
        if vtype == _STRING:
            return self.string(), None
        if vtype == _ARRAY:
            etype, count = self.unpack("<I"), self.unpack("<Q")
            if etype in _SCALAR:
                size = struct.calcsize(_SCALAR[etype])
                start = self.take(size * count)
                if count > _KEEP_ARRAY_MAX:
                    return None, count
                fmt = "<" + _SCALAR[etype][1] * count
                return list(struct.unpack_from(fmt, self.buf, start)), count
            if etype == _STRING:
                if count > _KEEP_ARRAY_MAX:
                    self.skip_strings(count)
                    return None, count
                return [self.string() for _ in range(count)], count
            if etype == _ARRAY:  # nested arrays: not used by the architectures we train
                return [self.value(_ARRAY)[0] for _ in range(count)], count
            raise ValueError(f"unknown array element type {etype}")
        if vtype in _SCALAR:
            return self.unpack(_SCALAR[vtype]), None
        raise ValueError(f"unknown value type {vtype}")


def _tensor_bytes(ggml_type: int, shape: tuple[int, ...]) -> int:
    import gguf  # deferred: the quant size table lives there

    try:
        block, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(ggml_type)]
    except (KeyError, ValueError):
        raise ValueError(f"unknown tensor type {ggml_type}") from None
    n = 1
    for d in shape:
        n *= d
    if shape and shape[0] % block:
        raise ValueError(f"row of {shape[0]} is not a multiple of the block size {block}")
    return n // block * type_size


def _count(fields: dict[str, Any], key: str, default: int, *, minimum: int) -> int:
    """An integer header field (a damaged header may hold a string, a list or a zero there)."""
    value = fields.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{key} is {value!r}, not a whole number of at least {minimum}")
    return value


def read_meta(path: Path) -> GGUFMeta:
    """Parse the header of the GGUF at `path`. Raises ModelError if it is not a usable GGUF."""
    path = Path(path)
    not_gguf = f"{path} is not a GGUF model file; pass a .gguf file made for llama.cpp"
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, 2)
            if size < 24:
                raise ModelError(not_gguf)
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                if mm[:4] != GGUF_MAGIC:
                    raise ModelError(not_gguf)
                return _parse(path, mm, size)
    except FileNotFoundError:
        raise ModelError(f"{path} does not exist; check the path to the model file") from None
    except IsADirectoryError:
        raise ModelError(not_gguf) from None
    except (_Truncated, ValueError, UnicodeDecodeError, struct.error, OverflowError, RecursionError) as err:
        reason = "it is truncated" if isinstance(err, _Truncated) else f"its header is damaged ({err})"
        raise ModelError(f"{path} is not a usable GGUF model file: {reason}; download or copy it again") from None
    except OSError as err:
        raise ModelError(f"cannot read {path} ({err.strerror}); check the file and its permissions") from None


def _parse(path: Path, mm: mmap.mmap, size: int) -> GGUFMeta:
    cur = _Cursor(mm, 4)
    version = cur.unpack("<I")
    if version not in (2, 3):
        raise ModelError(
            f"{path} is GGUF version {version}, which Nightcap cannot read; convert it with a recent llama.cpp"
        )
    n_tensors, kv_count = cur.unpack("<Q"), cur.unpack("<Q")
    kv_start = cur.pos
    fields: dict[str, Any] = {}
    lengths: dict[str, int] = {}
    for _ in range(kv_count):
        key = cur.string()
        value, length = cur.value(cur.unpack("<I"))
        if value is not None:
            fields[key] = value
        if length is not None:
            lengths[key] = length
    kv_end = cur.pos
    tensors = []
    for _ in range(n_tensors):
        name = cur.string()
        n_dims = cur.unpack("<I")
        if n_dims > 8:
            raise ValueError(f"tensor {name!r} has {n_dims} dimensions")
        shape = tuple(cur.unpack("<Q") for _ in range(n_dims))
        ggml_type, offset = cur.unpack("<I"), cur.unpack("<Q")
        tensors.append(TensorInfo(name, shape, ggml_type, offset, _tensor_bytes(ggml_type, shape)))
    alignment = _count(fields, "general.alignment", DEFAULT_ALIGNMENT, minimum=1)
    data_offset = -(-cur.pos // alignment) * alignment
    for t in tensors:
        if data_offset + t.offset + t.n_bytes > size:
            raise _Truncated
    arch = fields.get("general.architecture")
    if not isinstance(arch, str):
        raise ValueError("no general.architecture field")
    file_type = _count(fields, "general.file_type", -1, minimum=0) if "general.file_type" in fields else None
    return GGUFMeta(
        path=path,
        version=version,
        arch=arch,
        name=fields.get("general.name"),
        file_type=file_type,
        n_layers=_count(fields, f"{arch}.block_count", 0, minimum=0),
        chat_template=fields.get("tokenizer.chat_template"),
        n_params=sum(t.n_elements for t in tensors),
        n_vocab=lengths.get("tokenizer.ggml.tokens", 0),
        alignment=alignment,
        fields=fields,
        array_lengths=lengths,
        tensors=tensors,
        kv_count=kv_count,
        kv_span=(kv_start, kv_end),
        data_offset=data_offset,
        file_size=size,
    )
