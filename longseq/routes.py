"""Which implementation :func:`longseq.attend` runs for given arguments, and why.

:func:`choose_route` is the one decision: ``attend`` runs the route it returns and
:func:`longseq.explain` reports it, so the two cannot disagree. Routes:

* ``"pattern"``: the pattern's own implementation (data-dependent layouts such as LSH,
  registered in :mod:`longseq.kernels.registry`, or a pattern's ``attend`` method);
* ``"dense_sdpa"``: :class:`~longseq.patterns.Dense` through PyTorch's fused SDPA;
* ``"traced_dense"``: SDPA with the pattern's dense mask while a graph is traced
  (``torch.export``, ``torch.jit.trace``, either ``torch.onnx.export``; see
  :func:`~longseq.kernels.tracing.is_tracing`), where the kernels' custom autograd
  Functions cannot be recorded;
* ``"traced_window2d"``: while a graph is traced, :class:`~longseq.patterns.Window2D`
  windows as the batch of one SDPA call, with a per-window mask (no ``L x L`` tensor);
* ``"window2d_sdpa"``: :class:`~longseq.patterns.Window2D` windows as the batch of one SDPA call;
* ``"flex"``: PyTorch's FlexAttention with the pattern as ``mask_mod`` and ``BlockMask``
  (:mod:`longseq.kernels.flex`): every pattern with a flex mask on CUDA tensors (except
  the Dense cases SDPA serves), on CPU only under ``use_backend("flex")``;
* ``"blocked"``: the blocked kernel over the pattern's tiling.

``backend`` names the tile backend (``"flash"``, ``"math"``, ``"fused"``) where tiles
run, ``"flex"`` for FlexAttention, ``"sdpa"`` for the routes that call PyTorch's SDPA
directly, and ``"own"`` for a pattern's own ``attend`` method.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

from longseq.kernels.bias import TileBias
from longseq.kernels.blocked import BackendChoice, backend_choice, bias_needs_grad, current_backend
from longseq.kernels.flex import flex_unsupported, score_mod_for, supports_bias, supports_flex
from longseq.kernels.registry import attention_for, attention_info, has_own_attention
from longseq.kernels.tracing import is_tracing
from longseq.kernels.window2d import supports_window2d_sdpa
from longseq.kernels.window2d_traced import supports_traced_window2d
from longseq.patterns import Dense, Pattern

__all__ = ["Route", "ROUTES", "choose_route"]

ROUTES = ("pattern", "dense_sdpa", "traced_dense", "traced_window2d", "window2d_sdpa", "flex", "blocked")


@dataclass(frozen=True)
class Route:
    """The route :func:`longseq.attend` takes, its tile backend, and why."""

    route: str
    backend: str
    reason: str

    def __str__(self) -> str:
        return f"{self.route} [{self.backend}]: {self.reason}"


# Routes without a tile backend are constants: deciding them allocates nothing.
_OWN_METHOD = Route("pattern", "own", "the pattern brings its own attend method")
_DENSE = Route("dense_sdpa", "sdpa", "Dense without a bias: PyTorch's fused SDPA, no mask")
_DENSE_PADDED = Route("dense_sdpa", "sdpa", "bidirectional Dense with a key_mask and no bias: SDPA with a padding mask")
_TRACED = Route("traced_dense", "sdpa",
                "a graph is traced (torch.export, torch.jit.trace, torch.onnx.export): SDPA with the "
                "pattern's dense mask (quadratic, but traceable)")
_TRACED_WINDOW2D = Route("traced_window2d", "sdpa",
                         "a graph is traced (torch.export, torch.jit.trace, torch.onnx.export) through Window2D: "
                         "window partition and one SDPA call with a "
                         "per-window mask (memory linear in L)")
_WINDOW2D = Route("window2d_sdpa", "sdpa",
                  "Window2D windows attend only themselves: one partition copy and one SDPA call")


_FLEX_FORCED = Route("flex", "flex", "FlexAttention with the pattern's mask_mod and BlockMask; "
                                    "forced by use_backend('flex')")
_FLEX_CUDA = Route("flex", "flex", "CUDA: FlexAttention with the pattern's mask_mod and BlockMask "
                                  "(fused block-sparse kernel, forward and backward)")


@lru_cache(maxsize=None)
def _registered(how: str) -> Route:
    return Route("pattern", "torch", how)


@lru_cache(maxsize=None)
def _tiled(route: str, choice: BackendChoice, how: str | None = None) -> Route:
    """One Route per (route, backend choice): built once, not per call."""
    backend = choice.forward if choice.forward == choice.backward else f"{choice.forward}/{choice.backward}"
    what = how or "the blocked kernel over the pattern's tiling"
    return Route(route, backend, f"{what}; {choice.reason}")


def choose_route(q: Tensor, pattern: Pattern, *, key_mask: Tensor | None, bias: TileBias | None,
                 dropout_p: float, needs_grad: bool | None = None) -> Route:
    """The route of ``attend(q, k, v, pattern, key_mask=..., bias=..., dropout_p=...)``.

    ``q`` ``(B, H, L, D)`` (only its device and dtype matter), ``key_mask`` ``(B, L)``.
    Arguments are assumed valid (:func:`longseq.attend` checks them first). Raises the
    ``ValueError`` the kernel would raise for a backend forced by ``use_backend`` that
    cannot serve these arguments (``NotImplementedError`` for a bias type the forced
    ``"flex"`` backend has no ``score_mod`` for). ``needs_grad``: whether the call is
    differentiated (which FlexAttention on CPU cannot do); None reads it from ``q`` and
    the bias alone.
    """
    if has_own_attention(pattern):
        return _OWN_METHOD
    if attention_for(pattern) is not None:
        tiles, how = attention_info(pattern)
        if not tiles:
            return _registered(how)
        # registered tile users run the blocked kernel per head, without a bias
        return _tiled("pattern", backend_choice(q, dropout_p, False), how)
    if isinstance(pattern, Dense) and bias is None and (key_mask is None or not pattern.causal):
        return _DENSE if key_mask is None else _DENSE_PADDED
    if is_tracing():
        return _TRACED_WINDOW2D if supports_traced_window2d(pattern, bias) else _TRACED
    flex = _flex_route(q, pattern, bias, float(dropout_p), needs_grad)
    if flex is not None:
        return flex
    if current_backend() == "auto" and supports_window2d_sdpa(pattern, bias):
        return _WINDOW2D
    return _tiled("blocked", backend_choice(q, float(dropout_p), bias_needs_grad(bias)))


def _flex_route(q: Tensor, pattern: Pattern, bias: TileBias | None, dropout_p: float,
                needs_grad: bool | None) -> Route | None:
    """The ``flex`` route when it serves this call, None to go on to the other routes.

    Forced by ``use_backend("flex")``, a pattern without a flex mask goes on (its tiles
    choose as under ``auto``); any other reason flex cannot serve raises, as for the other
    forced backends. Under ``auto`` only CUDA tensors take it, and anything it cannot
    serve (dropout, a bias without a ``score_mod``) goes on to the blocked kernel."""
    forced = current_backend()
    if forced not in ("auto", "flex") or (forced == "auto" and q.device.type != "cuda"):
        return None
    if not supports_flex(pattern):
        return None
    if needs_grad is None:
        needs_grad = (q.requires_grad and torch.is_grad_enabled()) or bias_needs_grad(bias)
    why_not = flex_unsupported(q, pattern, bias=bias, dropout_p=dropout_p, needs_grad=needs_grad)
    if why_not is None:
        return _FLEX_FORCED if forced == "flex" else _FLEX_CUDA
    if forced == "flex":
        if not supports_bias(bias):
            score_mod_for(bias, pattern, 1)  # raises NotImplementedError naming the bias type
        raise ValueError(f"the flex backend cannot serve this call: {why_not}")
    return None
