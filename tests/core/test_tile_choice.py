"""``auto``'s measured tile backend: timed once per key, cached on disk, the default kept
within the margin, forced by ``LONGSEQ_BACKEND`` or ``use_backend``, and shown by ``explain``."""

from __future__ import annotations

import json

import pytest
import torch
import torch.utils.checkpoint

import longseq.kernels.blocked as blocked
from longseq import attend, explain
from longseq.hardware import cpu_description
from longseq.kernels import tile_choice
from longseq.kernels.blocked import use_backend
from longseq.patterns import SlidingWindow

from .test_new_patterns import masked_reference

pytestmark = pytest.mark.measured_tiles


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LONGSEQ_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("LONGSEQ_BACKEND", raising=False)
    tile_choice.forget()
    yield tmp_path / "cache" / tile_choice.CACHE_FILE
    tile_choice.forget()


def _counting(seconds: dict[str, float]):
    calls = []

    def measure(name: str) -> float:
        calls.append(name)
        return seconds[name]

    return measure, calls


def test_measured_once_then_read_from_the_cache(fresh_cache):
    measure, calls = _counting({"flash": 1.0, "math": 0.5})
    name, why = tile_choice.measured_backend(torch.float32, 24, ("flash", "math"), "flash", measure)
    assert (name, sorted(calls)) == ("math", ["flash", "math"]) and why.startswith("fastest when measured")
    assert "math 500.0 ms, flash 1000.0 ms" in why
    assert tile_choice.measured_backend(torch.float32, 24, ("flash", "math"), "flash", measure)[0] == "math"
    assert len(calls) == 2  # remembered in the process
    entry = json.loads(fresh_cache.read_text())
    (key, value), = entry.items()
    assert cpu_description() in key and "float32" in key and "head dim 24" in key
    assert f"{torch.get_num_threads()} threads" in key
    assert value == {"choice": "math", "seconds": {"flash": 1.0, "math": 0.5}}
    tile_choice.forget()  # a new process: the file answers
    name, why = tile_choice.measured_backend(torch.float32, 24, ("flash", "math"), "flash", measure)
    assert (name, len(calls)) == ("math", 2) and why.startswith("fastest when measured before")
    # another head size or dtype, or another set of candidates, is measured anew
    tile_choice.measured_backend(torch.bfloat16, 24, ("flash", "math"), "flash", measure)
    assert len(calls) == 4
    measure3, calls3 = _counting({"flash": 1.0, "math": 0.5, "fused": 0.2})
    tile_choice.forget()
    assert tile_choice.measured_backend(torch.float32, 24, ("flash", "math", "fused"), "flash", measure3)[0] == "fused"
    assert len(calls3) == 3


def test_the_default_stays_within_the_margin():
    measure, _ = _counting({"flash": 1.0, "math": 0.93, "fused": 1.2})
    name, why = tile_choice.measured_backend(torch.bfloat16, 32, ("flash", "math", "fused"), "flash", measure)
    assert name == "flash" and why.startswith("the default, as no other path was 10% faster")
    with pytest.raises(ValueError, match="default 'fused' is not among"):
        tile_choice.measured_backend(torch.bfloat16, 32, ("flash", "math"), "fused", measure)


