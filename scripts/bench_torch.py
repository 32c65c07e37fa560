#!/usr/bin/env -S /usr/bin/python3
"""PyTorch reference timing for scripts/bench-vs-torch.sh.

Times the same step as `logitpair bench step`: the model with PyTorch's default
init, a random batch in [0, 1], forward + cross-entropy + backward with
gradients for every weight and the input (or, with --input-grad-only, an
eval-mode forward and the input gradient alone). Prints one JSON object with
the same field names as `logitpair bench step --json -`.
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from logitpair_torch import models  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="madry-mnist")
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--input-grad-only", action="store_true")
    ap.add_argument("--alp", action="store_true",
                    help="a whole ALP training step: PGD-40 (eps 0.3, step 0.01, random start, eval mode) "
                         "+ clean/adversarial forward/backward in train mode + Adam")
    ap.add_argument("--attack-steps", type=int, default=40)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    m = models.build(a.model, {})
    shape = {"madry-mnist": (1, 28, 28)}.get(a.model, (3, 32, 32))
    x = torch.rand(a.batch, *shape)
    y = torch.randint(0, 10, (a.batch,))
    if a.input_grad_only:
        m.eval()
        for p in m.parameters():
            p.requires_grad_(False)
    else:
        m.train()

    opt = torch.optim.Adam(m.parameters(), lr=1e-4)

    def alp_step():
        m.eval()
        xa = (x + torch.empty_like(x).uniform_(-0.3, 0.3)).clamp(0, 1)
        for _ in range(a.attack_steps):
            xa.requires_grad_(True)
            loss = F.cross_entropy(m(xa), y)
            g, = torch.autograd.grad(loss, xa)
            xa = torch.min(torch.max(xa.detach() + 0.01 * g.sign(), x - 0.3), x + 0.3).clamp(0, 1)
        m.train()
        z = m(torch.cat([x, xa]))
        loss = F.cross_entropy(z, torch.cat([y, y])) + 0.5 * F.mse_loss(z[:a.batch], z[a.batch:])
        opt.zero_grad(set_to_none=False)
        loss.backward()
        opt.step()

    def step():
        if a.alp:
            return alp_step()
        xx = x.clone().requires_grad_(True)
        loss = F.cross_entropy(m(xx), y)
        if a.input_grad_only:
            torch.autograd.grad(loss, xx)
        else:
            m.zero_grad(set_to_none=False)
            loss.backward()

    for _ in range(a.warmup):
        step()
    times = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1000)
    print(json.dumps({
        "model": a.model, "batch": a.batch, "threads": a.threads,
        "ms_per_step": statistics.median(times), "min_ms": min(times), "max_ms": max(times),
        "steps": a.steps, "input_grad_only": a.input_grad_only,
        "objective": "alp" if a.alp else "", "attack_steps": a.attack_steps if a.alp else 0,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "backend": "torch " + torch.__version__,
    }))


if __name__ == "__main__":
    main()
