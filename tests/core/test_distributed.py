"""``attend_sharded`` on 2 and 3 gloo processes against single-process ``attend``.

One ``torch.multiprocessing.spawn`` per world size runs every case (each rank saves its
output and q/k/v gradients); the tests then compare the concatenated slices with
``attend`` on the full sequence in this process, so each case reports on its own.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from longseq import attend
from longseq import distributed
from longseq.distributed import attend_sharded, halo_plan, main
from longseq.patterns import Dense, Pattern, SlidingWindow, Window2D
from longseq.positions import ALiBi, RelativeBias1D, RelativeBias2D

TOL = 1e-5
ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Case:
    name: str
    pattern: Pattern
    lengths: dict[int, tuple[int, ...]]  # world size -> slice lengths
    Hkv: int = 4
    key_mask: bool = False
    bias: str | None = None
    error: type[Exception] | None = None  # expected on every rank
    group: tuple[int, ...] | None = None  # ranks of a subgroup (world size: the largest key of lengths)
    match: str = ""
    bad_rank: int | None = None  # the rank given a k of the wrong head size


_UNEVEN = {2: (150, 133), 3: (100, 157, 90)}
_NARROW = {2: (30, 90), 3: (40, 25, 70)}  # slices narrower than the windows below

CASES = [
    Case("window", SlidingWindow(5), _UNEVEN),
    Case("window-causal", SlidingWindow(5, causal=True), _UNEVEN),
    Case("dilated", SlidingWindow(3, dilation=4), _UNEVEN, key_mask=True),
    Case("dilated-causal", SlidingWindow(2, dilation=3, causal=True), _UNEVEN),
    Case("global", SlidingWindow(4, global_tokens=(0, 7, 200)), _UNEVEN, key_mask=True),
    Case("global-causal-dilated", SlidingWindow(3, dilation=2, causal=True, global_tokens=(1, 140, 250)), _UNEVEN,
         key_mask=True),
    # global tokens inside the halos, on both sides of every boundary (100, 150, 257)
    Case("global-in-halo", SlidingWindow(4, global_tokens=(98, 101, 149, 152, 255, 259)), _UNEVEN, key_mask=True),
    Case("global-in-halo-causal", SlidingWindow(4, causal=True, global_tokens=(98, 101, 149, 152, 255, 259)),
         _UNEVEN, Hkv=2),
    Case("global-first-rank-only", SlidingWindow(6, global_tokens=(3, 20)), _UNEVEN),
    Case("wide", SlidingWindow(50), _NARROW, key_mask=True),
    Case("wide-dilated-causal-global", SlidingWindow(20, dilation=3, causal=True, global_tokens=(2, 60, 100)),
         _NARROW),
    Case("wider-than-sequence", SlidingWindow(500, global_tokens=(5,)), _NARROW),
    Case("gqa-1", SlidingWindow(6, global_tokens=(4, 170)), _UNEVEN, Hkv=1, key_mask=True),
    Case("gqa-2-causal", SlidingWindow(7, causal=True, global_tokens=(9,)), _UNEVEN, Hkv=2, key_mask=True),
    Case("alibi-global", SlidingWindow(4, causal=True, global_tokens=(3, 180)), _UNEVEN, bias="alibi"),
    Case("relbias-dilated-global", SlidingWindow(5, dilation=2, global_tokens=(0, 230)), _UNEVEN,
         key_mask=True, bias="rel1d"),
    Case("window2d", Window2D(4, (12, 10)), {2: (80, 40), 3: (40, 40, 40)}, key_mask=True),
    Case("window2d-partial-rows", Window2D(4, (10, 10)), {2: (80, 20), 3: (40, 40, 20)}, Hkv=2, bias="rel2d"),
    Case("window2d-cut-rows", Window2D(4, (12, 10)), {2: (70, 50), 3: (40, 30, 50)}, error=ValueError,
         match="whole rows of windows"),
    Case("window2d-shift", Window2D(4, (12, 10), shift=2), {2: (80, 40), 3: (40, 40, 40)},
         error=NotImplementedError, match="shift=0"),
    Case("dense", Dense(), _UNEVEN, error=NotImplementedError, match="SlidingWindow and Window2D"),
    Case("global-out-of-range", SlidingWindow(4, global_tokens=(400,)), _UNEVEN, error=ValueError,
         match="out of range"),
    Case("subgroup", SlidingWindow(30, causal=True, global_tokens=(10, 200)), {3: (150, 133)}, key_mask=True,
         group=(1, 2)),
    # the rank with the bad argument names it, the others name that rank
    Case("bad-head-size-on-one-rank", SlidingWindow(4), _UNEVEN, error=ValueError,
         match="invalid arguments on rank|must have the same shape", bad_rank=1),
]
B, H, D = 2, 4, 16


def _make_bias(kind: str | None):
    if kind is None:
        return None
    torch.manual_seed(7)
    bias = {"alibi": lambda: ALiBi(H), "rel1d": lambda: RelativeBias1D(H, max_distance=32, num_buckets=8),
            "rel2d": lambda: RelativeBias2D(H, 4)}[kind]()
    for p in bias.parameters():  # non-trivial tables
        torch.nn.init.normal_(p)
    return bias


def _inputs(case: Case, total: int):
    """Full-sequence q, k, v, output gradient and key mask, the same in every process."""
    g = torch.Generator().manual_seed(zlib.crc32(case.name.encode()))
    q = torch.randn(B, H, total, D, generator=g)
    k = torch.randn(B, case.Hkv, total, D, generator=g)
    v = torch.randn(B, case.Hkv, total, D, generator=g)
    dout = torch.randn(B, H, total, D, generator=g)
    km = torch.rand(B, total, generator=g) > 0.3 if case.key_mask else None
    return q, k, v, dout, km


def _run_case(case: Case, rank: int, world: int, group: dist.ProcessGroup | None = None) -> dict:
    lengths = case.lengths[world] if group is None else case.lengths[max(case.lengths)]
    total = sum(lengths)
    s = sum(lengths[:rank])
    e = s + lengths[rank]
    q, k, v, dout, km = _inputs(case, total)
    parts = [t[:, :, s:e].clone().requires_grad_() for t in (q, k, v)]
    if case.bad_rank == rank:
        parts[1] = parts[1][..., :-1].detach().requires_grad_()
    bias = _make_bias(case.bias)
    ext_lengths: list[int] = []

    def spy(q, *args, **kwargs):  # the length each rank's attend runs on
        ext_lengths.append(q.shape[2])
        return attend(q, *args, **kwargs)

    distributed.reset_traffic()
    try:
        with mock.patch.object(distributed, "attend", spy):
            out = attend_sharded(*parts, case.pattern, group=group, key_mask=None if km is None else km[:, s:e],
                                 bias=bias)
    except Exception as exc:  # recorded: the parent checks the type and message
        return {"error": type(exc).__name__, "message": str(exc)}
    params = list(bias.parameters()) if bias is not None else []
    grads = torch.autograd.grad(out, parts + params, dout[:, :, s:e])
    sent = distributed.traffic()
    return {"out": out.detach(), "grads": grads[:3], "bias_grads": grads[3:], "ext_lengths": ext_lengths,
            "p2p_bytes": sent.p2p_bytes, "collective_bytes": sent.collective_bytes}


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        for case in CASES:
            if case.group is not None:
                if max(case.lengths) != world:
                    continue
                group = dist.new_group(list(case.group))  # every rank takes part in creating it
                if rank in case.group:
                    group_rank = dist.get_rank(group)
                    torch.save(_run_case(case, group_rank, world, group),
                               os.path.join(out_dir, f"{case.name}.{group_rank}.pt"))
            elif world in case.lengths:
                torch.save(_run_case(case, rank, world), os.path.join(out_dir, f"{case.name}.{rank}.pt"))
            dist.barrier()
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """world size -> directory of per-rank results of every case (spawned once per world size)."""
    dirs = {}
    for world in (2, 3):
        d = tmp_path_factory.mktemp(f"world{world}")
        mp.spawn(_worker, args=(world, _free_port(), str(d)), nprocs=world, join=True)
        dirs[world] = d
    return dirs


@pytest.mark.parametrize("case, world", [pytest.param(c, w, id=f"{c.name}-{w}") for c in CASES for w in c.lengths])
def test_sharded_matches_attend(results, case: Case, world: int) -> None:
    lengths = case.lengths[world]
    per_rank = [torch.load(results[world] / f"{case.name}.{r}.pt") for r in range(len(lengths))]
    if case.error is not None:
        for r, res in enumerate(per_rank):
            assert "error" in res, f"rank {r} raised nothing"
            assert res["error"] == case.error.__name__, res
            assert re.search(case.match, res["message"]), res["message"]
        return
    for r, res in enumerate(per_rank):
        assert "error" not in res, f"rank {r}: {res.get('message')}"
    total = sum(lengths)
    if isinstance(case.pattern, SlidingWindow):
        # no rank runs attention on more than its slice, the reach on both sides and the global tokens
        reach = case.pattern.window * case.pattern.dilation
        n_global = len(case.pattern.global_tokens or ())
        for n, res in zip(lengths, per_rank):
            assert res["ext_lengths"] and max(res["ext_lengths"]) <= n + 2 * reach + n_global
    q, k, v, dout, km = _inputs(case, total)
    full = [t.clone().requires_grad_() for t in (q, k, v)]
    bias = _make_bias(case.bias)
    params = list(bias.parameters()) if bias is not None else []
    ref = attend(*full, case.pattern, key_mask=km, bias=bias)
    ref_grads = torch.autograd.grad(ref, full + params, dout)
    out = torch.cat([res["out"] for res in per_rank], dim=2)
    torch.testing.assert_close(out, ref.detach(), atol=TOL, rtol=TOL)
    for n, name in enumerate("qkv"):
        got = torch.cat([res["grads"][n] for res in per_rank], dim=2)
        torch.testing.assert_close(got, ref_grads[n], atol=TOL, rtol=TOL, msg=lambda m: f"grad {name}: {m}")
    for n in range(len(params)):  # each rank holds its share of a replicated parameter's gradient
        got = sum(res["bias_grads"][n] for res in per_rank)
        torch.testing.assert_close(got, ref_grads[3 + n], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name, sends", [("window", (1, 1)), ("window-causal", (1, 1))])
def test_traffic_counts_the_halo_rows_sent(results, name: str, sends: tuple[int, int]) -> None:
    """Per rank: its window's rows of k and v one way in forward, or their gradients back in
    backward (``2 R B Hkv D`` floats each); the slice-length all-gather of 8 int64."""
    case = next(c for c in CASES if c.name == name)
    reach = case.pattern.window * case.pattern.dilation
    per_rank = [torch.load(results[2] / f"{name}.{r}.pt") for r in range(2)]
    one_way = 2 * reach * B * case.Hkv * D * 4  # k and v rows, float32
    for r, res in enumerate(per_rank):
        # non-causal: each rank sends its edge rows forward and the neighbour's halo gradients back;
        # causal: rank 0 sends rows forward, rank 1 their gradients back
        expected = 2 * one_way if not case.pattern.causal else one_way
        assert res["p2p_bytes"] == expected * sends[r], (r, res["p2p_bytes"])
        assert res["collective_bytes"] == 8 * 8


def test_halo_plan_takes_rows_from_several_neighbours() -> None:
    plan = halo_plan([40, 25, 70], 2, 50)
    assert (plan.lo, plan.hi) == (15, 135)
    assert plan.recv == ((0, 15, 40), (1, 40, 65))
    assert plan.send == ((0, 0, 25), (1, 0, 50))  # rank 0 reaches 50 rows past its end, rank 1 too
    plan = halo_plan([40, 25, 70], 0, 50)
    assert plan.recv == ((1, 40, 65), (2, 65, 90))
    assert plan.send == ((1, 0, 40), (2, 15, 40))
    plan = halo_plan([40, 25, 70], 1, 50, causal=True)  # no right halo: rows go left to right only
    assert (plan.lo, plan.hi, plan.recv, plan.send) == (0, 65, ((0, 0, 40),), ((2, 0, 25),))


def _demo_worker(rank: int, world: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    if main(["--demo", "--length", "300", "--window", "40"]) != 0:
        raise SystemExit(1)


def test_demo_through_multiprocessing() -> None:
    """``python -m longseq.distributed --demo`` as torchrun starts it: RANK/WORLD_SIZE/MASTER_* set."""
    mp.spawn(_demo_worker, args=(2, _free_port()), nprocs=2, join=True)


@pytest.mark.skipif(shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None,
                    reason="torchrun is not installed next to this Python")
def test_documented_torchrun_command() -> None:
    """The command of docs/distributed.md, as written there."""
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    cmd = [torchrun, "--standalone", "--nproc-per-node", "2", "-m", "longseq.distributed", "--demo"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "max |attend_sharded - attend|" in proc.stderr
