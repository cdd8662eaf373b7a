"""The C kernel on AVX512-BF16 CPUs (longseq.kernels.fused_bf16), bf16 and its fp32 twin:
tiles against a float64 reference, attend() through it for every pattern family, and its
build and fallbacks."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys

import pytest
import torch

from longseq import attend
from longseq.kernels import fused_bf16, use_backend
from longseq.kernels.blocked import _pick_backend
from longseq.patterns import BigBird, SlidingWindow, Window2D
from longseq.positions import ALiBi

from .test_attend import _compare

BF16_TOL = 3e-2  # as the other bf16 tests: bf16 rounding of inputs, P and dS
FP32_TOL = 1e-5  # as the fp32 attend tests


def _cpu_can_run_it() -> bool:
    return (sys.platform.startswith("linux") and platform.machine().lower() in ("x86_64", "amd64")
            and torch.cpu._is_avx512_bf16_supported() and bool(fused_bf16._compiler()))


def _kernel_or_reason() -> bool:
    """Whether the kernel runs here; when not, that must be because the CPU, the compiler
    or the opt-out says so (pinned by the next test), never a silent build failure."""
    assert fused_bf16.available() or not _cpu_can_run_it() or fused_bf16._disabled()
    return fused_bf16.available()


def test_kernel_is_built_wherever_the_cpu_and_a_compiler_allow():
    """No silent fallback on the machines it is for (AVX512-BF16 x86, e.g. EPYC Zen 4+, Xeon SPR+)."""
    assert fused_bf16.available() == (_cpu_can_run_it() and not fused_bf16._disabled())


def _reference(q, k, v, mask, scale, dout):
    """float64 softmax attention of tiles; rows with no allowed key give zeros."""
    q64, k64, v64 = (t.detach().double().requires_grad_() for t in (q, k, v))
    s = q64 @ k64.transpose(-1, -2) * scale
    if mask is not None:
        s = s + mask.double()
    m = s.amax(-1, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    e = torch.exp(s - m)
    denom = e.sum(-1, keepdim=True)
    out = (e / denom.clamp_min(1e-300)) @ v64
    lse = (m + denom.log()).squeeze(-1)
    out.backward(dout.double())
    return out.detach(), lse.detach(), q64.grad, k64.grad, v64.grad


def _rel_err(got, ref) -> float:
    """Norm-wise relative error: the kernel's bf16 rounding of P and dS gives ~1e-3."""
    return float((got.double() - ref).norm() / ref.norm().clamp_min(1e-30))


def _tiles(n, G, bq, span, D, overlap: bool, shared_kv_heads: bool, dtype=torch.bfloat16):
    """Tiles in the blocked kernel's layouts: slot-major rows (L, G, D), key tiles sliding by bq."""
    if overlap:
        rows = (n - 1) * bq + span

        def view(x, length):
            return x.as_strided((n, G, length, D), (bq * G * D, D, G * D, 1))

        q = view(torch.randn(n * bq, G, D).to(dtype), bq)
        k, v = view(torch.randn(rows, G, D).to(dtype), span), view(torch.randn(rows, G, D).to(dtype), span)
    else:
        q = torch.randn(n, G, bq, D).to(dtype)
        k, v = (torch.randn(n, G, span, D).to(dtype) for _ in range(2))
    if shared_kv_heads:  # grouped-query attention: every head reads the same key rows
        k, v = k[:, :1].expand_as(k), v[:, :1].expand_as(v)
    return q, k, v


