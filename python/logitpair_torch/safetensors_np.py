"""Minimal safetensors reader/writer in plain Python + numpy.

Format: 8-byte little-endian u64 header length N, N bytes of JSON header
``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}``
padded with spaces to a multiple of 8, then the raw little-endian tensor data.
Tensors are laid out in sorted-name order; offsets are relative to the start
of the data section.
"""
import json
import struct

import numpy as np

DTYPES = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_NAMES = {v: k for k, v in DTYPES.items()}
MAX_HEADER = 100 << 20


def save_file(tensors, path, metadata=None):
    header, blobs, off = {}, [], 0
    if metadata:  # first, keys sorted: byte-identical to the Go encoder
        header["__metadata__"] = {str(k): str(v) for k, v in sorted(metadata.items())}
    for name in sorted(tensors):
        a = np.asarray(tensors[name])
        dt = a.dtype.newbyteorder("<") if a.dtype.byteorder == ">" else a.dtype
        if dt not in _NAMES:
            raise ValueError(f"tensor {name!r}: unsupported dtype {a.dtype}")
        raw = np.ascontiguousarray(a, dtype=dt).tobytes()
        header[name] = {"dtype": _NAMES[dt], "shape": list(a.shape),
                        "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for b in blobs:
            f.write(b)


def load_file(path):
    with open(path, "rb") as f:
        buf = f.read()
    if len(buf) < 8:
        raise ValueError(f"{path}: truncated: {len(buf)} bytes, need 8 for header length")
    (n,) = struct.unpack("<Q", buf[:8])
    if n > MAX_HEADER or 8 + n > len(buf):
        raise ValueError(f"{path}: header length {n} exceeds file size {len(buf)} or cap")
    try:
        header = json.loads(buf[8:8 + n].decode("utf-8"))
    except ValueError as e:
        raise ValueError(f"{path}: invalid JSON header at byte 8: {e}") from None
    meta = header.pop("__metadata__", None) or {}
    data = memoryview(buf)[8 + n:]
    out = {}
    for name, info in header.items():
        dt = DTYPES.get(info["dtype"])
        if dt is None:
            raise ValueError(f"{path}: tensor {name!r}: unknown dtype {info['dtype']!r}")
        b, e = info["data_offsets"]
        shape = tuple(info["shape"])
        need = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
        if not (0 <= b <= e <= len(data)) or e - b != need:
            raise ValueError(f"{path}: tensor {name!r}: bad offsets [{b},{e}] for "
                             f"{need} bytes (data section is {len(data)} bytes; file truncated?)")
        out[name] = np.frombuffer(data[b:e], dtype=dt).reshape(shape).copy()
    return out, meta


def save_torch(state_dict, path, metadata=None):
    save_file({k: v.detach().cpu().numpy() for k, v in state_dict.items()}, path, metadata)


def load_torch(path):
    import torch
    tensors, _ = load_file(path)
    return {k: torch.from_numpy(v) for k, v in tensors.items()}
