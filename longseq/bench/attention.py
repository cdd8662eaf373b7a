"""Attention benchmark: longseq patterns vs dense SDPA, a matmul floor and peers.

Every row runs in its own subprocess (so its peak RSS is its own), times the median of
``--repeats`` runs after ``--warmup`` warm-up runs (default 1), and reports useful GFLOP/s:
``4 * B * H * D * (allowed query-key pairs)`` forward, x3.5 for forward+backward.
Ratios to the plain matmul measured in the same run make figures comparable across
noisy machines. Writes a table to stdout, ``attention.csv`` and ``attention.png``. The CSV
also keeps every timed run (``times``) and the share of their CPU time spent in the kernel
(``sys_share``: page faults on fresh allocations, not arithmetic). Each row's process keeps
freed memory for reuse (``longseq.hardware.reuse_freed_memory``), which took most of those
faults away; ``--no-reuse-freed-memory`` measures without it. ``--profile`` adds one more
run per row under torch.profiler and writes its operator table (``profile_<row>_<L>.txt``).
The CSV's ``cpu`` column names the machine (the GPU and its host with ``--device cuda``,
where ``peak_rss_gb`` is the GPU's allocated peak). The ``path`` column says which route
and tile backend each pattern row ran (``longseq.explain``), and the lines under the table
why: on the CPU ``auto`` takes the tile path measured fastest for the dtype and head size
(``longseq.kernels.tile_choice``, cached per CPU). ``LONGSEQ_BACKEND=flash|math|fused`` in
the environment forces one (``LONGSEQ_FUSED_BF16=0`` keeps the AVX512-BF16 kernel out).

    python scripts/bench_attention.py                        # all rows (long: ~1 h on 2 cores)
    LONGSEQ_FUSED_BF16=0 python scripts/bench_attention.py --rows matmul,window --lengths 65536 --dtype bf16
    LONGSEQ_BACKEND=fused python scripts/bench_attention.py --rows matmul,window --lengths 65536 --dtype bf16
    python scripts/bench_attention.py --lengths 65536 --rows window,dense,local-attention
    python scripts/bench_attention.py --rows lsh --lengths 65536 --profile   # where the time goes
    python scripts/bench_attention.py --rows topk,hierarchical,routing,segment,lowrank --lengths 16384
    python scripts/bench_attention.py --device cuda --dtype bf16 --rows matmul,window,dense --lengths 16384,65536,1048576 --max-dense 65536

Rows ``topk``, ``hierarchical``, ``routing``, ``segment`` run those patterns through
``longseq.attend``; ``lowrank`` is the Linformer layer (with its projections). Their
useful pairs: kept keys for TopK (not the scoring of every key), own-segment tokens plus
summaries for Hierarchical, ``k`` projected keys per query for LowRank; Routing's pairs
depend on the data and are not counted.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

B, H, D, WINDOW = 1, 4, 64, 256
DEFAULT_LENGTHS = [4096, 16384, 65536, 262144, 1048576]
ROWS = ["matmul", "window", "window-causal", "dilated", "global", "window2d", "bigbird", "strided", "lsh",
        "topk", "hierarchical", "routing", "segment", "lowrank", "dense", "local-attention", "longformer", "reformer"]
#: Rows whose time is quadratic in L (every query scores every key): capped by --max-dense like dense.
QUADRATIC_ROWS = ("dense", "topk")
TOPK_K, HIER_SEGMENT, ROUTING_CLUSTERS, LOWRANK_K = 64, 256, 16, 256


# --------------------------------------------------------------------------- worker side
def _patterns():
    from longseq import patterns as P

    out = {
        "window": lambda L: P.SlidingWindow(WINDOW),
        "window-causal": lambda L: P.SlidingWindow(WINDOW, causal=True),
        "dilated": lambda L: P.SlidingWindow(WINDOW // 2, dilation=2),
        "global": lambda L: P.SlidingWindow(WINDOW, global_tokens=(0, L // 2)),
        "window2d": lambda L: P.Window2D(16, _grid(L)),
    }
    if hasattr(P, "BigBird"):
        out["bigbird"] = lambda L: P.BigBird(64, window_blocks=1, global_blocks=1, random_blocks=2)
    if hasattr(P, "Strided"):
        out["strided"] = lambda L: P.Strided(256, mode="strided", causal=True)
    if hasattr(P, "LSH"):
        out["lsh"] = lambda L: P.LSH(bucket_size=64, n_hashes=4, seed=0)
    out["topk"] = lambda L: P.TopK(TOPK_K)
    out["hierarchical"] = lambda L: P.Hierarchical(HIER_SEGMENT)
    # a quarter of the sliding window as the local part; the clusters add the far pairs
    out["routing"] = lambda L: P.Routing(ROUTING_CLUSTERS, window=WINDOW // 4)
    out["segment"] = lambda L: P.SegmentRecurrence(WINDOW, memory=1)
    return out


def _grid(L: int) -> tuple[int, int]:
    h = 2 ** (int(math.log2(L)) // 2)
    return h, L // h


def band_pairs(L: int, window: int, dilation: int = 1, causal: bool = False) -> int:
    """Allowed pairs of SlidingWindow without globals, in O(L)."""
    from longseq.geometry import band_pair_count

    return band_pair_count(L, window, causal, dilation)


def allowed_pairs(name: str, pattern, L: int) -> int:
    """Exact allowed query-key pairs (padding excluded) without an L x L mask."""
    import torch

    from longseq import patterns as P

    if isinstance(pattern, P.Dense):
        return L * (L + 1) // 2 if pattern.causal else L * L
    if isinstance(pattern, P.SlidingWindow):
        n = band_pairs(L, pattern.window, pattern.dilation, pattern.causal)
        g = torch.tensor(pattern.global_tokens or (), dtype=torch.long)
        if len(g):
            # |band u R u C| with R, C the global rows/columns: inclusion-exclusion on the
            # L x G strips, never an L x L mask.
            idx = torch.arange(L)
            allowed_rows = pattern.allowed(g[:, None], idx[None, :])  # (G, L) exact rows
            allowed_cols = pattern.allowed(idx[:, None], g[None, :])  # (L, G) exact columns
            band_rows = pattern.band(g[:, None], idx[None, :])
            band_cols = pattern.band(idx[:, None], g[None, :])
            if pattern.causal:
                band_rows &= idx[None, :] <= g[:, None]
                band_cols &= g[None, :] <= idx[:, None]
            in_g = torch.isin(idx, g)
            # band pairs outside the strips, plus the strips' union
            n -= int(band_rows.sum()) + int((band_cols & ~in_g[:, None]).sum())
            n += int(allowed_rows.sum()) + int((allowed_cols & ~in_g[:, None]).sum())
        return n
    if isinstance(pattern, P.Window2D):
        from longseq.kernels.plan import tiling_for

        plan = tiling_for(pattern, L, torch.device("cpu")).parts[0]
        per_window = (plan.slots.view(plan.n_blocks, -1) >= 0).sum(1)
        return int((per_window.long() ** 2).sum())
    if isinstance(pattern, P.TopK):  # the kept pairs; scoring every key is selection, not attention
        return L * pattern.kept(L)
    if isinstance(pattern, P.Hierarchical):  # own-segment tokens plus one summary per other segment
        s, n = pattern.segment, pattern.n_segments(L)
        sizes = torch.full((n,), s, dtype=torch.float64)
        sizes[-1] = L - s * (n - 1)
        if pattern.causal:
            own = int((sizes * (sizes + 1) / 2).sum())
            return own + int((sizes * torch.arange(n, dtype=torch.float64)).sum())
        return int((sizes**2).sum()) + L * (n - 1)
    if isinstance(pattern, P.SegmentRecurrence):  # query i sees i - first + 1 keys
        i = torch.arange(L, dtype=torch.long)
        first = ((i // pattern.segment - pattern.memory) * pattern.segment).clamp_min(0)
        return int((i - first + 1).sum())
    if hasattr(pattern, "count_pairs"):
        return int(pattern.count_pairs(L))
    return -1  # data-dependent (LSH, Routing)


def _time(fn, repeats: int, warmup: int = 1) -> tuple[list[float], float]:
    """Wall times of ``repeats`` timed runs, and the share of their CPU time spent in the kernel
    (``fn`` waits for its device: see :func:`_synced`).

    A large system share means page faults on freshly allocated memory, not arithmetic."""
    for _ in range(warmup):  # allocator and thread pools settle; 0 for one-shot memory checks
        fn()
    times = []
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    user, system = r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime
    return times, system / (user + system) if user + system > 0 else float("nan")


def _synced(fn, device):
    """``fn`` followed by a wait for the device's queue (CUDA launches return at once)."""
    import torch

    if device.type != "cuda":
        return fn

    def run():
        out = fn()
        torch.cuda.synchronize(device)
        return out

    return run


