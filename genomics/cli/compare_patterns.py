"""Train the default DNA language model once per attention pattern and compare validation bits
per base at equal steps and at equal wall time (console command: ``longseq-compare-dna-patterns``).

    python scripts/compare_dna_patterns.py                                  # 65,536-base windows, 25 steps and 5 min each
    python scripts/compare_dna_patterns.py --patterns window routing --minutes 2 --steps 50 --seq-len 16384

Every layer of ``tiny.yaml``'s model takes the pattern (``model.layer_patterns``; the k-mer
convolution, width and depth stay), trained on E. coli K-12 windows of ``--seq-len`` bases
from the first step and validated on the same 65,536-base windows of the held-out last 10%.
Each pattern trains twice, each run in its own process one after another: for ``--steps``
optimizer steps (stopped by ``--cap-minutes`` of the clock if it takes longer; the row
then says how many steps it reached), and for ``--minutes`` of the clock. The order-k Markov chain's bits per base
on the same windows is measured once, as the reference row. Prints the table, and writes
``<out>/compare_patterns.csv`` and ``<out>/compare_patterns.png``; each run's folder holds
its ``summary.json``. Time runs mean something only on an otherwise idle machine.

Patterns (``--patterns``; a causal LM): ``window`` (the default model's sliding window),
``routing`` (64 clusters plus a 64-base local window), ``topk`` (32 keys), ``hierarchical``
(256-base segments: 256 tokens and 256 summaries per query at 65,536), ``segment`` (256-base segments, one of memory), ``lsh``, and ``global``
(dense causal attention: quadratic, so not in the default list). ``lowrank`` has no causal
form.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from longseq.training.errors import UserError, check_positive, run_cli

__all__ = ["DEFAULT_PATTERNS", "PATTERNS", "main", "parser", "run"]

PROG = "longseq-compare-dna-patterns"
#: The layer spec each pattern name trains with (every layer the same).
PATTERNS: dict[str, dict[str, Any]] = {
    "window": {"type": "window"},
    "routing": {"type": "routing", "clusters": 64, "window": 64},
    "topk": {"type": "topk", "k": 32},
    "hierarchical": {"type": "hierarchical", "segment": 256},
    "segment": {"type": "segment", "segment": 256, "memory": 1},
    "lsh": {"type": "lsh"},
    "global": {"type": "global"},
}
DEFAULT_PATTERNS = ("window", "routing", "topk", "hierarchical", "segment", "lsh")
FIELDS = ("pattern", "budget", "steps", "wall_minutes", "tokens_per_s", "peak_rss_gb", "bits_per_base",
          "margin_vs_markov", "cpu", "status")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--patterns", nargs="+", default=list(DEFAULT_PATTERNS), choices=sorted(PATTERNS),
                   help=f"patterns to train (default: {' '.join(DEFAULT_PATTERNS)})")
    p.add_argument("--seq-len", type=int, default=65536, help="training window in bases")
    p.add_argument("--minutes", type=float, default=5.0, help="the equal-time budget of each pattern")
    p.add_argument("--steps", type=int, default=25, help="the equal-steps budget of each pattern")
    p.add_argument("--cap-minutes", type=float, default=None,
                   help="the clock that also stops an equal-steps run (default: 4 x --minutes)")
    p.add_argument("--config", help="the model's config (default: configs/genomics/tiny.yaml)")
    p.add_argument("--out", type=Path, default=Path("runs/dna_patterns"))
    p.add_argument("--debug", action="store_true", help="show the traceback of an error instead of one line")
    return p


def _clock(minutes: float) -> str:
    seconds = round(minutes * 60)
    return f"00:{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _train(name: str, budget: list[str], args: argparse.Namespace, folder: Path, markov: bool) -> dict[str, Any]:
    """One run of ``longseq-train-dna`` in its own process; its summary (or a failed status)."""
    spec = json.dumps([PATTERNS[name]] * args.depth)
    cmd = [sys.executable, "-m", "genomics.cli.train_dna", "--seq-len", str(args.seq_len), "--no-warmup",
           "--set", f"model.layer_patterns={spec}", "--out-dir", str(folder), *budget]
    cmd += ["--config", args.config] if args.config else []
    cmd += [] if markov else ["--no-markov"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(folder.glob("lm/version_*/summary.json"))
    if proc.returncode != 0 or not found:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return {"status": f"failed: {tail[:200]}"}
    return {**json.loads(found[-1].read_text()), "status": "ok"}


def run(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Train and compare as the command line says; returns the CSV rows."""
    args = parser().parse_args(argv)
    check_positive({"--seq-len": args.seq_len, "--steps": args.steps}, what="must be a positive whole number")
    if not args.minutes > 0:
        raise UserError(f"--minutes: must be > 0, got {args.minutes:g}")
    cap = 4 * args.minutes if args.cap_minutes is None else args.cap_minutes
    if not cap > 0:
        raise UserError(f"--cap-minutes: must be > 0, got {cap:g}")
    from longseq.hardware import cpu_description
    from longseq.training.config import ConfigError

    from genomics.cli.train_config import default_config_path, load_task_config

    try:
        args.depth = int(load_task_config(Path(args.config) if args.config else default_config_path("lm"),
                                          "lm")["model"].get("depth", 2))
    except ConfigError as exc:
        raise UserError(f"--config: {exc}") from None
    machine = cpu_description()
    print(f"machine: {machine}", flush=True)
    rows: list[dict[str, Any]] = []
    markov_bpb = None
    for name in args.patterns:
        for budget, flags in (("steps", ["--max-steps", str(args.steps), "--max-time", _clock(cap)]),
                              ("time", ["--max-time", _clock(args.minutes)])):
            s = _train(name, flags, args, args.out / name / budget, markov=markov_bpb is None)
            markov_bpb = s.get("markov_val_bpb", markov_bpb)
            if budget == "steps" and s["status"] == "ok" and s.get("steps", args.steps) < args.steps:
                s["status"] = f"capped at {cap:g} min: {s['steps']} of {args.steps} steps"
            row = {"pattern": name, "budget": f"{args.steps} steps" if budget == "steps" else f"{args.minutes:g} min",
                   "steps": s.get("steps"), "wall_minutes": round(s["wall_s"] / 60, 2) if "wall_s" in s else None,
                   "tokens_per_s": round(s["tokens_per_s"]) if "tokens_per_s" in s else None,
                   "peak_rss_gb": round(s["peak_rss_gb"], 2) if "peak_rss_gb" in s else None,
                   "bits_per_base": round(s["best_val_bpb"], 4) if "best_val_bpb" in s else None,
                   "cpu": machine, "status": s["status"]}
            rows.append(row)
            print(", ".join(f"{k}={row.get(k)}" for k in FIELDS if k != "cpu"), flush=True)
    for row in rows:
        if markov_bpb is not None and row["bits_per_base"] is not None:
            row["margin_vs_markov"] = round(row["bits_per_base"] - markov_bpb, 4)
    _write(rows, markov_bpb, args.out)
    return rows


