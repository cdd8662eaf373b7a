"""``longseq.explain`` names the route and tile backend ``attend`` really takes; the
backend switch is per thread."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import pytest
import torch

import longseq.attention as attention_mod
import longseq.kernels.blocked as blocked_mod
import longseq.kernels.lsh as lsh_mod
from longseq import Route, attend, explain
from longseq.kernels import current_backend, fused_bf16, use_backend
from longseq.patterns import LSH, Dense, Pattern, SlidingWindow, Window2D
from longseq.positions import ALiBi, RelativeBias1D, RelativeBias2D

from .test_new_patterns import masked_reference

# what each route calls; a spy on each records which one ran
ROUTE_CALLS = {
    "dense_sdpa": (attention_mod, "_dense_sdpa"),
    "traced_dense": (attention_mod, "_attend_masked_dense"),
    "window2d_sdpa": (attention_mod, "window2d_attention"),
    "blocked": (attention_mod, "blocked_attention"),
    "pattern": (lsh_mod, "blocked_attention_per_head"),
}


@pytest.fixture
def spies(monkeypatch):
    """Route name -> number of calls, plus the tile backends the kernel picked."""
    calls = {name: 0 for name in ROUTE_CALLS}
    calls["backends"] = []

    def spy(name, fn):
        def wrapped(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapped

    for name, (module, attr) in ROUTE_CALLS.items():
        monkeypatch.setattr(module, attr, spy(name, getattr(module, attr)))
    pick = blocked_mod._pick_backend

    def picked(*args):
        out = pick(*args)
        calls["backends"].append(out)
        return out

    monkeypatch.setattr(blocked_mod, "_pick_backend", picked)
    return calls


def _qkv(L: int, dtype=torch.float32, heads: int = 2, kv_heads: int | None = None):
    q = torch.randn(1, heads, L, 16, dtype=dtype)
    k, v = (torch.randn(1, kv_heads or heads, L, 16, dtype=dtype) for _ in range(2))
    return q, k, v


def _check(spies, q, k, v, pattern, **kw) -> Route:
    route = explain(q, k, v, pattern, **kw)
    attend(q, k, v, pattern, **kw)
    ran = [name for name in ROUTE_CALLS if spies[name]]
    assert ran == [route.route], (str(route), ran)
    if route.backend in ("flash", "math", "fused"):
        assert spies["backends"] == [(route.backend, route.backend)], str(route)
    else:
        assert route.backend == "sdpa" and spies["backends"] == [], str(route)
    return route


bf16_backend = "fused" if fused_bf16.available() else "flash"
fp32_backend = bf16_backend  # the C kernel's fp32 twin is the default where it builds


@pytest.mark.parametrize("case", [
    # (pattern, dtype, kwargs builder, expected route, expected backend)
    ("dense", torch.float32, {}, "dense_sdpa", "sdpa"),
    ("dense-padded", torch.float32, {"key_mask": True}, "dense_sdpa", "sdpa"),
    ("dense-causal-padded", torch.float32, {"key_mask": True}, "blocked", fp32_backend),
    ("window", torch.float32, {}, "blocked", fp32_backend),
    ("window", torch.float32, {"dropout_p": 0.1}, "blocked", "math"),
    ("window", torch.bfloat16, {}, "blocked", bf16_backend),
    ("window", torch.float64, {"bias": "alibi"}, "blocked", "flash"),
    ("window", torch.float32, {"bias": "t5"}, "blocked", "math"),  # learnable bias under autograd
    ("window2d", torch.float32, {}, "window2d_sdpa", "sdpa"),
    ("window2d", torch.float32, {"bias": "swin"}, "window2d_sdpa", "sdpa"),
    ("window2d", torch.float32, {"bias": "alibi"}, "blocked", fp32_backend),
    ("lsh", torch.float32, {}, "pattern", fp32_backend),
    ("lsh", torch.bfloat16, {}, "pattern", bf16_backend),
], ids=lambda c: f"{c[0]}-{str(c[1])[6:]}-{'-'.join(c[2])}")
def test_explain_names_the_route_attend_runs(spies, case) -> None:
    name, dtype, kw, want_route, want_backend = case
    L = 64
    pattern = {
        "dense": Dense(), "dense-padded": Dense(), "dense-causal-padded": Dense(causal=True),
        "window": SlidingWindow(4), "window2d": Window2D(4, (8, 8), shift=2), "lsh": LSH(bucket_size=8, n_hashes=2, seed=0),
    }[name]
    q, k, v = _qkv(L, dtype)
    kwargs = dict(kw)
    if kwargs.get("key_mask"):
        kwargs["key_mask"] = torch.rand(1, L) > 0.3
    if "bias" in kwargs:
        kwargs["bias"] = {"alibi": ALiBi(2), "t5": RelativeBias1D(2), "swin": RelativeBias2D(2, 4)}[kwargs["bias"]]
    route = _check(spies, q, k, v, pattern, **kwargs)
    assert (route.route, route.backend) == (want_route, want_backend), str(route)
    assert isinstance(route, Route) and route.reason


def test_explain_follows_a_forced_backend(spies) -> None:
    q, k, v = _qkv(64)
    with use_backend("math"):
        route = _check(spies, q, k, v, Window2D(4, (8, 8)))
    assert (route.route, route.backend) == ("blocked", "math")
    assert "use_backend('math')" in route.reason


def test_explain_under_no_grad_and_gqa(spies) -> None:
    q, k, v = _qkv(48, heads=4, kv_heads=2)
    with torch.no_grad():  # a learnable bias is not differentiated: the flash tiles (or the C kernel) serve it
        route = _check(spies, q, k, v, SlidingWindow(3), bias=RelativeBias1D(4))
    assert (route.route, route.backend) == ("blocked", fp32_backend)


def test_explain_while_exporting(spies, monkeypatch) -> None:
    monkeypatch.setattr(torch.compiler, "is_exporting", lambda: True)
    route = _check(spies, *_qkv(32), SlidingWindow(3))
    assert (route.route, route.backend) == ("traced_dense", "sdpa")


def test_explain_a_pattern_with_its_own_attend() -> None:
    @dataclass(frozen=True)
    class Mean(Pattern):
        def allowed(self, i, j):
            return torch.ones_like(i - j, dtype=torch.bool)

        def attend(self, q, k, v, *, key_mask, bias, dropout_p, scale):
            return v.mean(2, keepdim=True).expand_as(q)

    q, k, v = _qkv(8)
    assert (explain(q, k, v, Mean()).route, explain(q, k, v, Mean()).backend) == ("pattern", "own")
    torch.testing.assert_close(attend(q, k, v, Mean()), v.mean(2, keepdim=True).expand_as(q))


def test_explain_checks_arguments_like_attend() -> None:
    q, k, v = _qkv(16)
    for bad in (dict(dropout_p=1.5), dict(key_mask=torch.ones(1, 15, dtype=torch.bool))):
        with pytest.raises(ValueError) as from_explain:
            explain(q, k, v, SlidingWindow(2), **bad)
        with pytest.raises(ValueError) as from_attend:
            attend(q, k, v, SlidingWindow(2), **bad)
        assert str(from_explain.value) == str(from_attend.value)
    with use_backend("flash"), pytest.raises(ValueError, match="flash backend needs"):
        explain(q, k, v, SlidingWindow(2), dropout_p=0.1)


def test_route_str_is_one_readable_line() -> None:
    q, k, v = _qkv(16)
    text = str(explain(q, k, v, SlidingWindow(2)))
    assert text.startswith(f"blocked [{fp32_backend}]: ") and "\n" not in text
    with pytest.raises(AttributeError):
        explain(q, k, v, SlidingWindow(2)).route = "dense_sdpa"  # frozen


def test_attend_logs_its_route_at_debug(caplog) -> None:
    q, k, v = _qkv(16)
    with caplog.at_level(logging.DEBUG, logger="longseq.attention"):
        attend(q, k, v, Dense())
    (record,) = [r for r in caplog.records if r.name == "longseq.attention"]
    assert record.levelno == logging.DEBUG and "dense_sdpa [sdpa]" in record.getMessage()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="longseq.attention"):
        attend(q, k, v, Dense())
    assert not [r for r in caplog.records if r.name == "longseq.attention"]


def test_use_backend_is_per_thread() -> None:
    q, k, v = _qkv(32)
    barrier = threading.Barrier(2, timeout=30)
    seen: dict[str, object] = {}
    errors: list[BaseException] = []

    def run(name: str) -> None:
        try:
            with use_backend(name):
                barrier.wait()  # both threads are inside their own block now
                seen[name] = (current_backend(), explain(q, k, v, SlidingWindow(2)).backend)
                barrier.wait()  # neither leaves before the other has looked
            seen[f"{name} after"] = current_backend()
        except BaseException as e:  # surfaced below: a thread's exception is otherwise lost
            errors.append(e)

    threads = [threading.Thread(target=run, args=(name,)) for name in ("math", "flash")]
    with use_backend("fused" if fused_bf16.available() else "math"):
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors
    assert seen["math"] == ("math", "math") and seen["flash"] == ("flash", "flash")
    assert seen["math after"] == seen["flash after"] == "auto"  # the main thread's choice is its own
    assert current_backend() == "auto"
    with pytest.raises(ValueError, match="backend must be one of"), use_backend("gpu"):
        pass


def test_explain_names_implementations_that_do_not_run_on_tiles():
    from longseq import explain
    from longseq.patterns import LSH, Hierarchical, Routing, TopK

    q = torch.randn(1, 2, 64, 16)
    for pattern, words in [(TopK(4), "top-k"), (Hierarchical(16), "summary"), (Routing(2, window=4), "routing")]:
        route = explain(q, q, q, pattern)
        assert (route.route, route.backend) == ("pattern", "torch") and words in route.reason, route
    assert explain(q, q, q, LSH(bucket_size=16)).backend in ("flash", "math", "fused")


def test_a_window_that_covers_the_sequence_runs_as_dense() -> None:
    """Every pair allowed: SDPA runs it (a 200-token sequence under a 256-token window
    would otherwise tile 640 key slots per block); the answer is the window's."""
    q, k, v = (torch.randn(2, 2, 200, 16, requires_grad=True) for _ in range(3))
    for causal in (False, True):
        route = explain(q, k, v, SlidingWindow(256, causal=causal))
        assert route.route == "dense_sdpa" and "the window covers all 200 tokens" in route.reason
        out = attend(q, k, v, SlidingWindow(256, causal=causal))
        ref = masked_reference(*(t.double() for t in (q, k, v)), SlidingWindow(256, causal=causal).dense_mask(200))
        torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)
    assert explain(q, k, v, SlidingWindow(198)).route == "blocked"  # one pair out of reach
    assert explain(q, k, v, SlidingWindow(256, dilation=2)).route == "blocked"
    assert explain(q, k, v, SlidingWindow(256, global_tokens=(0,))).route == "blocked"
    assert explain(q, k, v, SlidingWindow(256), bias=ALiBi(2)).route == "blocked"
    with use_backend("math"):  # a forced tile backend keeps the tiles
        assert explain(q, k, v, SlidingWindow(256)).route == "blocked"
    assert explain(q, k, v, SlidingWindow(256), dropout_p=0.1).route == "dense_sdpa"
    long = torch.randn(1, 2, 600, 16)  # CPU SDPA with dropout forms (B, H, L, L) scores: tiles above 512
    assert explain(long, long, long, SlidingWindow(600), dropout_p=0.1).route == "blocked"
    assert explain(long, long, long, SlidingWindow(600)).route == "dense_sdpa"
