"""Benchmark one training step (forward, backward, AdamW) of the default DNA model
(console command: ``longseq-bench-dna``).

    python scripts/bench_dna.py                                  # 16k .. 1,048,576 bases, fp32 + bf16-mixed
    python scripts/bench_dna.py --seq-lens 4096 16384 --steps 1  # quick check
    python scripts/bench_dna.py --reuse-freed-memory             # faster, more memory (see --help)
    python scripts/bench_dna.py --seq-lens 2097152 --precisions fp32 --sequence-parallel 2 --steps 1

Each (length, precision, processes) runs in its own subprocess so its peak RSS is its own.
``--sequence-parallel 2`` splits each window over 2 processes (gloo, the cores shared out),
as ``train_dna --sequence-parallel 2`` does: the row gives the slowest rank's step, the
largest and the summed peak RSS of the processes, and what one rank sends per step (halo
rows, their gradients and the gradient all-reduce; ``sent_per_hidden``: that over the
rank's fp32 hidden states of one layer). Input is a
real E. coli K-12 window (batch 1). Writes ``<out>/bench_dna.csv`` and ``<out>/bench_dna.png``
(tokens/s and peak RSS against length, with an 8 GB line). A plain matmul in each
precision is timed in the same run (``matmul_gflops`` column), so tokens/s can be compared
across machines as tokens/s per matmul GFLOP/s.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from longseq.training.errors import UserError

__all__ = ["FIELDS", "main", "parse_args", "plot", "run", "run_one", "run_sharded"]

FIELDS = ("seq_len", "precision", "processes", "params", "step_s", "tokens_per_s", "peak_rss_gb", "peak_rss_total_gb",
          "sent_mb_per_step", "sent_per_hidden", "sys_share", "matmul_gflops", "reuse_freed_memory", "cpu", "status")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line of ``longseq-bench-dna``."""
    p = argparse.ArgumentParser(prog="longseq-bench-dna", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path,
                   help="YAML whose model section builds the DNALanguageModel (default: configs/genomics/tiny.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="model.KEY=VALUE", dest="set_values",
                   help="change a model key of the config (value read as YAML), e.g. --set model.kmer_kernel=1")
    p.add_argument("--seq-lens", type=int, nargs="+", default=[16384, 65536, 262144, 1048576])
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16-mixed"], choices=["fp32", "bf16-mixed"])
    p.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step (median reported)")
    p.add_argument("--sequence-parallel", type=int, nargs="+", default=[1], metavar="N",
                   help="also run each window split over N processes on this machine (gloo; the cores shared "
                        "out), as train_dna --sequence-parallel N does; 1: one process")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per configuration")
    p.add_argument("--out", type=Path, default=Path("bench_results/dna"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--reuse-freed-memory", action="store_true",
                   help="keep freed memory for reuse (longseq.hardware.reuse_freed_memory): faster, more memory")
    p.add_argument("--child", help=argparse.SUPPRESS)  # JSON of one configuration, run in-process
    return p.parse_args(argv)


def model_config(config: Path, sets: list[str]) -> dict:
    """The ``model`` section of ``config`` with ``--set model.KEY=VALUE`` applied and checked."""
    from longseq.training.config import ConfigError, parse_set_overrides, validate_config

    from genomics.cli.train_config import load_task_config, task_sections

    cfg = load_task_config(config, "lm")
    changes = parse_set_overrides(sets)
    if set(changes) - {"model"}:
        raise ConfigError(f"--set: only model keys change what is benchmarked, got {sorted(set(changes) - {'model'})}")
    cfg["model"].update(changes.get("model", {}))
    return validate_config(cfg, task_sections("lm"), source=f"{config} with --set")["model"]


def _window(seq_len: int, device: str) -> Any:
    """``(1, seq_len)`` token ids of a real E. coli K-12 window (repeated when the genome is shorter)."""
    import numpy as np
    import torch

    from genomics.io import build_genome_cache, ecoli_k12_fasta

    genome = build_genome_cache(ecoli_k12_fasta())
    n = min(seq_len, genome.records[0].length)
    ids = torch.from_numpy(genome.window(0, 0, n).astype(np.int64))[None].to(device)
    if n < seq_len:  # longer than the genome: repeat it (timing only)
        ids = ids.repeat(1, -(-seq_len // n))[:, :seq_len]
    return ids


def _train_step(model: Any, opt: Any, x: Any, targets: Any, total: int, precision: str,
                grad_sum: Callable[[Any], None] | None = None) -> Callable[[], None]:
    """One step of next-base loss (summed over ``targets``, divided by ``total``), backward,
    ``grad_sum`` on every gradient (the ranks' sum, under sequence parallelism), AdamW."""
    import torch
    import torch.nn.functional as F

    dtype = torch.bfloat16 if precision == "bf16-mixed" else None
    device_type = x.device.type

    def step() -> None:
        with torch.autocast(device_type, dtype=dtype, enabled=dtype is not None):
            logits = model(x)
        n = targets.shape[0]
        loss = F.cross_entropy(logits[0, :n].float(), targets, reduction="sum") / total
        loss.backward()
        if grad_sum is not None:
            for p in model.parameters():
                grad_sum(p.grad)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if x.is_cuda:
            torch.cuda.synchronize()

    return step


def run_one(config: Path, seq_len: int, precision: str, steps: int, device: str, sets: list[str] = ()) -> dict:
    """Time ``steps`` training steps in this process; returns one CSV row."""
    import numpy as np
    import torch

    from longseq.hardware import command_threads, peak_rss_bytes

    from genomics.models import DNALanguageModel

    torch.set_num_threads(command_threads())
    torch.manual_seed(0)
    model = DNALanguageModel(**model_config(config, list(sets))).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids = _window(seq_len, device)
    step = _train_step(model, opt, ids, ids[0, 1:], seq_len - 1, precision)
    step()  # warm-up: plan caches, allocator
    times = []
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    # Share of the timed steps' CPU time spent in the kernel: page faults on fresh activations.
    user, system = r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime
    dt = float(np.median(times))  # robust to other jobs on a shared machine
    peak = torch.cuda.max_memory_allocated() if ids.is_cuda else peak_rss_bytes()
    return {"seq_len": seq_len, "precision": precision, "processes": 1,
            "params": sum(p.numel() for p in model.parameters()),
            "step_s": round(dt, 4), "tokens_per_s": round(seq_len / dt, 1), "peak_rss_gb": round(peak / 2**30, 3),
            "peak_rss_total_gb": round(peak / 2**30, 3),
            "sys_share": round(system / (user + system), 3) if user + system > 0 else float("nan"),
            "status": "ok"}


def _shard_worker(rank: int, world: int, port: int, spec: dict, out_dir: str) -> None:
    """One rank of :func:`run_sharded`: its slice of the window, the step, its own figures."""
    import numpy as np
    import torch
    import torch.distributed as dist

    from longseq import distributed
    from longseq.hardware import peak_rss_bytes

    from genomics.models import DNALanguageModel
    from genomics.models.sequence_parallel import encoder_of, shard_encoder, slice_bounds

    if spec.get("reuse_freed_memory"):
        from longseq.hardware import reuse_freed_memory

        reuse_freed_memory()
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))  # the cores shared out, no oversubscription
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        model = DNALanguageModel(**model_config(Path(spec["config"]), spec["sets"]))
        encoder = shard_encoder(encoder_of(model))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        seq_len = spec["seq_len"]
        ids = _window(seq_len, "cpu")
        start, stop = slice_bounds(seq_len, rank, world)
        grad_bytes = [0]

        def grad_sum(grad: Any) -> None:
            if grad is not None:
                grad_bytes[0] += grad.numel() * grad.element_size()
                dist.all_reduce(grad)

        step = _train_step(model, opt, ids[:, start:stop], ids[0, start + 1:stop + 1], seq_len - 1,
                           spec["precision"], grad_sum)
        step()  # warm-up
        times, sent = [], []
        for _ in range(spec["steps"]):
            dist.barrier()  # every rank starts the step together: the step ends with the slowest
            distributed.reset_traffic()
            grad_bytes[0] = 0
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
            sent.append(distributed.traffic().total_bytes + grad_bytes[0])
        hidden = (stop - start) * encoder.dim * 4  # one layer's fp32 hidden states of this slice
        result = {"times": times, "peak_rss": peak_rss_bytes(), "sent": float(np.median(sent)),
                  "hidden": hidden, "params": sum(p.numel() for p in model.parameters())}
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result))
        dist.barrier()
    finally:
        dist.destroy_process_group()


