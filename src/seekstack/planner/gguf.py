"""Read a GGUF file's header: metadata and tensor table, never the weights.

Enough for planning: the architecture's shape (layers, heads, KV heads, head size, MLA ranks,
vocabulary) and the exact bytes of tensor data. Bad files get a clear error, not a crash.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import InvalidRequestError

MAGIC = b"GGUF"
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
STRING, ARRAY = 8, 9
MAX_STRING = 1 << 24
MAX_ITEMS = 1 << 26


@dataclass
class GGUFHeader:
    version: int
    metadata: dict[str, Any]
    tensor_count: int
    data_offset: int
    file_size: int

    @property
    def tensor_bytes(self) -> int:
        return self.file_size - self.data_offset

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))

    def arch(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(f"{self.architecture}.{key}", default)


def _read(f: BinaryIO, fmt: str) -> Any:
    size = struct.calcsize(fmt)
    data = f.read(size)
    if len(data) != size:
        raise EOFError
    return struct.unpack(fmt, data)[0]


def _string(f: BinaryIO) -> str:
    n = _read(f, "<Q")
    if n > MAX_STRING:
        raise ValueError(f"a string of {n} bytes")
    data = f.read(n)
    if len(data) != n:
        raise EOFError
    return data.decode("utf-8", "replace")


def _value(f: BinaryIO, kind: int, keep_arrays: bool) -> Any:
    if kind in _SCALARS:
        return _read(f, _SCALARS[kind])
    if kind == STRING:
        return _string(f)
    if kind == ARRAY:
        item, n = _read(f, "<I"), _read(f, "<Q")
        if n > MAX_ITEMS:
            raise ValueError(f"an array of {n} items")
        if item in _SCALARS and not keep_arrays:  # skip without decoding
            f.seek(n * struct.calcsize(_SCALARS[item]), 1)
            return n
        values = [_value(f, item, False) for _ in range(n)]
        return values if keep_arrays else n
    raise ValueError(f"unknown value type {kind}")


def read_header(path: Path) -> GGUFHeader:
    """Parse the header of ``path``; arrays are read as their length (e.g. the vocabulary size)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            if f.read(4) != MAGIC:
                raise InvalidRequestError(f"{path} is not a GGUF file (no GGUF magic)", fix="point at a .gguf model file")
            version = _read(f, "<I")
            if version not in (2, 3):
                raise InvalidRequestError(f"{path}: GGUF version {version} is not supported", fix="re-convert with a current llama.cpp")
            tensors, kvs = _read(f, "<Q"), _read(f, "<Q")
            if tensors > MAX_ITEMS or kvs > MAX_ITEMS:
                raise ValueError("implausible counts")
            metadata = {}
            for _ in range(kvs):
                key = _string(f)
                metadata[key] = _value(f, _read(f, "<I"), False)
            last_start = 0  # where the last tensor's data begins, relative to the data section
            for _ in range(tensors):
                _string(f)
                dims = _read(f, "<I")
                f.seek(8 * dims, 1)
                _read(f, "<I")  # the tensor's type
                last_start = max(last_start, _read(f, "<Q"))
            alignment = int(metadata.get("general.alignment", 32)) or 32
            offset = f.tell()
            offset += (-offset) % alignment
    except (EOFError, struct.error):
        raise InvalidRequestError(f"{path} is not a complete GGUF file: it is {size:,} bytes and ends inside its "
                                  "header (a cut-off download?)", fix="download it again and check its checksum") from None
    except ValueError as exc:
        raise InvalidRequestError(f"{path} is not a valid GGUF file: its header is damaged ({exc})",
                                  fix="download it again and check its checksum") from None
    except OSError as exc:
        raise InvalidRequestError(f"cannot read {path}: {exc.strerror}", fix="check the path and permissions") from None
    if offset > size:
        raise InvalidRequestError(f"{path} is truncated: its header needs {offset:,} bytes, the file has {size:,}",
                                  fix="download it again and check its checksum")
    if tensors and offset + last_start >= size:
        raise InvalidRequestError(f"{path} is truncated: its tensors need more than {offset + last_start:,} bytes, "
                                  f"the file has {size:,}", fix="download it again and check its checksum")
    return GGUFHeader(version, metadata, tensors, offset, size)