@pytest.mark.parametrize("n, G, bq, span, D, overlap, shared, mask_kind", [
    (3, 2, 32, 46, 32, True, False, "per-tile"),      # odd span: a key pair padded with zero
    (2, 3, 16, 37, 64, False, False, "per-tile"),
    (2, 4, 16, 80, 16, True, True, "template"),       # one (bq, span) mask for every tile
    (1, 2, 128, 640, 64, True, False, None),          # the benchmark's tile shape
    (4, 1, 48, 48, 48, False, False, "per-head"),     # mask differs per batch*head
    (2, 2, 128, 45, 16, True, False, "per-key"),      # span < bq; mask broadcast over queries
    (1, 1, 16, 24, 32, False, False, "scalar"),       # one item: fewer items than threads
])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=str)
def test_tiles_match_float64(n, G, bq, span, D, overlap, shared, mask_kind, dtype):
    if not _kernel_or_reason():
        return
    torch.manual_seed(n * 1000 + span)
    q, k, v = _tiles(n, G, bq, span, D, overlap, shared, dtype)
    assert fused_bf16.supports(q, k, v)
    mask = None
    if mask_kind is not None:
        shape = {"per-tile": (n, 1, bq, span), "template": (1, 1, bq, span), "per-head": (n, G, bq, span),
                 "per-key": (1, 1, 1, span), "scalar": (1, 1, 1, 1)}[mask_kind]
        allowed = torch.rand(shape) > 0.3
        if shape[-2] > 1:
            allowed[0, 0, 5] = False  # a query with no allowed key
        mask = torch.where(allowed, 0.0, float("-inf")) + 0.5 * torch.randn(shape)  # a bias on top
        if mask_kind == "scalar":
            mask = torch.full(shape, -0.7)
    scale = D**-0.5
    dout = torch.randn(n, G, bq, D).to(dtype)
    out, lse = fused_bf16.forward(q, k, v, mask, scale)
    out_rows = torch.empty(n * bq, G, D).to(dtype).as_strided(out.shape, (bq * G * D, D, G * D, 1))
    out_rows.copy_(out)  # backward reads out (and dout) in the slot layout too
    dq, dk, dv, none = fused_bf16.backward(dout, q, k, v, out_rows, lse, mask, scale)
    r_out, r_lse, r_dq, r_dk, r_dv = _reference(q, k, v, mask, scale, dout)
    assert out.dtype == dtype and lse.dtype == dq.dtype == dk.dtype == dv.dtype == torch.float32
    assert none is None and dk.shape == dv.shape == (n, G, span, D)
    bf16 = dtype == torch.bfloat16
    tol = dict(atol=BF16_TOL, rtol=BF16_TOL) if bf16 else dict(atol=FP32_TOL, rtol=FP32_TOL)
    rel = 5e-3 if bf16 else 2e-6  # measured bf16 1.6-2.0e-3
    torch.testing.assert_close(out.double(), r_out, **tol)
    finite = torch.isfinite(r_lse)
    torch.testing.assert_close(lse.double()[finite], r_lse[finite], atol=1e-4 if bf16 else 1e-5, rtol=1e-5)
    assert torch.equal(torch.isfinite(lse), finite)  # no allowed key: lse -inf, as flash's callers expect
    assert _rel_err(out, r_out) < rel
    for name, got, ref in (("dq", dq, r_dq), ("dk", dk, r_dk), ("dv", dv, r_dv)):  # per tile and head
        torch.testing.assert_close(got.double(), ref, **tol, msg=lambda m: f"{name}: {m}")
        assert _rel_err(got, ref) < rel, name
    if mask_kind in ("per-tile", "template", "per-head"):
        assert out[0, 0, 5].abs().max() == 0 and dq[0, 0, 5].abs().max() == 0


def test_backward_of_a_tile_inside_a_larger_softmax():
    """Split keys: each half differentiated against the whole row's out and lse sums to the whole."""
    if not _kernel_or_reason():
        return
    n, G, bq, span, D = 2, 2, 32, 96, 32
    q, k, v = _tiles(n, G, bq, span, D, overlap=False, shared_kv_heads=False)
    dout = torch.randn(n, G, bq, D).bfloat16()
    out, lse = fused_bf16.forward(q, k, v, None, 0.3)
    whole = fused_bf16.backward(dout, q, k, v, out, lse, None, 0.3)
    halves = [fused_bf16.backward(dout, q, k[:, :, s], v[:, :, s], out, lse, None, 0.3)
              for s in (slice(0, 48), slice(48, None))]
    torch.testing.assert_close(halves[0][0] + halves[1][0], whole[0], atol=1e-4, rtol=1e-4)
    for i in (1, 2):
        torch.testing.assert_close(torch.cat([halves[0][i], halves[1][i]], dim=2), whole[i], atol=1e-5, rtol=1e-5)
    r_dq = _reference(q, k, v, None, 0.3, dout)[2]
    assert _rel_err(whole[0], r_dq) < 1e-2


def test_nan_inputs_stay_visible():
    """A diverged run must not look finite: NaN in one query reaches its output and gradients."""
    if not _kernel_or_reason():
        return
    q, k, v = _tiles(1, 1, 16, 32, 16, overlap=False, shared_kv_heads=False)
    q[0, 0, 3, 0] = float("nan")
    out, lse = fused_bf16.forward(q, k, v, None, 0.25)
    assert out[0, 0, 3].isnan().all() and lse[0, 0, 3].isnan()
    assert not out[0, 0, 2].isnan().any()  # other queries are untouched
    dq, dk, dv, _ = fused_bf16.backward(torch.ones_like(q), q, k, v, out, lse, None, 0.25)
    assert dq[0, 0, 3].isnan().all() and dk.isnan().any() and dv.isnan().any()


def test_mask_must_be_additive_float():
    q, k, v = _tiles(1, 1, 16, 32, 16, overlap=False, shared_kv_heads=False)
    with pytest.raises(ValueError, match="additive float mask"):
        fused_bf16.forward(q, k, v, torch.ones(1, 1, 16, 32, dtype=torch.bool), 0.25)


