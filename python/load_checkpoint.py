#!/usr/bin/python3
"""Load a logitpair checkpoint into PyTorch and score it on MNIST-format data.

    /usr/bin/python3 python/load_checkpoint.py runs/mnist-alp/ckpt-00001000.safetensors \
        --data-dir data/mnist --examples 1000

builds the module from the checkpoint's metadata (model name and config),
loads its tensors with load_state_dict(strict=True) and prints the clean
accuracy on the first --examples test examples: the number
`logitpair eval --checkpoint FILE --steps 0 --examples N` prints for the same
examples. With --logits FILE (a .npy of float32 logits, N x classes) it also
prints the largest difference from those logits. Needs numpy and torch
(Debian: python3-torch); `make test` never runs it.
"""
import argparse
import gzip
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from logitpair_torch.checkpoint import load_checkpoint  # noqa: E402


def read_idx(dir_, base):
    """Reads an IDX file as distributed (plain or .gz) from dir_."""
    for name in (base, base + ".gz"):
        p = os.path.join(dir_, name)
        if os.path.exists(p):
            with open(p, "rb") as f:
                b = f.read()
            if b[:2] == b"\x1f\x8b":
                b = gzip.decompress(b)
            magic, = struct.unpack(">I", b[:4])
            ndim = magic & 0xFF
            dims = struct.unpack(">" + "I" * ndim, b[4:4 + 4 * ndim])
            return np.frombuffer(b, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)
    sys.exit(f"{dir_} has no {base}[.gz]: get MNIST with: logitpair data fetch mnist --dir {dir_}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", help="model file, e.g. runs/x/ckpt-00001000.safetensors")
    ap.add_argument("--data-dir", default="data/mnist", help="MNIST or Fashion-MNIST files (logitpair data fetch)")
    ap.add_argument("--examples", type=int, default=1000, help="score the first N test examples")
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--logits", help="compare with these logits (.npy, N x classes)")
    args = ap.parse_args()

    try:
        model, meta = load_checkpoint(args.checkpoint)
    except (ValueError, OSError) as e:
        sys.exit(f"load_checkpoint.py: {e}")
    print(f"{args.checkpoint}: {meta['model']} {meta.get('config', '{}')}, step {meta.get('step', '?')}, "
          f"{sum(p.numel() for p in model.state_dict().values())} values loaded strictly")

    images = read_idx(args.data_dir, "t10k-images-idx3-ubyte")[:args.examples]
    labels = read_idx(args.data_dir, "t10k-labels-idx1-ubyte")[:args.examples].astype(np.int64)
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)  # (N, 1, 28, 28) in [0, 1]
    with torch.no_grad():
        logits = torch.cat([model(x[i:i + args.batch]) for i in range(0, len(x), args.batch)])
    correct = int((logits.argmax(1).numpy() == labels).sum())
    print(f"clean accuracy {100 * correct / len(labels):.2f}% ({correct} of {len(labels)} test examples)")
    if args.logits:
        ref = np.load(args.logits)[:len(labels)]
        diff = np.abs(ref - logits.numpy()).max()
        print(f"largest logit difference from {args.logits}: {diff:.3g}")


if __name__ == "__main__":
    main()
