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
    ap.add_argument("--eps", type=float, default=0.3)
    ap.add_argument("--step-size", type=float, default=0.01)
    ap.add_argument("--model-config", default="{}",
                    help="the model's keyword arguments as JSON, as `logitpair bench --model-config` "
                         "(image_size sets the input size)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (cuda:N)")
    ap.add_argument("--no-tf32", action="store_true",
                    help="on CUDA, strict float32: no TF32 tensor-core math in cuDNN convolutions or matmuls")
    ap.add_argument("--profile", action="store_true",
                    help="print torch.profiler's table of the timed steps (by device time) to standard error")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    dev = torch.device(a.device)
    cuda = dev.type == "cuda"
    if cuda:
        torch.backends.cudnn.allow_tf32 = not a.no_tf32
        torch.backends.cuda.matmul.allow_tf32 = False if a.no_tf32 else torch.backends.cuda.matmul.allow_tf32
    mc = json.loads(a.model_config)
    m = models.build(a.model, mc).to(dev)
    size = mc.get("image_size", {"resnet9": 32, "inception-v3": 299}.get(a.model, 224))
    shape = (1, 28, 28) if a.model == "madry-mnist" else (mc.get("in_channels", 3), size, size)
    classes = mc.get("classes", 10 if a.model in ("madry-mnist", "resnet9") else 1000)
    x = torch.rand(a.batch, *shape, device=dev)
    y = torch.randint(0, classes, (a.batch,), device=dev)
    eps, alpha = a.eps, a.step_size
    if a.input_grad_only:
        m.eval()
        for p in m.parameters():
            p.requires_grad_(False)
    else:
        m.train()

    opt = torch.optim.Adam(m.parameters(), lr=1e-4)

    def alp_step():
        m.eval()
        xa = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
        for _ in range(a.attack_steps):
            xa.requires_grad_(True)
            loss = F.cross_entropy(m(xa), y)
            g, = torch.autograd.grad(loss, xa)
            xa = torch.min(torch.max(xa.detach() + alpha * g.sign(), x - eps), x + eps).clamp(0, 1)
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

    def sync():
        if cuda:
            torch.cuda.synchronize(dev)

    for _ in range(a.warmup):
        step()
    sync()
    times = []
    prof = None
    if a.profile:
        acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if cuda else [])
        prof = torch.profiler.profile(activities=acts)
        prof.__enter__()
    for _ in range(a.steps):
        t0 = time.perf_counter()
        step()
        sync()
        times.append((time.perf_counter() - t0) * 1000)
    if prof is not None:
        prof.__exit__(None, None, None)
        key = "self_device_time_total" if cuda else "self_cpu_time_total"
        try:
            table = prof.key_averages().table(sort_by=key, row_limit=30)
        except Exception:  # older PyTorch names it cuda_time_total
            table = prof.key_averages().table(sort_by="self_cuda_time_total" if cuda else key, row_limit=30)
        print(table, file=sys.stderr)
    ms = statistics.median(times)
    backend = "torch " + torch.__version__
    if cuda:
        backend += " cuda " + torch.cuda.get_device_name(dev) + (" fp32" if a.no_tf32 else " default (cuDNN TF32)")
    print(json.dumps({
        "model": a.model, "model_config": mc, "batch": a.batch, "threads": a.threads,
        "ms_per_step": ms, "samples_per_s": a.batch * 1000 / ms, "min_ms": min(times), "max_ms": max(times),
        "steps": a.steps, "input_grad_only": a.input_grad_only,
        "objective": "alp" if a.alp else "", "attack_steps": a.attack_steps if a.alp else 0,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "gpu_peak_mb": torch.cuda.max_memory_allocated(dev) / 2**20 if cuda else 0,
        "backend": backend,
    }))


if __name__ == "__main__":
    main()