def _profile(fn, rows: int = 15) -> str:
    """Operator table (self CPU time) of one more run under torch.profiler."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def worker(spec: dict) -> dict:
    import torch

    from longseq.hardware import cpu_description, peak_rss_bytes, reuse_freed_memory

    # Before the row's first tensor: freed tile buffers are handed out again instead of
    # being faulted in anew on every pass (docs/results.md).
    reused = reuse_freed_memory() if spec.get("reuse_freed_memory", True) else False
    torch.set_num_threads(spec["threads"])
    device = torch.device(spec.get("device", "cpu"))
    cuda = device.type == "cuda"
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[spec["dtype"]]
    name, L, backward = spec["row"], spec["L"], spec["mode"] == "fwdbwd"
    machine = f"{torch.cuda.get_device_name(device)} (CUDA); host {cpu_description()}" if cuda else cpu_description()
    res = {"row": name, "L": L, "dtype": spec["dtype"], "mode": spec["mode"], "reuse_freed_memory": reused,
           "cpu": machine, "device": str(device)}

    def peak() -> int:  # the device's peak: allocated GPU memory on CUDA, the process's RSS on the CPU
        return torch.cuda.max_memory_allocated(device) if cuda else peak_rss_bytes()

    if name == "matmul":
        n = 4096
        a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
        times, sys_share = _time(_synced(lambda: a @ b, device), spec["repeats"], max(1, spec["warmup"]))
        res.update(times=times, sys_share=sys_share, flops=2 * n**3, pairs=0, tensor_bytes=0)
        res["rss"] = peak()
        return res

    def tensors(shape=(B, H, L, D)):
        return [torch.randn(*shape, dtype=dtype, device=device, requires_grad=backward) for _ in range(3)]

    pairs = -1
    if name in _patterns():
        from longseq import attend

        from longseq import explain

        pattern = _patterns()[name](L)
        pairs = allowed_pairs(name, pattern, L)
        q, k, v = tensors()
        route = explain(q, k, v, pattern)  # on the CPU this measures the tile paths first, if not cached
        res.update(path=f"{route.route}/{route.backend}", path_reason=route.reason)
        fn = lambda: attend(q, k, v, pattern)  # noqa: E731
    elif name == "lowrank":
        from longseq.layers import LowRank

        layer = LowRank(H * D, H, LOWRANK_K, max_len=L).to(device, dtype)
        x = torch.randn(B, L, H * D, dtype=dtype, device=device, requires_grad=backward)
        pairs = L * min(LOWRANK_K, L)  # each query attends k projected keys (projections not counted)
        fn = lambda: layer(x)  # noqa: E731
        q = x
        k = v = torch.empty(0)
    elif name == "dense":
        import torch.nn.functional as F

        q, k, v = tensors()
        pairs = L * L
        fn = lambda: F.scaled_dot_product_attention(q, k, v)  # noqa: E731
    elif name == "local-attention":
        from local_attention import LocalAttention

        attn = LocalAttention(window_size=WINDOW, causal=False, look_backward=1, look_forward=1, dim=D).to(device)
        q, k, v = tensors()
        pairs = band_pairs(L, WINDOW)
        fn = lambda: attn(q, k, v)  # noqa: E731
    elif name == "longformer":
        from transformers import LongformerConfig
        from transformers.models.longformer.modeling_longformer import LongformerSelfAttention

        cfg = LongformerConfig(hidden_size=H * D, num_attention_heads=H, attention_window=[2 * WINDOW],
                               attention_probs_dropout_prob=0.0)
        layer = LongformerSelfAttention(cfg, layer_id=0).to(device, dtype)
        x = torch.randn(B, L, H * D, dtype=dtype, device=device, requires_grad=backward)
        mask = torch.zeros(B, L, dtype=dtype, device=device)
        pairs = band_pairs(L, WINDOW)
        fn = lambda: layer(x, attention_mask=mask, is_index_masked=mask < 0, is_index_global_attn=mask > 0,  # noqa: E731
                           is_global_attn=False)[0]
        q = x
        k = v = torch.empty(0)
    elif name == "reformer":
        from reformer_pytorch import LSHSelfAttention

        layer = LSHSelfAttention(dim=H * D, heads=H, bucket_size=64, n_hashes=4, causal=False).to(device, dtype)
        x = torch.randn(B, L, H * D, dtype=dtype, device=device, requires_grad=backward)
        fn = lambda: layer(x)  # noqa: E731
        q = x
        k = v = torch.empty(0)
    else:
        raise ValueError(f"unknown row {name!r}")

    def step():
        out = fn()
        if backward:
            out.backward(torch.ones_like(out))
            for t in (q, k, v):
                t.grad = None

    times, sys_share = _time(_synced(step, device), spec["repeats"], spec["warmup"])
    res["rss"] = peak()  # before profiling, which keeps its own records
    if spec.get("profile"):
        res["profile"] = _profile(step)
    res.update(times=times, sys_share=sys_share, pairs=pairs, flops=4 * B * H * D * pairs * (3.5 if backward else 1.0) if pairs > 0 else 0,
               tensor_bytes=(8 if backward else 4) * B * H * L * D * torch.tensor([], dtype=dtype).element_size())
    return res


# --------------------------------------------------------------------------- driver side
def run_row(spec: dict, timeout: float) -> dict:
    # a fresh interpreter per row, so its peak RSS is its own
    cmd = [sys.executable, "-m", "longseq.bench.attention", "--worker", json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**spec, "error": f"timeout after {timeout:.0f}s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    if proc.returncode < 0 or "MemoryError" in proc.stderr or "DefaultCPUAllocator" in proc.stderr:
        err = f"out of memory or killed ({err[:80]})"
    return {**spec, "error": err[:160]}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--lengths", default=",".join(map(str, DEFAULT_LENGTHS)))
    ap.add_argument("--rows", default=",".join(ROWS), help=f"comma list from {ROWS}")
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--mode", default="fwdbwd", choices=["fwdbwd", "fwd"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1,
                    help="untimed runs before the timed ones (0: time the first, e.g. a one-step memory check at 1M)")
    ap.add_argument("--max-dense", type=int, default=65536, help=f"largest L for the quadratic rows {QUADRATIC_ROWS}")
    ap.add_argument("--max-peer", type=int, default=262144, help="largest L for peers")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per row")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--device", default="cpu",
                    help="cpu, or cuda[:N]: tensors and layers on that GPU (attend routes them to FlexAttention; "
                         "the dense row is SDPA, flash where it applies); peak memory is then the GPU's allocated "
                         "peak, and every launch is waited for before the clock stops")
    ap.add_argument("--profile", action="store_true",
                    help="after timing, profile one more run per row; operator tables go to profile_<row>_<L>.txt")
    ap.add_argument("--out", default="bench_results", help="folder for attention.csv / attention.png")
    ap.add_argument("--reuse-freed-memory", action=argparse.BooleanOptionalAction, default=True,
                    help="every row's process keeps freed memory for reuse instead of faulting in fresh pages "
                         "(longseq.hardware.reuse_freed_memory; default on)")
    args = ap.parse_args(argv)
    from longseq.hardware import enable_huge_pages

    enable_huge_pages()  # before the first tensor exists: PyTorch reads the setting once
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return

    lengths = [int(x) for x in args.lengths.split(",")]
    rows = [r for r in args.rows.split(",") if r]
    unknown = set(rows) - set(ROWS)
    if unknown:
        ap.error(f"unknown rows {sorted(unknown)}; choose from {ROWS}")
    if args.repeats < 1 or args.warmup < 0:
        ap.error("--repeats must be >= 1 and --warmup >= 0")
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            ap.error(f"--device {args.device}: PyTorch sees no CUDA device on this machine")
    load = os.getloadavg()[0]
    if load > 0.5:
        print(f"warning: load average {load:.2f}: timings will include contention", file=sys.stderr)
    specs = []
    if "matmul" in rows:
        specs.append(dict(row="matmul", L=0))
    for r in rows:
        if r == "matmul":
            continue
        for L in lengths:
            if r in QUADRATIC_ROWS and L > args.max_dense:
                continue
            if r in ("local-attention", "longformer", "reformer") and L > args.max_peer:
                continue
            specs.append(dict(row=r, L=L))
    results = []
    try:
        from tqdm import tqdm

        bar = tqdm(specs, desc="bench", unit="row")
    except ImportError:
        bar = specs
    for s in bar:
        spec = {**s, "dtype": args.dtype, "mode": args.mode, "repeats": args.repeats, "warmup": args.warmup, "threads": args.threads,
                "profile": args.profile, "reuse_freed_memory": args.reuse_freed_memory, "device": args.device}
        if hasattr(bar, "set_postfix_str"):
            bar.set_postfix_str(f"{s['row']} L={s['L']}")
        results.append(run_row(spec, args.timeout))
        report(results, Path(args.out), args, quiet=True)  # keep partial results on disk
    report(results, Path(args.out), args)


def report(results: list[dict], out: Path, args, quiet: bool = False) -> None:
    out.mkdir(parents=True, exist_ok=True)
    mm = next((r for r in results if r["row"] == "matmul" and "times" in r), None)
    mm_gflops = mm["flops"] / statistics.median(mm["times"]) / 1e9 if mm else float("nan")
    ours = {r["L"]: r for r in results if r["row"] == "window" and "times" in r}
    table = []
    for r in results:
        row = {"row": r["row"], "L": r["L"], "dtype": r["dtype"], "mode": r["mode"], "cpu": r.get("cpu", "")}
        if "error" in r:
            row.update(error=r["error"])
        else:
            t = statistics.median(r["times"])
            gf = r["flops"] / t / 1e9 if r.get("flops") else float("nan")
            row.update(path=r.get("path", ""), path_reason=r.get("path_reason", ""))
            row.update(seconds=t, times=";".join(f"{x:.4g}" for x in r["times"]), sys_share=r.get("sys_share"),
                       reuse_freed_memory=r.get("reuse_freed_memory"),
                       useful_gflops=gf, vs_matmul=gf / mm_gflops if r["row"] != "matmul" else 1.0,
                       peak_rss_gb=r["rss"] / 2**30,
                       rss_vs_tensors=r["rss"] / r["tensor_bytes"] if r.get("tensor_bytes") else float("nan"))
            ref = ours.get(r["L"])
            if ref is not None and r["row"] in ("local-attention", "longformer", "reformer", "dense"):
                row["time_vs_window"] = t / statistics.median(ref["times"])
                row["rss_vs_window"] = r["rss"] / ref["rss"]
        table.append(row)
    cols = ["row", "L", "dtype", "mode", "path", "seconds", "times", "sys_share", "useful_gflops", "vs_matmul", "peak_rss_gb",
            "rss_vs_tensors", "time_vs_window", "rss_vs_window", "reuse_freed_memory", "cpu", "path_reason", "error"]
    for r in results:
        if r.get("profile"):
            (out / f"profile_{r['row']}_{r['L']}.txt").write_text(r["profile"])
    with open(out / "attention.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(table)
    if quiet:
        return
    fmt = lambda v: f"{v:.3g}" if isinstance(v, float) else str(v)  # noqa: E731
    print(f"\nmachine: {_machine(table)}")
    print(f"matmul floor: {mm_gflops:.0f} GFLOP/s ({args.dtype}); B={B} H={H} D={D} window={WINDOW}")
    shown = [c for c in cols if c not in ("cpu", "path_reason")]  # the machine line above; the reasons below
    print(" | ".join(shown))
    for row in table:
        print(" | ".join(fmt(row.get(c, "")) for c in shown))
    reasons = {(r["path"], r["path_reason"]) for r in table if r.get("path_reason")}
    for path, why in sorted(reasons):
        print(f"path {path}: {why}")
    for r in results:
        if r.get("profile"):
            print(f"\nprofile of one more {r['row']} run at L={r['L']} (self CPU time):\n{r['profile']}")
    plot(table, out / "attention.png")
    print(f"\nwrote {out / 'attention.csv'} and {out / 'attention.png'}")


def _machine(table: list[dict]) -> str:
    """The CPU the rows ran on, as their worker processes described it."""
    return next((r["cpu"] for r in table if r.get("cpu")), "unknown (no row finished)")


def plot(table: list[dict], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot", file=sys.stderr)
        return
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    names = sorted({r["row"] for r in table if r["row"] != "matmul" and "seconds" in r})
    for name in names:
        pts = sorted((r["L"], r["seconds"], r["peak_rss_gb"]) for r in table if r["row"] == name and "seconds" in r)
        if not pts:
            continue
        Ls, ts, ms = zip(*pts)
        style = "--" if name in ("dense", "local-attention", "longformer", "reformer") else "-"
        axes[0].plot(Ls, ts, style, marker="o", label=name)
        axes[1].plot(Ls, ms, style, marker="o", label=name)
    for ax, ylabel in zip(axes, ["seconds (median)", "peak RSS (GiB)"]):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length L")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    if names:
        axes[0].legend(fontsize=8)
    modes = sorted({"forward+backward" if r["mode"] == "fwdbwd" else "forward" for r in table})
    dtypes = sorted({r["dtype"] for r in table})
    fig.suptitle(f"attention {', '.join(modes)}, {', '.join(dtypes)}, B={B} H={H} D={D}\n{_machine(table)}",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
