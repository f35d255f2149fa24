"""Throughput of the flows engine on LJ-13 and LJ-55 (CPU).

Measures, for each system:

1. EGNN forward + backward: molsample's dense EGNN (first edge layer folded into per-node maps)
   against a straightforward EGNN of the same width/depth written here (per-edge concatenation
   [h_i, h_j, d²_ij], edge lists, index_add aggregation). Both compute the same function class;
   the script checks that the reference reproduces molsample's outputs when given its weights.
2. ODE passes with the same solver and steps: plain sampling vs the likelihood pass (exact
   divergence), i.e. ``integrate(..., with_logq=True)``.
3. Peak memory of the likelihood pass (LJ-55, batch 256), measured as the growth of the peak
   resident set size of a fresh child process.

Timings are CPU time of this process (``time.process_time``), best of ``--repeats`` interleaved
rounds, with
``--threads`` torch threads (default 1), so that they stay comparable on a shared machine;
wall-clock times are reported too. Prints ratios; ``--json FILE`` writes all numbers.

    python benchmarks/flow_throughput.py --json flow_throughput.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from molsample.flows.distributions import CoMFreeGaussian  # noqa: E402
from molsample.flows.ode import integrate  # noqa: E402
from molsample.nets import EGNN  # noqa: E402
from molsample.nets.common import batch_time, fourier_features  # noqa: E402


# --------------------------------------------------------------------------- the reference EGNN

class NaiveEGNNLayer(nn.Module):
    """Textbook EGNN layer (Satorras et al. 2021) on an explicit edge list."""

    def __init__(self, hidden: int, update_h: bool, coords_range: float = 15.0, eps: float = 1e-6) -> None:
        super().__init__()
        H = hidden
        self.update_h, self.coords_range, self.eps = update_h, coords_range, eps
        self.edge_mlp = nn.Sequential(nn.Linear(2 * H + 1, H), nn.SiLU(), nn.Linear(H, H))
        self.coord_mlp = nn.Sequential(nn.Linear(H, H), nn.SiLU(), nn.Linear(H, 1))
        if update_h:
            self.node_mlp = nn.Sequential(nn.Linear(2 * H, H), nn.SiLU(), nn.Linear(H, H))

    def forward(self, x, h, rows, cols):
        n = x.shape[1]
        diff = x[:, rows] - x[:, cols]  # (B, E, d)
        d2 = (diff * diff).sum(-1, keepdim=True)
        m = self.edge_mlp(torch.cat([h[:, rows], h[:, cols], d2], dim=-1))  # (B, E, H)
        psi = self.coord_mlp(m)
        phi = self.coords_range * torch.tanh(psi / self.coords_range)
        trans = diff * phi / ((torch.sqrt(d2 + self.eps) + 1.0) * (n - 1))
        x = x + torch.zeros_like(x).index_add(1, rows, trans)
        if self.update_h:
            agg = torch.zeros_like(h).index_add(1, rows, m) / (n - 1)
            h = h + self.node_mlp(torch.cat([h, agg], dim=-1))
        return x, h


class NaiveEGNN(nn.Module):
    """Same time embedding, width and depth as :class:`molsample.nets.EGNN`."""

    def __init__(self, n_particles: int, dim: int = 3, hidden: int = 64, n_layers: int = 4, n_freqs: int = 4):
        super().__init__()
        self.n_freqs = n_freqs
        self.time_embed = nn.Linear(1 + 2 * n_freqs, hidden)
        self.layers = nn.ModuleList(NaiveEGNNLayer(hidden, k < n_layers - 1) for k in range(n_layers))
        i, j = torch.meshgrid(torch.arange(n_particles), torch.arange(n_particles), indexing="ij")
        keep = i != j
        self.register_buffer("rows", i[keep])
        self.register_buffer("cols", j[keep])

    def forward(self, t, x):
        tb = batch_time(t, x.shape[0], x)
        h = self.time_embed(torch.cat([tb[:, None], fourier_features(tb, self.n_freqs)], -1))
        h = h[:, None, :].expand(-1, x.shape[1], -1)
        y = x
        for layer in self.layers:
            y, h = layer(y, h, self.rows, self.cols)
        v = y - x
        return v - v.mean(dim=1, keepdim=True)

    @torch.no_grad()
    def copy_from(self, net: EGNN) -> "NaiveEGNN":
        """Load molsample's weights (message layer = identity), so both compute the same function."""
        H = net.hidden
        self.time_embed.load_state_dict(net.time_embed.state_dict())
        for mine, ref in zip(net.layers, self.layers, strict=True):
            ref.edge_mlp[0].weight.copy_(torch.cat([mine.edge_a.weight, mine.edge_b.weight, mine.edge_d[:, None]], 1))
            ref.edge_mlp[0].bias.copy_(mine.edge_a.bias)
            ref.edge_mlp[2].weight.copy_(torch.eye(H))
            ref.edge_mlp[2].bias.zero_()
            ref.coord_mlp[0].load_state_dict(mine.coord_in.state_dict())
            ref.coord_mlp[2].load_state_dict(mine.coord_out.state_dict())
            if mine.update_h:
                ref.node_mlp[0].weight.copy_(torch.cat([mine.node_h.weight, mine.node_m.weight], 1))
                ref.node_mlp[0].bias.copy_(mine.node_h.bias)
                ref.node_mlp[2].load_state_dict(mine.node_out.state_dict())
        return self