def test_an_unwritable_cache_still_chooses(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("LONGSEQ_CACHE_DIR", str(blocker))
    measure, calls = _counting({"flash": 0.1, "math": 1.0})
    assert tile_choice.measured_backend(torch.float32, 8, ("flash", "math"), "flash", measure)[0] == "flash"
    assert len(calls) == 2


def test_attend_runs_the_measured_path_exactly(monkeypatch, fresh_cache):
    measured = []

    def fake(backend, dtype, head_dim, repeats=2):
        measured.append((backend, dtype, head_dim))
        return {"flash": 1.0, "math": 0.1, "fused": 2.0}[backend]

    monkeypatch.setattr(blocked, "_time_tiles", fake)
    q, k, v = (torch.randn(2, 2, 77, 12, requires_grad=True) for _ in range(3))
    pattern = SlidingWindow(9, causal=True)
    route = explain(q, k, v, pattern)
    assert route.backend == "math" and "fastest when measured on this CPU (math 100.0 ms" in route.reason
    assert {m[0] for m in measured} >= {"flash", "math"} and {m[1:] for m in measured} == {(torch.float32, 12)}
    out = attend(q, k, v, pattern)
    ref = masked_reference(q, k, v, pattern.dense_mask(77)[None, None])
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    n = len(measured)
    qd, kd, vd = q.double(), k.double(), v.double()
    attend(qd, kd, vd, pattern)  # float64: not measured, flash
    assert len(measured) == n and explain(qd, kd, vd, pattern).backend == "flash"


def test_longseq_backend_forces_where_it_can_serve(monkeypatch):
    monkeypatch.setattr(blocked, "_time_tiles", lambda *a, **k: pytest.fail("forced: nothing is measured"))
    q = torch.randn(1, 2, 40, 8)
    pattern = SlidingWindow(4)
    monkeypatch.setenv("LONGSEQ_BACKEND", "math")
    route = explain(q, q, q, pattern)
    assert route.backend == "math" and "forced by LONGSEQ_BACKEND=math" in route.reason
    with use_backend("flash"):  # a with block wins over the environment
        assert explain(q, q, q, pattern).backend == "flash"
    monkeypatch.setenv("LONGSEQ_BACKEND", "fused")  # fp16 cannot run on the C kernel: auto, and why
    monkeypatch.setattr(blocked, "_time_tiles", lambda backend, *a, **k: {"flash": 0.1, "math": 1.0}[backend])
    route = explain(q.half(), q.half(), q.half(), pattern)
    assert route.backend == "flash" and "LONGSEQ_BACKEND=fused cannot serve this call" in route.reason
    monkeypatch.setenv("LONGSEQ_BACKEND", "fastest")
    with pytest.raises(ValueError, match="LONGSEQ_BACKEND='fastest': must be one of auto, flash, math, fused"):
        explain(q, q, q, pattern)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_real_measurement(dtype):
    state = torch.get_rng_state()
    seconds = blocked._time_tiles("flash", dtype, 16, repeats=1)
    assert 0 < seconds < 10
    assert torch.equal(torch.get_rng_state(), state)  # the caller's random stream is untouched
    with torch.inference_mode():  # measured from inside inference mode too
        assert blocked._time_tiles("math", dtype, 16, repeats=1) > 0


def test_a_failing_path_is_ruled_out():
    def measure(name):
        if name == "math":
            raise RuntimeError("no such kernel")
        return {"flash": 1.0, "fused": 0.5}[name]

    name, why = tile_choice.measured_backend(torch.bfloat16, 64, ("flash", "math", "fused"), "flash", measure)
    assert name == "fused" and "math inf ms" in why


def test_first_measurement_inside_activation_checkpointing():
    """The timing runs in a thread of its own: the checkpoint's saved-tensor hooks, the
    caller's no-grad or autocast never reach it, and the checkpointed gradients are exact."""
    q, k, v = (torch.randn(1, 2, 300, 16, requires_grad=True) for _ in range(3))
    pattern = SlidingWindow(20)

    def f(q, k, v):
        return attend(q, k, v, pattern)

    out = torch.utils.checkpoint.checkpoint(f, q, k, v, use_reentrant=False)
    got = torch.autograd.grad(out, (q, k, v), torch.ones_like(out))
    assert "measured on this CPU" in explain(q, k, v, pattern).reason
    ref = masked_reference(q, k, v, pattern.dense_mask(300)[None, None])
    want = torch.autograd.grad(ref, (q, k, v), torch.ones_like(ref))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):  # a new key, measured under both
        attend(q.bfloat16(), k.bfloat16(), v.bfloat16(), pattern)