def run_sharded(config: Path, seq_len: int, precision: str, steps: int, processes: int, sets: list[str] = (),
                reuse: bool = False) -> dict:
    """Time ``steps`` training steps of one window split over ``processes`` gloo processes on this
    machine (``train_dna --sequence-parallel``'s split, :mod:`genomics.models.sequence_parallel`);
    returns one CSV row: the slowest rank's step, the largest and the summed peak RSS, and the
    bytes each rank sends per step (halo rows, global rows and the gradient all-reduce)."""
    import socket
    import tempfile

    import numpy as np
    import torch.multiprocessing as mp

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    spec = {"config": str(config), "sets": list(sets), "seq_len": seq_len, "precision": precision, "steps": steps,
            "reuse_freed_memory": reuse}
    with tempfile.TemporaryDirectory() as out_dir:
        mp.start_processes(_shard_worker, args=(processes, port, spec, out_dir), nprocs=processes,
                           start_method="spawn")
        ranks = [json.loads(Path(out_dir, f"rank{r}.json").read_text()) for r in range(processes)]
    dt = float(np.median(np.max([r["times"] for r in ranks], axis=0)))
    sent = max(r["sent"] for r in ranks)
    return {"seq_len": seq_len, "precision": precision, "processes": processes, "params": ranks[0]["params"],
            "step_s": round(dt, 4), "tokens_per_s": round(seq_len / dt, 1),
            "peak_rss_gb": round(max(r["peak_rss"] for r in ranks) / 2**30, 3),
            "peak_rss_total_gb": round(sum(r["peak_rss"] for r in ranks) / 2**30, 3),
            "sent_mb_per_step": round(sent / 2**20, 4),
            "sent_per_hidden": round(sent / max(r["hidden"] for r in ranks), 4), "status": "ok"}