def test_kernel_threads_are_torchs_own():
    """The library links libgomp.so.1, which must resolve to the copy torch loaded: one
    OpenMP runtime, one pool of threads, no oversubscription of the cores."""
    fused_bf16.available()
    assert len(fused_bf16._openmp_runtimes()) <= 1, fused_bf16._openmp_runtimes()


def test_same_result_on_any_thread_count():
    if not _kernel_or_reason():
        return
    q, k, v = _tiles(6, 2, 32, 96, 32, overlap=True, shared_kv_heads=False)
    dout = torch.randn(6, 2, 32, 32).bfloat16()
    threads = torch.get_num_threads()
    results = []
    try:
        for t in (1, max(2, threads)):
            torch.set_num_threads(t)
            out, lse = fused_bf16.forward(q, k, v, None, 0.2)
            results.append((out, lse, *fused_bf16.backward(dout, q, k, v, out, lse, None, 0.2)[:3]))
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(*results):
        assert torch.equal(a, b)  # each work item is one thread's: no order-dependent sums


def test_supports_only_what_the_kernel_takes():
    q, k, v = _tiles(2, 2, 32, 64, 32, overlap=False, shared_kv_heads=False)
    assert fused_bf16.supports(q, k, v) == fused_bf16.available()
    assert fused_bf16.supports(q.float(), k.float(), v.float()) == fused_bf16.available()  # the fp32 twin
    assert not fused_bf16.supports(q.half(), k.half(), v.half())
    assert not fused_bf16.supports(q.float(), k, v)  # one dtype for all tiles
    assert not fused_bf16.supports(q[..., :8], k[..., :8], v[..., :8])  # head size not a multiple of 16
    assert not fused_bf16.supports(q[:, :, :24], k, v)  # block not a multiple of 16
    odd = torch.randn(2 * 2 * 32 * 32 + 1).bfloat16()[1:].view(2, 2, 32, 32)  # rows start mid-word
    assert not fused_bf16.supports(odd, k, v)


@pytest.mark.parametrize("pattern, L, Hkv, bias", [
    (SlidingWindow(5), 200, 2, None),
    (SlidingWindow(3, dilation=2, causal=True), 137, 1, None),
    (SlidingWindow(4, global_tokens=(0, 70)), 150, 2, None),
    (SlidingWindow(6, causal=True), 300, 2, ALiBi(2)),
    (Window2D(4, (9, 11), shift=2), 99, 2, None),
    (BigBird(16, window_blocks=1, global_blocks=1, random_blocks=1, seed=0), 170, 2, None),
], ids=repr)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=str)
def test_attend_through_the_kernel_matches_float64(pattern, L, Hkv, bias, dtype, monkeypatch):
    """Lengths off the block, key padding, GQA, a causal ALiBi bias, merged global parts."""
    if not _kernel_or_reason():
        with pytest.raises(ValueError, match="fused backend needs"), use_backend("fused"):
            attend(*(torch.randn(1, 2, L, 32).to(dtype) for _ in range(3)), pattern)
        return
    calls = {"forward": 0, "backward": 0}
    for name in calls:
        real = getattr(fused_bf16, name)

        def spy(*args, _real=real, _name=name):
            calls[_name] += 1
            return _real(*args)

        monkeypatch.setattr(fused_bf16, name, spy)
    _compare(pattern, L, B=2, H=2, Hkv=Hkv, D=32, key_mask=True, bias=bias, backend="fused",
             dtype=dtype, tol=BF16_TOL if dtype == torch.bfloat16 else FP32_TOL)
    assert calls["forward"] > 0 and calls["backward"] > 0


def test_auto_defaults_to_the_kernel_for_bf16_and_fp32():
    x32, x16 = torch.randn(1, 1, 8, 16), torch.randn(1, 1, 8, 16).bfloat16()
    want = "fused" if fused_bf16.available() else "flash"
    assert _pick_backend(x16, 0.0, False) == (want, want)
    assert _pick_backend(x32, 0.0, False) == (want, want)
    assert _pick_backend(x32.half(), 0.0, False) == ("flash", "flash")
    assert _pick_backend(x16, 0.1, False) == ("math", "math")  # dropout: only the matmul path has it
    with use_backend("flash"):
        assert _pick_backend(x16, 0.0, False) == ("flash", "flash")
    with use_backend("fused"), pytest.raises(ValueError, match="fused backend needs"):
        _pick_backend(x32.half(), 0.0, False)
    if fused_bf16.available():  # fp32 runs on the kernel's twin
        with use_backend("fused"):
            assert _pick_backend(x32, 0.0, False) == ("fused", "fused")
    with use_backend("fused"), pytest.raises(ValueError, match="dropout_p=0"):
        _pick_backend(x16, 0.1, False)


