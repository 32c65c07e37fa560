"""Self-check for logitpair_torch.checkpoint (needs torch; `make test` does
not run it).

Run with `/usr/bin/python3 -m pytest python/tests` or as a plain script:
`/usr/bin/python3 python/tests/test_checkpoint.py`.
"""
import json
import os
import sys
import tempfile

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from logitpair_torch import models, safetensors_np as st  # noqa: E402
from logitpair_torch.checkpoint import load_checkpoint  # noqa: E402


def test_round_trip_from_metadata():
    cfg = {"conv1": 2, "conv2": 3, "hidden": 8, "classes": 10}
    torch.manual_seed(0)
    src = models.build("madry-mnist", cfg).eval()
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "ckpt-00000007.safetensors")
        st.save_torch(src.state_dict(), path, {"model": "madry-mnist", "config": json.dumps(cfg), "step": "7"})
        model, meta = load_checkpoint(path)
    assert meta["step"] == "7" and not model.training
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model(x), src(x))


def test_state_and_bare_files_refused():
    with tempfile.TemporaryDirectory() as d:
        state = os.path.join(d, "ckpt-00000007.state.safetensors")
        st.save_torch({"optim.m": torch.zeros(3)}, state, {"format": "logitpair-train-state-v1", "step": "7"})
        bare = os.path.join(d, "bare.safetensors")
        st.save_torch({"w": torch.zeros(3)}, bare)
        for path, want in ((state, "ckpt-00000007.safetensors"), (bare, "no logitpair metadata")):
            try:
                load_checkpoint(path)
            except ValueError as e:
                assert want in str(e), e
            else:
                raise AssertionError(f"{path} loaded")


if __name__ == "__main__":
    for name, fn in sorted(globals().items()):
        if name.startswith("test_") and callable(fn):
            fn()
            print("ok", name)