def _write(rows: list[dict[str, Any]], markov_bpb: float | None, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "compare_patterns.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows({k: r.get(k, "") for k in FIELDS} for r in rows)
    print(f"\n{'pattern':<14}{'budget':<12}{'steps':>7}{'minutes':>9}{'tokens/s':>10}{'peak GB':>9}{'bits/base':>11}")
    for r in rows:
        print(f"{r['pattern']:<14}{r['budget']:<12}{r['steps'] or '-':>7}{r['wall_minutes'] or '-':>9}"
              f"{r['tokens_per_s'] or '-':>10}{r['peak_rss_gb'] or '-':>9}{r['bits_per_base'] or r['status']:>11}")
    if markov_bpb is not None:
        print(f"{'Markov':<14}{'':<12}{'':>7}{'':>9}{'':>10}{'':>9}{markov_bpb:>11.4f}")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot", file=sys.stderr)
        return
    names = list(dict.fromkeys(r["pattern"] for r in rows))
    fig, ax = plt.subplots(figsize=(1.6 * len(names) + 3, 4))
    for offset, budget in ((-0.2, 0), (0.2, 1)):
        ok = [r for r in rows[budget::2] if r["bits_per_base"] is not None]
        bars = ax.bar([names.index(r["pattern"]) + offset for r in ok], [r["bits_per_base"] for r in ok], width=0.4,
                      label=f"equal {'steps' if budget == 0 else 'time'} ({rows[budget]['budget']})")
        for bar, r in zip(bars, ok):  # the steps each bar trained, hatched where the clock stopped it first
            if str(r.get("status", "")).startswith("capped"):
                bar.set_hatch("//")
            ax.annotate(f"{r['steps']}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                        va="bottom", fontsize=7)
    if markov_bpb is not None:
        ax.axhline(markov_bpb, color="black", ls="--", lw=1, label=f"Markov ({markov_bpb:.4f})")
    values = [r["bits_per_base"] for r in rows if r["bits_per_base"] is not None] + ([markov_bpb] if markov_bpb else [])
    if values:
        ax.set_ylim(min(values) - 0.02, max(values) + 0.02)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("validation bits per base (65,536-base windows)")
    ax.set_xlabel("over each bar: optimizer steps; hatched: an equal-steps run stopped by --cap-minutes", fontsize=8)
    ax.set_title(f"DNA LM by attention pattern\n{rows[0]['cpu'] if rows else ''}", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "compare_patterns.png", dpi=120)
    plt.close(fig)
    print(f"wrote {out / 'compare_patterns.csv'} and {out / 'compare_patterns.png'}")


def main(argv: list[str] | None = None) -> None:
    """Console entry point (``longseq-compare-dna-patterns``); a bad flag is one line and exit status 2."""
    run_cli(run, argv, prog=PROG)


if __name__ == "__main__":
    main()