def _run_child(cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
    """Run one configuration's process as the leader of a process group of its own; on timeout the whole group
    (its spawned ranks too) is killed, so nothing keeps running under the next timing."""
    import signal

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _check_shardable(model_kw: dict, processes: int) -> None:
    """A model that cannot be split over processes, as a one-line error naming the key."""

    from genomics.models import DNALanguageModel
    from genomics.models.sequence_parallel import check_shardable, encoder_of

    model = DNALanguageModel(**model_kw)
    try:
        check_shardable(encoder_of(model))
    except ValueError as exc:
        raise UserError(f"--sequence-parallel {processes}: {exc}") from None


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for precision, processes in sorted({(r["precision"], int(r.get("processes") or 1)) for r in rows}):
        ok = [r for r in rows if r["precision"] == precision and int(r.get("processes") or 1) == processes
              and r["status"] == "ok"]
        xs = [int(r["seq_len"]) for r in ok]
        label = f"longseq tiny {precision}" + (f", {processes} processes (per process)" if processes > 1 else "")
        axes[0].plot(xs, [float(r["tokens_per_s"]) for r in ok], "o-", label=label)
        axes[1].plot(xs, [float(r["peak_rss_gb"]) for r in ok], "o-", label=label)
    axes[1].axhline(8, color="grey", ls="--", lw=1, label="8 GB")
    for ax, ylabel in zip(axes, ("training tokens / s", "peak memory (GB)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("sequence length (bases)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    machine = next((r["cpu"] for r in rows if r.get("cpu")), "")
    fig.suptitle(f"DNA LM training step, batch 1\n{machine}".strip(), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(argv: list[str] | None = None) -> list[dict]:
    """Benchmark as the command line says; returns the CSV rows (none in a ``--child`` process)."""
    args = parse_args(argv)
    from longseq.hardware import enable_huge_pages, reuse_freed_memory

    from genomics.cli.train_config import default_config_path

    enable_huge_pages()  # before the first tensor exists: PyTorch reads the setting once
    args.config = args.config or default_config_path("lm")
    if args.child:
        # Only the timed process: the driver (and a test calling main in-process) keeps
        # glibc's defaults, and the matmul reference is measured the same way either way.
        spec = json.loads(args.child)
        if spec.get("processes", 1) > 1:  # the ranks set it in their own processes
            row = run_sharded(args.config, spec["seq_len"], spec["precision"], args.steps, spec["processes"],
                              args.set_values, args.reuse_freed_memory)
            reused = args.reuse_freed_memory
        else:
            reused = reuse_freed_memory() if args.reuse_freed_memory else False
            row = run_one(args.config, spec["seq_len"], spec["precision"], args.steps, args.device, args.set_values)
        print(json.dumps({**row, "reuse_freed_memory": reused}))
        return []
    model = model_config(args.config, args.set_values)  # a bad --set fails here, before any child runs
    if min(args.sequence_parallel) < 1:
        raise UserError(f"--sequence-parallel: must be >= 1, got {min(args.sequence_parallel)}")
    if max(args.sequence_parallel) > 1:
        if args.device != "cpu":
            raise UserError(f"--sequence-parallel {max(args.sequence_parallel)}: runs its processes on the CPU "
                            f"(gloo); drop --device {args.device}")
        _check_shardable(model, max(args.sequence_parallel))
    args.out.mkdir(parents=True, exist_ok=True)
    import torch

    from longseq.hardware import command_threads, cpu_description, matmul_gflops

    torch.set_num_threads(command_threads())
    dtypes = {"fp32": torch.float32, "bf16-mixed": torch.bfloat16}
    floor = {p: round(matmul_gflops(dtypes[p], args.device), 1) for p in args.precisions}
    machine = cpu_description()
    print(f"machine: {machine}")
    print("reference, plain matmul measured now: "
          + ", ".join(f"{p} {gf:.0f} GFLOP/s" for p, gf in floor.items()), flush=True)
    rows = []
    reuse = ["--reuse-freed-memory"] if args.reuse_freed_memory else []
    configs = [(n, p, w) for n in args.seq_lens for p in args.precisions for w in args.sequence_parallel]
    for seq_len, precision, processes in configs:
        sets = [f"--set={value}" for value in args.set_values]
        cmd = [sys.executable, "-m", "genomics.cli.bench_dna", "--config", str(args.config), "--steps",
               str(args.steps), "--device", args.device, *reuse, *sets, "--child",
               json.dumps({"seq_len": seq_len, "precision": precision, "processes": processes})]
        try:
            proc = _run_child(cmd, args.timeout)
            if proc.returncode == 0:
                row = json.loads(proc.stdout.strip().splitlines()[-1])
            else:
                tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
                row = {"seq_len": seq_len, "precision": precision, "processes": processes,
                       "status": f"failed: {tail[:200]}"}
        except subprocess.TimeoutExpired:
            row = {"seq_len": seq_len, "precision": precision, "processes": processes,
                   "status": f"timeout after {args.timeout:.0f} s"}
        row["matmul_gflops"] = floor[precision]
        row["cpu"] = machine
        rows.append(row)
        print(", ".join(f"{k}={row.get(k, '')}" for k in FIELDS), flush=True)
    with open(args.out / "bench_dna.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows({k: r.get(k, "") for k in FIELDS} for r in rows)
    plot(rows, args.out / "bench_dna.png")
    print(f"wrote {args.out / 'bench_dna.csv'} and {args.out / 'bench_dna.png'}")
    return rows


def main(argv: list[str] | None = None) -> None:
    """Console entry point (``longseq-bench-dna``); a bad config or ``--set`` is one line, exit status 2."""
    from longseq.training.errors import run_cli

    run_cli(run, argv, prog="longseq-bench-dna")


if __name__ == "__main__":
    main()