def test_unsupported_tiles_fall_back_inside_the_fused_backend():
    """Head size 8: the kernel cannot take the tiles; flash runs them and the answer holds."""
    if not _kernel_or_reason():
        return
    _compare(SlidingWindow(5), 70, B=1, H=2, Hkv=2, D=8, key_mask=True, backend="fused", dtype=torch.bfloat16,
             tol=BF16_TOL)


_PROBE = """
import logging, sys, torch
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
from longseq import attend
from longseq.kernels import fused_bf16
from longseq.patterns import SlidingWindow
print("available", fused_bf16.available())
print("built", fused_bf16.library_path().exists())
q = torch.randn(1, 2, 100, 32).bfloat16().requires_grad_()
out = attend(q, q, q, SlidingWindow(8))
out.float().sum().backward()
print("finite", bool(torch.isfinite(q.grad.float()).all()))
"""


def _probe(tmp_path, **env):
    inherited = {k: v for k, v in os.environ.items() if k != fused_bf16.DISABLE_ENV}  # opt-out only when asked
    full = {**inherited, fused_bf16.KERNEL_DIR_ENV: str(tmp_path / "kernels"), **env}
    proc = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, env=full, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return dict(line.split(" ", 1) for line in proc.stdout.splitlines()), proc.stderr


def test_builds_into_the_kernel_dir_and_opts_out(tmp_path):
    got, _ = _probe(tmp_path)
    want = str(_cpu_can_run_it())
    assert got == {"available": want, "built": want, "finite": "True"}
    got, _ = _probe(tmp_path / "off", **{fused_bf16.DISABLE_ENV: "0"})
    assert got == {"available": "False", "built": "False", "finite": "True"}


def test_an_unwritable_kernel_dir_builds_in_the_temp_folder(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    got, err = _probe(tmp_path, **{fused_bf16.KERNEL_DIR_ENV: str(blocker / "kernels")})
    want = str(_cpu_can_run_it())
    assert got == {"available": want, "built": "False", "finite": "True"}  # not where it was asked for
    if _cpu_can_run_it():
        assert "cannot write the kernel cache" in err


def test_a_failing_compiler_leaves_pytorchs_kernels(tmp_path):
    got, err = _probe(tmp_path, CC=shutil.which("false") or "/bin/false")
    assert got == {"available": "False", "built": "False", "finite": "True"}
    if _cpu_can_run_it():  # elsewhere nothing is built, so there is no failure to report
        assert "could not build the fused bf16 attention kernel" in err


_ASAN_PROBE = """
import sys, torch
from longseq.kernels import fused_bf16 as F
F.CFLAGS = tuple(f for f in F.CFLAGS if f != "-O3") + ("-O1", "-g", "-fsanitize=address", "-fno-omit-frame-pointer")
assert F.available()
torch.manual_seed(0)
for n, G, bq, span, D, mshape in [(2, 2, 32, 45, 32, (2, 1, 32, 45)), (1, 3, 128, 40, 16, (1, 1, 1, 40)),
                                  (3, 1, 16, 17, 48, (1, 1, 1, 1)), (1, 2, 64, 320, 64, None)]:
    rows = (n - 1) * bq + span
    kv = lambda: torch.randn(rows, G, D).bfloat16().as_strided((n, G, span, D), (bq * G * D, D, G * D, 1))
    q, k, v = torch.randn(n, G, bq, D).bfloat16(), kv(), kv()
    mask = None if mshape is None else torch.where(torch.rand(mshape) > 0.3, 0.0, float("-inf"))
    for q, k, v in ((q, k, v), (q.float(), kv().float(), kv().float())):
        out, lse = F.forward(q, k, v, mask, 0.3)
        F.backward(torch.randn_like(out), q, k, v, out, lse, mask, 0.3)
print("clean")
"""


def test_kernel_memory_access_under_address_sanitizer(tmp_path):
    """Odd spans, span < bq, broadcast and scalar masks, several thread counts' splits: the
    kernel built with -fsanitize=address reads and writes only what it owns."""
    if not _kernel_or_reason():
        return
    cc = fused_bf16._compiler()
    runtime = subprocess.run([*cc, "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    if not os.path.isabs(runtime):  # this compiler ships no ASan runtime: nothing to preload
        assert not os.path.exists(runtime)
        return
    env = {**os.environ, fused_bf16.KERNEL_DIR_ENV: str(tmp_path), "LD_PRELOAD": runtime,
           "ASAN_OPTIONS": "detect_leaks=0"}
    env.pop(fused_bf16.DISABLE_ENV, None)
    proc = subprocess.run([sys.executable, "-c", _ASAN_PROBE], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0 and "clean" in proc.stdout, proc.stderr[-3000:]
    assert "AddressSanitizer" not in proc.stderr
