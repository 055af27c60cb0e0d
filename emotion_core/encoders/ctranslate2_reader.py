"""Read a CTranslate2 `model.bin` into numpy arrays without importing ctranslate2.

Layout (little-endian, see ctranslate2/specs/model_spec.py `_serialize`):
  uint32 binary version
  version >= 2: spec name (uint16 length incl. NUL, bytes, NUL) + uint32 spec revision
  uint32 number of variables, then per variable:
    name, uint8 rank, uint32 × rank dims,
    version >= 4: uint8 dtype id (DataType enum) | older: uint8 item size (float32 or int8/16/32 implied),
    uint32 num_bytes, raw data
  version >= 3: uint32 number of aliases, then (alias name, target name) pairs
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

#: ctranslate2 DataType enum (include/ctranslate2/types.h): float32, int8, int16, int32, float16, bfloat16.
DTYPE_IDS: dict[int, str] = {0: "float32", 1: "int8", 2: "int16", 3: "int32", 4: "float16", 5: "bfloat16"}
#: Pre-v4 files store the item size instead; 4 bytes always meant float32 (there were no int32 weights).
_ITEM_SIZE_DTYPES = {1: "int8", 2: "int16", 4: "float32"}
MAX_KNOWN_VERSION = 6
_MAX_RANK = 8


class CT2FormatError(ValueError):
    """The file is truncated, corrupt, or not a CTranslate2 model.bin."""


@dataclass
class CT2Model:
    binary_version: int
    spec_name: str | None  # None for binary version 1
    spec_revision: int | None
    #: name → array (aliases resolved: an alias maps to the same array object as its target).
    variables: dict[str, np.ndarray]
    aliases: dict[str, str] = field(default_factory=dict)


class _Cursor:
    def __init__(self, buf: memoryview, source: str):
        self.buf, self.pos, self.source = buf, 0, source

    def take(self, n: int, what: str) -> memoryview:
        if n < 0 or self.pos + n > len(self.buf):
            raise CT2FormatError(
                f"{self.source}: truncated while reading {what} at byte {self.pos} "
                f"(needs {n} bytes, file has {len(self.buf)})"
            )
        chunk = self.buf[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str, what: str):
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))[0]

    def string(self, what: str) -> str:
        length = self.unpack("H", f"{what} length")
        raw = bytes(self.take(length, what))
        if length == 0 or raw[-1] != 0:
            raise CT2FormatError(f"{self.source}: {what} at byte {self.pos - length} is not NUL-terminated")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CT2FormatError(f"{self.source}: {what} is not UTF-8 ({exc})") from None


def _open_buffer(source: str | os.PathLike | Sequence[str | os.PathLike]) -> tuple[memoryview, str]:
    """One file → read-only mmap (zero copy). Several parts (a model.bin split for packaging) → read once,
    each straight into its slice of a single buffer (no temporary joined file, no second copy)."""
    paths = [Path(source)] if isinstance(source, (str, os.PathLike)) else [Path(p) for p in source]
    if not paths:
        raise ValueError("no model.bin path given")
    label = str(paths[0]) if len(paths) == 1 else " + ".join(str(p) for p in paths)
    if len(paths) == 1:
        with open(paths[0], "rb") as fh:
            if os.fstat(fh.fileno()).st_size == 0:
                raise CT2FormatError(f"{label}: empty file")
            # The mmap stays alive as long as any array viewing it does (buffer export keeps a reference).
            return memoryview(mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)), label
    sizes = [p.stat().st_size for p in paths]
    buf = bytearray(sum(sizes))
    view, offset = memoryview(buf), 0
    for path, size in zip(paths, sizes):
        with open(path, "rb") as fh:
            if fh.readinto(view[offset : offset + size]) != size:
                raise CT2FormatError(f"{path}: changed size while reading")
        offset += size
    return view, label


def read_model(source: str | os.PathLike | Sequence[str | os.PathLike]) -> CT2Model:
    """Parse a CTranslate2 model.bin (a path, or the ordered parts of a split file).

    Arrays are read-only views of the file data (float16 stays float16; bfloat16 is widened to float32
    because numpy has no bfloat16). Raises CT2FormatError for truncated or foreign files.
    """
    buf, label = _open_buffer(source)
    cur = _Cursor(buf, label)
    version = cur.unpack("I", "binary version")
    if not 1 <= version <= MAX_KNOWN_VERSION:
        raise CT2FormatError(
            f"{label}: not a CTranslate2 model.bin (binary version {version}, expected 1..{MAX_KNOWN_VERSION})"
        )
    spec_name = spec_revision = None
    if version >= 2:
        spec_name = cur.string("spec name")
        spec_revision = cur.unpack("I", "spec revision")

    variables: dict[str, np.ndarray] = {}
    for index in range(cur.unpack("I", "variable count")):
        name = cur.string(f"name of variable #{index}")
        rank = cur.unpack("B", f"rank of {name}")
        if rank > _MAX_RANK:
            raise CT2FormatError(f"{label}: variable {name!r} has implausible rank {rank} (corrupt file?)")
        shape = tuple(cur.unpack("I", f"dims of {name}") for _ in range(rank))
        if version >= 4:
            type_id = cur.unpack("B", f"dtype of {name}")
            dtype = DTYPE_IDS.get(type_id)
        else:
            type_id = cur.unpack("B", f"item size of {name}")
            dtype = _ITEM_SIZE_DTYPES.get(type_id)
        if dtype is None:
            raise CT2FormatError(f"{label}: variable {name!r} has unknown dtype code {type_id}")
        num_bytes = cur.unpack("I", f"size of {name}")
        itemsize = 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize
        if num_bytes != int(np.prod(shape, dtype=np.int64)) * itemsize:
            raise CT2FormatError(f"{label}: variable {name!r} {shape} {dtype} claims {num_bytes} bytes")
        data = cur.take(num_bytes, f"data of {name}")
        if dtype == "bfloat16":  # bf16 is the top half of a float32
            array = (np.frombuffer(data, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            array = np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<"))
        variables[name] = array.reshape(shape)

    aliases: dict[str, str] = {}
    if version >= 3:
        for index in range(cur.unpack("I", "alias count")):
            alias = cur.string(f"alias #{index}")
            aliases[alias] = cur.string(f"target of alias {alias!r}")
        for alias, target in aliases.items():
            seen = {alias}
            while target in aliases and target not in seen:  # aliases may chain
                seen.add(target)
                target = aliases[target]
            if target not in variables:
                raise CT2FormatError(f"{label}: alias {alias!r} points to missing variable {target!r}")
            variables[alias] = variables[target]
    if cur.pos != len(buf):
        raise CT2FormatError(f"{label}: {len(buf) - cur.pos} unexpected trailing bytes after the model data")
    return CT2Model(version, spec_name, spec_revision, variables, aliases)
