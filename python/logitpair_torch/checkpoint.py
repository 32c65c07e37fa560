"""Load a logitpair checkpoint into its PyTorch module.

A logitpair model file (ckpt-NNNNNNNN.safetensors, best.safetensors, the -ema
file) holds every tensor under its PyTorch state_dict name and layout, and its
safetensors metadata names the architecture ("model") and its config as JSON
("config"; the keyword arguments of models.build). So:

    tensors, meta = safetensors_np.load_file(path)
    model = models.build(meta["model"], json.loads(meta["config"]))
    model.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()}, strict=True)

load_checkpoint does that, and refuses the files that are not a model (the
optimizer state ckpt-NNNNNNNN.state.safetensors, a shard state) with the file
to give instead.
"""
import json
import os

import torch

from . import models, safetensors_np

STATE_FORMATS = ("logitpair-train-state-v1", "logitpair-shard-state-v1")


def load_checkpoint(path, map_location="cpu"):
    """Returns (model, metadata): the PyTorch module named by the file's
    metadata, with the file's tensors loaded strictly, in eval mode."""
    tensors, meta = safetensors_np.load_file(path)
    if meta.get("format") in STATE_FORMATS:
        step = meta.get("step", "?")
        model_file = os.path.join(os.path.dirname(path), f"ckpt-{int(step):08d}.safetensors") if step.isdigit() else "ckpt-NNNNNNNN.safetensors"
        raise ValueError(f"{path} is an optimizer state ({meta['format']}), not a model: give {model_file}")
    if "model" not in meta:
        raise ValueError(f"{path} has no logitpair metadata naming its model: "
                         f"build the module yourself (logitpair_torch.models.build) and load_state_dict it")
    model = models.build(meta["model"], json.loads(meta.get("config") or "{}"))
    state = {k: torch.from_numpy(v).to(map_location) for k, v in tensors.items()}
    model.load_state_dict(state, strict=True)
    return model.to(map_location).eval(), meta
