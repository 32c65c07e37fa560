"""Self-check for logitpair_torch.safetensors_np.

Run with `/usr/bin/python3 -m pytest python/tests` or as a plain script:
`/usr/bin/python3 python/tests/test_safetensors_np.py`.
"""
import json
import os
import struct
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from logitpair_torch import safetensors_np as st  # noqa: E402


def _sample():
    rng = np.random.default_rng(0)
    return {
        "f32": rng.standard_normal((2, 3)).astype(np.float32),
        "f64": rng.standard_normal((3,)).astype(np.float64),
        "f16": rng.standard_normal((1, 2, 2)).astype(np.float16),
        "i64": np.array([-(1 << 40), 0, 7], dtype=np.int64),
        "i32": np.arange(5, dtype=np.int32).reshape(5, 1),
        "u8": np.array([0, 255, 3], dtype=np.uint8),
        "bool": np.array([[True, False]]),
        "scalar": np.array(1.5, dtype=np.float32),
        "empty": np.zeros((0, 4), dtype=np.float32),
    }


def test_roundtrip_and_alignment():
    tensors = _sample()
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "t.safetensors")
        st.save_file(tensors, path, {"k": "v"})
        got, meta = st.load_file(path)
        assert meta == {"k": "v"}
        assert sorted(got) == sorted(tensors)
        for k, v in tensors.items():
            assert got[k].dtype == v.dtype and got[k].shape == v.shape, k
            assert np.array_equal(got[k], v), k
        raw = open(path, "rb").read()
        (n,) = struct.unpack("<Q", raw[:8])
        assert n % 8 == 0 and (8 + n) % 8 == 0
        header = json.loads(raw[8:8 + n])
        names = sorted(k for k in header if k != "__metadata__")
        offs = [header[k]["data_offsets"] for k in names]
        assert offs[0][0] == 0 and offs[-1][1] == len(raw) - 8 - n
        assert all(a[1] == b[0] for a, b in zip(offs, offs[1:])), "sorted, contiguous layout"


def test_no_metadata():
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "t.safetensors")
        st.save_file({"a": np.ones(2, np.float32)}, path)
        raw = open(path, "rb").read()
        assert b"__metadata__" not in raw
        assert st.load_file(path)[1] == {}


def test_truncated_raises():
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "t.safetensors")
        st.save_file(_sample(), path)
        raw = open(path, "rb").read()
        for cut in (4, 20, len(raw) - 3):
            bad = os.path.join(d, "bad.safetensors")
            open(bad, "wb").write(raw[:cut])
            try:
                st.load_file(bad)
            except ValueError as e:
                assert "bad.safetensors" in str(e), e
            else:
                raise AssertionError(f"truncation at {cut} not detected")


if __name__ == "__main__":
    for name, fn in sorted(globals().items()):
        if name.startswith("test_") and callable(fn):
            fn()
            print("ok", name)