# --------------------------------------------------------------------------- timing helpers

def best_times(fns: list, repeats: int) -> list[dict]:
    """Best CPU and wall time of each ``fn()`` over ``repeats`` rounds (after one warm-up).

    The functions run interleaved (a, b, a, b, ...) so that a change in the machine's load
    affects all of them alike.
    """
    for fn in fns:
        fn()
    cpu = [math.inf] * len(fns)
    wall = [math.inf] * len(fns)
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            c0, w0 = time.process_time(), time.perf_counter()
            fn()
            cpu[k] = min(cpu[k], time.process_time() - c0)
            wall[k] = min(wall[k], time.perf_counter() - w0)
    return [{"cpu_s": c, "wall_s": w} for c, w in zip(cpu, wall, strict=True)]


def fwd_bwd(net: nn.Module, t: torch.Tensor, x: torch.Tensor):
    def run():
        net.zero_grad(set_to_none=True)
        loss = (net(t, x) ** 2).mean()
        loss.backward()
    return run


def bench_system(n: int, batch: int, method: str, steps: int, repeats: int, hidden: int, layers: int) -> dict:
    torch.manual_seed(0)
    net = EGNN(n, 3, hidden=hidden, n_layers=layers)
    for layer in net.layers:  # non-trivial coordinate updates (the default head starts near zero)
        nn.init.normal_(layer.coord_out.weight, std=0.1)
    naive = NaiveEGNN(n, 3, hidden=hidden, n_layers=layers).copy_from(net)
    base = CoMFreeGaussian(n, 3)
    x = base.sample(batch, generator=torch.Generator().manual_seed(1)) * 1.2
    t = torch.rand(batch, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        max_diff = float((net(t, x) - naive(t, x)).abs().max())

    ours, ref = best_times([fwd_bwd(net, t, x), fwd_bwd(naive, t, x)], repeats)

    x0 = base.sample(batch, generator=torch.Generator().manual_seed(3))
    logp0 = base.log_prob(x0)
    plain, lik = best_times([lambda: integrate(net, x0, method=method, steps=steps),
                             lambda: integrate(net, x0, logp0=logp0, method=method, steps=steps, with_logq=True)],
                            repeats)
    res = integrate(net, x0, logp0=logp0, method=method, steps=steps, with_logq=True)
    return {
        "n_particles": n, "batch": batch, "hidden": hidden, "layers": layers,
        "params": sum(p.numel() for p in net.parameters()),
        "naive_params": sum(p.numel() for p in naive.parameters()),
        "naive_vs_ours_max_abs_diff": max_diff,
        "fwd_bwd_ours": ours, "fwd_bwd_naive": ref,
        "fwd_bwd_speedup": ref["cpu_s"] / ours["cpu_s"],
        "ode": {"method": method, "steps": steps, "nfe": res.nfe},
        "sampling_pass": plain, "likelihood_pass": lik,
        "likelihood_over_sampling": lik["cpu_s"] / plain["cpu_s"],
        "logq_finite": bool(torch.isfinite(res.logq).all()),
    }


# --------------------------------------------------------------------------- peak memory (child process)

def _status_mib(key: str) -> float | None:
    """VmRSS / VmHWM of this process from /proc (Linux), in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) of this process; False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def memory_child(n: int, batch: int, method: str, steps: int, hidden: int, layers: int, plain: bool) -> None:
    torch.manual_seed(0)
    net = EGNN(n, 3, hidden=hidden, n_layers=layers)
    base = CoMFreeGaussian(n, 3)
    x0 = base.sample(batch, generator=torch.Generator().manual_seed(3))
    logp0 = base.log_prob(x0)
    integrate(net, x0[:2], logp0=logp0[:2], method=method, steps=1, with_logq=not plain)  # load lazy modules
    rss0 = _status_mib("VmRSS")
    exact = _reset_peak() and rss0 is not None
    if not exact:  # fall back to the lifetime peak
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    c0 = time.process_time()
    integrate(net, x0, logp0=logp0, method=method, steps=steps, with_logq=not plain)
    peak = _status_mib("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"peak_rss_growth_mib": peak - rss0, "rss_before_mib": rss0, "rss_peak_mib": peak,
                      "peak_reset": exact, "cpu_s": time.process_time() - c0}))


def measure_memory(n: int, batch: int, method: str, steps: int, hidden: int, layers: int, threads: int,
                   plain: bool) -> dict:
    cmd = [sys.executable, __file__, "--memory-child", str(n), str(batch), method, str(steps), str(hidden),
           str(layers), str(int(plain)), "--threads", str(threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    return {"n_particles": n, "batch": batch, "pass": "sampling" if plain else "likelihood", **json.loads(out)}


# --------------------------------------------------------------------------- main

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path, default=None, help="write the results to this JSON file")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--method", default="euler")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch13", type=int, default=256)
    ap.add_argument("--batch55", type=int, default=32)
    ap.add_argument("--mem-batch", type=int, default=256)
    ap.add_argument("--mem-steps", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of the script")
    ap.add_argument("--memory-child", nargs=7, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    if args.memory_child is not None:
        n, b, method, steps, hidden, layers, plain = args.memory_child
        memory_child(int(n), int(b), method, int(steps), int(hidden), int(layers), bool(int(plain)))
        return

    if args.quick:
        args.batch13, args.batch55, args.mem_batch, args.steps, args.repeats = 16, 4, 8, 2, 1

    results: dict = {
        "torch": torch.__version__, "threads": args.threads, "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(), "timer": "process CPU time, best of repeats",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    for name, n, b in (("lj13", 13, args.batch13), ("lj55", 55, args.batch55)):
        r = bench_system(n, b, args.method, args.steps, args.repeats, args.hidden, args.layers)
        results[name] = r
        print(f"{name} (batch {b}, hidden {args.hidden}, {args.layers} layers, {args.threads} thread(s))")
        print(f"  EGNN fwd+bwd: ours {r['fwd_bwd_ours']['cpu_s'] * 1e3:.1f} ms, reference "
              f"{r['fwd_bwd_naive']['cpu_s'] * 1e3:.1f} ms -> {r['fwd_bwd_speedup']:.2f}x faster "
              f"(same outputs to {r['naive_vs_ours_max_abs_diff']:.1e})")
        print(f"  {args.method} x {args.steps}: sampling {r['sampling_pass']['cpu_s']:.2f} s, likelihood "
              f"{r['likelihood_pass']['cpu_s']:.2f} s -> likelihood/sampling {r['likelihood_over_sampling']:.2f}x")
    mem = [measure_memory(55, args.mem_batch, args.method, args.mem_steps, args.hidden, args.layers, args.threads,
                          plain) for plain in (True, False)]
    results["memory_lj55"] = mem
    for m in mem:
        print(f"lj55 {m['pass']} pass, batch {m['batch']}: peak RSS growth {m['peak_rss_growth_mib']:.0f} MiB "
              f"(process peak {m['rss_peak_mib']:.0f} MiB)")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
