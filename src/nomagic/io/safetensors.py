"""The safetensors format, read and written with NumPy alone, plus atomic file writes.

A safetensors file is: 8 bytes (little-endian u64) giving the header's length, a JSON header
mapping each tensor name to its dtype, shape and byte range, an optional ``__metadata__`` map of
strings, then the raw little-endian tensor bytes. Data only: reading never runs code.
"""

from __future__ import annotations

import json
import math
import os
import struct
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..errors import InvalidInputError, ModelFileError

_DTYPES = {"F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
           "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
           "U64": np.dtype("<u8"), "U32": np.dtype("<u4"), "U16": np.dtype("<u2"), "U8": np.dtype("u1"),
           "BOOL": np.dtype("?")}
_NAMES = {v: k for k, v in _DTYPES.items()}
_MAX_HEADER = 100 * 1024 * 1024


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half."""
    path = Path(path)
    if path.is_dir():
        raise InvalidInputError(f"{path} is a directory; give a file name")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InvalidInputError(f"directory {parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), _FILE_MODE)  # mkstemp makes 0600; give what open() would
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def dumps(tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None) -> bytes:
    """The bytes of a safetensors file holding ``tensors`` and string ``metadata``."""
    header: dict = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    chunks, offset = [], 0
    for name in sorted(tensors):
        a = np.asarray(tensors[name])
        dt = a.dtype.newbyteorder("<") if a.dtype.byteorder == ">" else a.dtype
        if dt not in _NAMES:
            raise InvalidInputError(f"tensor {name!r} has dtype {a.dtype}, which cannot be saved")
        raw = np.ascontiguousarray(a, dtype=dt).tobytes()
        header[name] = {"dtype": _NAMES[dt], "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the header is padded to 8 bytes
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def save_file(path, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None) -> None:
    """Write a safetensors file atomically."""
    atomic_write_bytes(path, dumps(tensors, metadata))


def loads(data: bytes, source: str = "file") -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Parse safetensors bytes; any inconsistency raises ``ModelFileError``."""
    if len(data) < 8:
        raise ModelFileError(f"{source} is truncated: too short to be a safetensors file")
    (n,) = struct.unpack("<Q", data[:8])
    if n > _MAX_HEADER or 8 + n > len(data):
        raise ModelFileError(f"{source} is truncated or not a safetensors file (header length {n})")
    try:
        header = json.loads(data[8:8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ModelFileError(f"{source} has a corrupt header: {exc}") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{source} has a corrupt header: not a JSON object")
    metadata = header.pop("__metadata__", {}) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ModelFileError(f"{source} has corrupt metadata")
    body = memoryview(data)[8 + n:]
    tensors: dict[str, np.ndarray] = {}
    spans = []
    for name, info in header.items():
        if not isinstance(info, dict) or not _int_list(info.get("shape")) \
                or not _int_list(info.get("data_offsets")) or len(info["data_offsets"]) != 2:
            raise ModelFileError(f"{source}: tensor {name!r} has a malformed entry")
        if info.get("dtype") not in _DTYPES:
            raise ModelFileError(f"{source}: tensor {name!r} has dtype {info.get('dtype')!r}, which "
                                 f"this reader does not support ({', '.join(_DTYPES)})")
        dt = _DTYPES[info["dtype"]]
        shape = tuple(info["shape"])
        start, end = info["data_offsets"]
        if any(s < 0 for s in shape) or not 0 <= start <= end <= len(body):
            raise ModelFileError(f"{source} is truncated: tensor {name!r} lies past the end")
        if (end - start) != math.prod(shape) * dt.itemsize:
            raise ModelFileError(f"{source}: tensor {name!r} has {end - start} bytes for shape {shape}")
        spans.append((start, end))
        tensors[name] = np.frombuffer(body[start:end], dtype=dt).reshape(shape).copy()
    spans.sort()
    covered = 0
    for start, end in spans:
        if start != covered:
            raise ModelFileError(f"{source}: tensor data overlaps or leaves gaps (tampered?)")
        covered = end
    if covered != len(body):
        raise ModelFileError(f"{source}: {len(body) - covered} stray bytes after the tensors")
    return tensors, metadata


def _int_list(value) -> bool:
    return isinstance(value, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in value)


def load_file(path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read a safetensors file: (tensors, metadata)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ModelFileError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise ModelFileError(f"{path} is a directory, not a model file") from None
    return loads(data, str(path))
