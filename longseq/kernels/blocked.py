"""The blocked attention kernel: tiles from a :class:`~longseq.kernels.plan.Tiling`.

Memory: besides q, k, v, the output and their gradients, the kernel keeps one
log-sum-exp per query and ``O(chunk x block x span)`` working memory; nothing of size
``L x L`` is ever formed. Backward recomputes each tile's probabilities from the saved
log-sum-exp (flash-attention style), so activation memory is independent of the pattern.
Several parts of a tiling (disjoint key sets per query) are merged by log-sum-exp in
forward; in backward each part is differentiated against the *merged* output and
log-sum-exp, which is exactly the gradient of the joint softmax.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import time
from typing import Iterator, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from longseq.kernels import fused_bf16, tile_choice, tiles
from longseq.kernels.bias import TileBias
from longseq.kernels.plan import Plan, Tiling, sliding_window_tiling
from longseq.patterns import SlidingWindow

__all__ = [
    "blocked_attention", "blocked_attention_per_head", "use_backend", "current_backend", "env_backend",
    "backend_choice",
    "BackendChoice", "bias_needs_grad", "merge_partial",
]

_BACKENDS = ("auto", "flash", "math", "fused", "flex")
# A context variable, not a module global: each thread (and asyncio task) sees only the
# backend forced by its own ``with use_backend(...)`` blocks.
_BACKEND: contextvars.ContextVar[str] = contextvars.ContextVar("longseq_tile_backend", default="auto")
#: The environment variable that forces the tile backend of the blocked kernel for the
#: whole process where it can run a call (a ``use_backend`` block takes precedence).
BACKEND_ENV = "LONGSEQ_BACKEND"
_ENV_BACKENDS = ("auto", "flash", "math", "fused")
_CHUNK_BYTES = 32 * 2**20
# Irregular tile masks (data-dependent patterns such as LSH) cost several elementwise
# passes each; forward keeps them for backward when they are small next to q.
_MASK_CACHE_BYTES = 64 * 2**20
NEG_INF = float("-inf")


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Force the tile backend inside a ``with`` block (of this thread only).

    ``"auto"`` (the default) picks per call, see :func:`backend_choice`; ``"flash"`` is
    PyTorch's fused CPU kernels; ``"math"`` plain matmuls (any device, dropout, bias
    gradients); ``"fused"`` the C kernel of :mod:`longseq.kernels.fused_bf16` on CPUs with
    AVX512-BF16 (bf16 or fp32 CPU tensors; tiles whose block or head size is not a
    multiple of 16 still run on ``"flash"``); ``"flex"`` PyTorch's FlexAttention (:mod:`longseq.kernels.flex`) for
    the patterns it covers, not a tile backend: tiles that still run inside such a ``with`` block
    (data-dependent patterns) choose as under ``"auto"``. The choice lives in a
    :class:`contextvars.ContextVar`, so threads running attention at the same time do not
    see each other's choice."""
    if name not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {name!r}")
    token = _BACKEND.set(name)
    try:
        yield
    finally:
        _BACKEND.reset(token)


def current_backend() -> str:
    """The backend forced by :func:`use_backend` in this thread (``"auto"`` outside any such block)."""
    return _BACKEND.get()


def env_backend() -> str:
    """The tile backend ``$LONGSEQ_BACKEND`` asks for (``"auto"`` when unset)."""
    env = os.environ.get(BACKEND_ENV, "").strip() or "auto"
    if env not in _ENV_BACKENDS:
        raise ValueError(f"{BACKEND_ENV}={env!r}: must be one of {', '.join(_ENV_BACKENDS)}")
    return env


class BackendChoice(NamedTuple):
    """Tile backends of one call, and why they were chosen."""

    forward: str
    backward: str
    reason: str


_FORCED = {name: f"forced by use_backend({name!r})" for name in _BACKENDS}
_WHY_NOT_CPU = "not on the CPU: matmul tiles (any device)"
_WHY_DROPOUT = "dropout: only the matmul tiles apply it"
_WHY_BIAS_GRAD = "learnable bias under autograd: only the matmul tiles give score gradients"
_WHY_FUSED = "bf16 or fp32 on a CPU with AVX512-BF16: the fused C kernel"
_WHY_FLASH = "CPU, no dropout, no learnable bias: PyTorch's flash tiles"
_WHY_FLEX_TILES = "use_backend('flex') covers only patterns with a flex mask_mod: tiles chosen as under 'auto'"
_WHY_FLASH_BF16 = ("bf16 without the fused C kernel (no AVX512-BF16 or C compiler, disabled, or compiling): "
                   "PyTorch's flash tiles")


def backend_choice(q: Tensor, dropout_p: float, bias_grad: bool) -> BackendChoice:
    """(forward, backward) tile backends for queries like ``q``, with the reason.

    ``auto`` on the CPU (no dropout, no learnable bias; fp32, bf16 or fp16) takes the path
    measured fastest on this CPU for the dtype and head size (:mod:`longseq.kernels.tile_choice`:
    timed once, cached on disk) among PyTorch's flash tiles, the matmul tiles and, for bf16
    and fp32 on CPUs with AVX512-BF16, the fused C kernel; the default it keeps unless
    another path is 10% faster is the fused kernel where available (a window pass at
    65,536 tokens ran about 3.4x faster on it in bf16 and 1.2-1.5x in fp32 than on flash on an
    AVX512-BF16 EPYC, docs/results.md) and else flash.
    Elsewhere the matmul path runs. ``$LONGSEQ_BACKEND`` forces a path for the process
    where it can serve the call (and is ignored, with the reason, where it cannot). Under
    ``use_backend("flex")`` (which selects a route, not tiles) the tiles are chosen as
    under ``auto`` and the reason says so.
    """
    forced = current_backend()
    if forced == "flex":
        choice = _choice("auto", q, dropout_p, bias_grad)
        return choice._replace(reason=f"{choice.reason}; {_WHY_FLEX_TILES}")
    if forced == "auto" and env_backend() != "auto":  # a preference: where it cannot serve, auto chooses
        wanted = env_backend()
        try:
            choice = _choice(wanted, q, dropout_p, bias_grad)
            return choice._replace(reason=f"forced by {BACKEND_ENV}={wanted}")
        except ValueError as exc:
            choice = _choice("auto", q, dropout_p, bias_grad)
            return choice._replace(reason=f"{choice.reason} ({BACKEND_ENV}={wanted} cannot serve this call: {exc})")
    return _choice(forced, q, dropout_p, bias_grad)


def _choice(forced: str, q: Tensor, dropout_p: float, bias_grad: bool) -> BackendChoice:
    """:func:`backend_choice` for a tile backend name (``"auto"`` or a forced one)."""
    flash_ok = q.device.type == "cpu" and dropout_p == 0.0 and not bias_grad
    if forced in ("flash", "fused") and not flash_ok:
        raise ValueError(f"the {forced} backend needs a CPU tensor, dropout_p=0 and no learnable bias")
    # Only built when it would be used; torch.compile traces PyTorch's ops, not ctypes calls.
    fused_ok = (flash_ok and forced in ("auto", "fused") and q.dtype in fused_bf16.DTYPES
                and not torch.compiler.is_compiling() and fused_bf16.available())
    if forced == "fused" and not fused_ok:
        raise ValueError("the fused backend needs bf16 or fp32 tensors and a CPU with AVX512-BF16 and a C compiler "
                         f"(longseq.kernels.fused_bf16; disabled by {fused_bf16.DISABLE_ENV}=0)")
    if forced == "math" or not flash_ok:
        if forced == "math":
            why = _FORCED["math"]
        else:
            why = _WHY_NOT_CPU if q.device.type != "cpu" else _WHY_DROPOUT if dropout_p != 0.0 else _WHY_BIAS_GRAD
        return BackendChoice("math", "math", why)
    if forced in ("flash", "fused"):
        return BackendChoice(forced, forced, _FORCED[forced])
    default, why = ("fused", _WHY_FUSED) if fused_ok else \
        ("flash", _WHY_FLASH_BF16 if q.dtype == torch.bfloat16 else _WHY_FLASH)
    if q.dtype in tile_choice.MEASURED_DTYPES and not torch.compiler.is_compiling():
        candidates = ("flash", "math", "fused") if fused_ok else ("flash", "math")
        name, measured = tile_choice.measured_backend(q.dtype, q.shape[-1], candidates, default,
                                                      lambda c: _time_tiles(c, q.dtype, q.shape[-1]))
        return BackendChoice(name, name, f"{measured}; {why}" if name == default else measured)
    return BackendChoice(default, default, why)


def _time_tiles(backend: str, dtype: torch.dtype, head_dim: int, repeats: int = 2) -> float:
    """Seconds of the fastest of ``repeats`` forward and backward passes (after one untimed
    warm-up) of window(256) attention over 4,096 tokens and 2 heads on ``backend``'s tiles,
    CPU tensors of ``dtype``; what :mod:`longseq.kernels.tile_choice` compares."""
    L = 4096
    pattern = SlidingWindow(256)
    tiling = sliding_window_tiling(pattern, L, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)  # the caller's random stream is left alone
    best = float("inf")
    with torch.inference_mode(False), torch.enable_grad(), torch.autocast("cpu", enabled=False), \
            use_backend(backend):
        q, k, v = (torch.randn(1, 2, L, head_dim, generator=gen).to(dtype).requires_grad_() for _ in range(3))
        for i in range(repeats + 1):
            start = time.perf_counter()
            out = blocked_attention(q, k, v, tiling, pattern=pattern, scale=head_dim**-0.5)
            torch.autograd.grad(out, (q, k, v), torch.ones_like(out))
            if i:
                best = min(best, time.perf_counter() - start)
    return best


def _pick_backend(q: Tensor, dropout_p: float, bias_grad: bool) -> tuple[str, str]:
    """(forward, backward) tile backends: :func:`backend_choice` without the reason."""
    choice = backend_choice(q, dropout_p, bias_grad)
    return choice.forward, choice.backward


def _grad_params(bias: TileBias | None) -> tuple[Tensor, ...]:
    """The bias tensors that need gradients (none without a bias)."""
    return tuple(p for p in bias.parameters() if p.requires_grad) if bias is not None else ()


def bias_needs_grad(bias: TileBias | None) -> bool:
    """Whether a call with this bias differentiates it (which only the matmul tiles can)."""
    return bool(_grad_params(bias)) and torch.is_grad_enabled()


def merge_partial(out1: Tensor, lse1: Tensor, out2: Tensor, lse2: Tensor) -> tuple[Tensor, Tensor]:
    """Combine two softmax-attention results over disjoint key sets.

    ``out*`` (..., L, D), ``lse*`` (..., L); ``-inf`` lse marks an empty part.
    """
    m = torch.maximum(lse1, lse2)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    w1, w2 = (lse1 - m).exp(), (lse2 - m).exp()
    total = w1 + w2
    acc = w1.dtype
    out = (out1.to(acc) * w1.unsqueeze(-1) + out2.to(acc) * w2.unsqueeze(-1)) / total.clamp_min(
        torch.finfo(acc).tiny
    ).unsqueeze(-1)
    return out.to(out1.dtype), m + total.log()


def _float_mask(allowed: Tensor) -> Tensor:
    """Additive float32 mask: 0 where allowed, -inf elsewhere (one pass)."""
    zero = torch.zeros((), dtype=torch.float32, device=allowed.device)
    return torch.where(allowed, zero, zero - float("inf"))


class _Part:
    """Index bookkeeping of one plan for one call (shared by forward and backward)."""

    def __init__(self, plan: Plan, B: int, H: int, device: torch.device, key_mask: Tensor | None,
                 bias: TileBias | None, pattern, cache_budget: int = 0) -> None:
        self.plan, self.B, self.H, self.G = plan, B, H, B * H
        self.bias, self.pattern, self.key_mask = bias, pattern, key_mask
        self.qidx = plan.query_index(device)  # (n_blocks, block)
        self.kidx = plan.key_index(device)  # (Lk,)
        if plan.slots is not None:
            slots = plan.slots.to(device)
            self.q_slot_of = torch.full((plan.L,), -1, dtype=torch.long, device=device)
            real = slots >= 0
            self.q_slot_of[slots[real]] = torch.nonzero(real).squeeze(1)
            self.q_missing = bool((self.q_slot_of < 0).any())
        else:
            self.q_slot_of, self.q_missing = None, False
        self.k_slot_of = self._key_slot_of_token(device)
        # Permuted slots (LSH, dilation, windows): tiles gather their rows chunk by chunk
        # instead of from whole slot copies of q, k, v (and out, dout in backward), which
        # at a million tokens cost several times q's size at the peak.
        self.gather_chunks = plan.slots is not None and plan.key_blocks is None
        regular = plan.regular if plan.regular is not None else torch.zeros(plan.n_blocks, dtype=torch.bool)
        regular = regular.to(device)
        if key_mask is not None and bool(regular.any()):
            spans = plan.block_keys(self.kidx, 0, plan.n_blocks).clamp(min=0)  # (n_blocks, span)
            regular = regular & key_mask[:, spans].all(-1).all(0)
        self.regular = regular.cpu()
        self.template = None
        self._template_biased = None
        if plan.template is not None and bool(self.regular.any()):
            self.ref = int(torch.nonzero(self.regular)[0])
            self.template = _float_mask(plan.template.to(device))[None, None]  # (1, 1, bq, span)
            self.template_rows = plan.template.any(-1).to(device)  # (bq,)
        per_block = max(1, self.G * plan.block * max(plan.span, 1) * 4)
        self.chunk = max(1, _CHUNK_BYTES // per_block)
        mask_bytes = int((~self.regular).sum()) * (B if key_mask is not None else 1) * plan.block * plan.span
        # chunk start -> bool mask saved by forward for backward, or None: recompute
        self.mask_cache: dict[int, Tensor] | None = {} if 0 < mask_bytes <= cache_budget else None
        self.filling = self.mask_cache is not None  # until forward has stored every chunk

    def _key_slot_of_token(self, device: torch.device) -> Tensor | None:
        """(L,) key slot of every token when permuted key slots hold each token once, else None.

        Then key gradients go back by a gather instead of a scatter-add."""
        plan = self.plan
        if plan.contiguous_keys or plan.key_blocks is not None:
            return None
        base = plan._key_base(device)
        self.n_key_base = base.numel()
        valid = base >= 0
        tokens = base[valid]
        if tokens.numel() != plan.L or bool((torch.bincount(tokens, minlength=plan.L) != 1).any()):
            return None
        slot_of = torch.empty(plan.L, dtype=torch.long, device=device)
        slot_of[tokens] = torch.nonzero(valid).squeeze(1)
        return slot_of

    def chunks(self) -> Iterator[tuple[int, int]]:
        """Runs of regular / irregular blocks, so regular runs use the broadcast template."""
        n = self.plan.n_blocks
        reg = self.regular.tolist()
        start = 0
        while start < n:
            kind = reg[start]
            end = start + 1
            while end < n and reg[end] == kind and end - start < self.chunk:
                end += 1
            yield start, end
            start = end

    # Layout ------------------------------------------------------------------------
    # Slots are indexed (n_slots, G, D) with G = B*H, in whatever memory layout the input
    # already has (head-major (B, H, L, D) or token-major as projections produce it): tile
    # views are built from the actual strides, so no layout copy is ever made. Padded and
    # permuted slots and the key-gradient accumulators are token-major, so a block of slots
    # is one contiguous run and overlapping spans are added back with contiguous adds.
    def _token_major(self, x: Tensor) -> Tensor:
        """(B, H, L, ...) -> (L, G, ...); a view when x already is token-major with B=1."""
        L = self.plan.L
        return x.movedim(2, 0).reshape(L, self.G, *x.shape[3:])

    def _from_token_major(self, x: Tensor) -> Tensor:
        """(L, G, ...) -> (B, H, L, ...) view."""
        return x.reshape(self.plan.L, self.B, self.H, *x.shape[2:]).movedim(0, 2)

    def to_slots(self, x: Tensor, zero_pad: bool = False) -> Tensor:
        """(B, H, L, D) -> (n_slots, G, D) query slots; padding slots hold zeros if asked."""
        plan = self.plan
        x = self._token_major(x)
        if plan.slots is None:
            if plan.n_slots == plan.L and x.stride(-1) == 1:
                return x  # a view in the caller's layout
            return torch.nn.functional.pad(x, (0, 0, 0, 0, 0, plan.n_slots - plan.L))
        flat = self.qidx.reshape(-1)
        xs = x.index_select(0, flat.clamp(min=0))
        if zero_pad:
            # Padding slots borrowed token 0's values; their output gradient must be zero.
            xs = xs * (flat >= 0).to(xs.dtype)[:, None, None]
        return xs

    def to_key_slots(self, x: Tensor) -> Tensor:
        """(B, H, L, D) -> (Lk, G, D) gathered key slots (plans other than bands: see
        :meth:`band_keys`)."""
        return self._token_major(x).index_select(0, self.kidx.clamp(min=0))

    def from_slots(self, xs: Tensor) -> Tensor:
        """(n_slots, G, ...) -> (B, H, L, ...); tokens without a slot get zeros."""
        if self.q_slot_of is None:
            x = xs[: self.plan.L]
        else:
            x = xs.index_select(0, self.q_slot_of.clamp(min=0))
            if self.q_missing:
                keep = (self.q_slot_of >= 0).view(-1, *([1] * (xs.dim() - 1)))
                x = torch.where(keep, x, torch.zeros((), dtype=x.dtype, device=x.device))
        return self._from_token_major(x)

    def from_key_slots(self, xs: Tensor) -> Tensor:
        """(Lk, G, D) key-slot gradients -> (B, H, L, D), summing duplicates."""
        plan = self.plan
        if plan.contiguous_keys:
            front = plan.key_pad(plan.n_slots)[0]
            return self._from_token_major(xs[front : front + plan.L])
        if self.k_slot_of is not None:
            n = self.n_key_base
            front, back = plan.key_pad(n)
            core = xs[front : front + n]
            if plan.wrap and front + back:
                # padded slot s holds key slot (s - front) mod n: fold the wrapped copies back
                pad = torch.cat([torch.arange(front), torch.arange(front + n, front + n + back)]).to(xs.device)
                core = core.index_add(0, (pad - front).remainder(n), xs.index_select(0, pad))
            return self._from_token_major(core.index_select(0, self.k_slot_of))
        valid = self.kidx >= 0
        out = xs.new_zeros(plan.L, *xs.shape[1:])
        out.index_add_(0, self.kidx[valid], xs[valid])
        return self._from_token_major(out)

    def tile_views(self, qs: Tensor, kp: Tensor, vp: Tensor, n0: int, n1: int) -> tuple[Tensor, Tensor, Tensor]:
        """(n, G, bq|span, D) tiles: overlapping strided views, or gathered key blocks."""
        plan, G = self.plan, self.G
        D = qs.shape[-1]
        n, bq = n1 - n0, plan.block
        st, sg = qs.stride(0), qs.stride(1)  # slot and batch*head strides of this layout
        qv = qs.as_strided((n, G, bq, D), (bq * st, sg, st, 1), qs.storage_offset() + n0 * bq * st)
        if plan.key_blocks is not None:
            kb = plan.key_blocks[n0:n1].to(kp.device)
            kb = torch.where(kb >= 0, kb, kp.shape[0] // bq - 1)

            def gather(x: Tensor) -> Tensor:
                blocks = x.view(-1, bq, G, D)[kb]  # n, K, bq, G, D
                return blocks.reshape(n, plan.span, G, D).transpose(1, 2)

            return qv, gather(kp), gather(vp)
        def span_view(x: Tensor) -> Tensor:
            st, sg = x.stride(0), x.stride(1)
            return x.as_strided((n, G, plan.span, D), (plan.key_step * st, sg, st, 1),
                                x.storage_offset() + n0 * plan.key_step * st)

        return qv, span_view(kp), span_view(vp)

    def gathered_rows(self, x: Tensor, n0: int, n1: int, zero_pad: bool = False) -> Tensor:
        """(n, G, bq, ...) query-slot rows of blocks [n0, n1), gathered from x (B, H, L, ...).

        The per-chunk form of :meth:`to_slots` + :meth:`block_rows`."""
        idx = self.qidx[n0:n1].reshape(-1)
        xs = self._token_major(x).index_select(0, idx.clamp(min=0))
        if zero_pad:
            xs = xs * (idx >= 0).to(xs.dtype).view(-1, *([1] * (xs.dim() - 1)))
        return xs.view(n1 - n0, self.plan.block, *xs.shape[1:]).transpose(1, 2)

    def gathered_keys(self, x: Tensor, n0: int, n1: int) -> Tensor:
        """(n, G, span, D) key tiles of blocks [n0, n1), gathered from x (B, H, L, D).

        The per-chunk form of :meth:`to_key_slots` + :meth:`tile_views`: only the key slots
        these tiles read are copied."""
        plan = self.plan
        first = n0 * plan.key_step
        last = first + (n1 - n0 - 1) * plan.key_step + plan.span
        ks = self._token_major(x).index_select(0, self.kidx[first:last].clamp(min=0))
        st, sg = ks.stride(0), ks.stride(1)
        return ks.as_strided((n1 - n0, self.G, plan.span, ks.shape[-1]), (plan.key_step * st, sg, st, 1),
                             ks.storage_offset())

    # Band plans (keys in token order, queries unpermuted) read their tiles straight from
    # the caller's tensors: only a chunk that reaches past either end of the sequence gets
    # a zero-padded copy of its own rows. Padding whole copies of k and v (and of q, out
    # and dout where the length is not a multiple of the block) cost up to five tensors
    # the size of q at the peak of backward.
    @staticmethod
    def _padded_rows(x: Tensor, first: int, last: int) -> Tensor:
        """Rows [first, last) of x (L, G, ...) extended by zero rows on both sides: a view of
        x where the range lies inside it, else a zero-padded copy of only these rows."""
        L = x.shape[0]
        if 0 <= first and last <= L:
            return x[first:last]
        lo, hi = max(first, 0), min(last, L)
        if hi <= lo:
            return x.new_zeros(last - first, *x.shape[1:])
        return F.pad(x[lo:hi], (0, 0) * (x.dim() - 1) + (lo - first, last - hi))

    def band_source(self, x: Tensor) -> Tensor:
        """(B, H, L, ...) -> (L, G, ...) token-major rows for :meth:`band_rows`: a view where
        the layout allows (B = 1, or head-major), made once per call, never per chunk."""
        xt = self._token_major(x)
        return xt if xt.stride(-1) == 1 or xt.dim() == 2 else xt.contiguous()

    def band_key_source(self, x: Tensor) -> tuple[Tensor, int]:
        """(rows, key slot of row 0) for :meth:`band_keys`: the token-major rows of x
        (B, H, L, D), whose token 0 sits at key slot ``front``; when every block reads the
        same keys (``key_step`` 0, dense tiles), the padded key slots are built once here
        rather than once per chunk."""
        plan = self.plan
        xt = self.band_source(x)
        front = plan.key_pad(plan.n_slots)[0]
        if plan.key_step == 0 and (front > 0 or plan.span - front > plan.L):
            return self._padded_rows(xt, -front, plan.span - front), 0
        return xt, front

    def band_rows(self, xt: Tensor, n0: int, n1: int) -> Tensor:
        """(n, G, bq, ...) query rows of blocks [n0, n1) of xt (L, G, ...) (band plans)."""
        bq = self.plan.block
        rows = self._padded_rows(xt, n0 * bq, n1 * bq)
        return rows.view(n1 - n0, bq, *rows.shape[1:]).transpose(1, 2)

    def band_keys(self, source: tuple[Tensor, int], n0: int, n1: int) -> Tensor:
        """(n, G, span, D) key tiles of blocks [n0, n1) from :meth:`band_key_source`'s
        ``(rows, key slot of row 0)`` (band plans): overlapping strided views into the rows,
        or into a padded copy of the chunk's key rows."""
        plan = self.plan
        xt, origin = source
        first = n0 * plan.key_step
        last = first + (n1 - n0 - 1) * plan.key_step + plan.span
        ks = self._padded_rows(xt, first - origin, last - origin)
        st, sg = ks.stride(0), ks.stride(1)
        return ks.as_strided((n1 - n0, self.G, plan.span, ks.shape[-1]), (plan.key_step * st, sg, st, 1),
                             ks.storage_offset())

    def slot_buffer(self, like: Tensor) -> Tensor:
        """An empty (n_slots, G, D) query-slot buffer; when the slots are exactly the tokens,
        the token-major view of a tensor in ``like``'s (B, H, L, D) layout, so the output
        and dq come back in the caller's layout (autograd copies a leaf's gradient whose
        strides differ from the leaf's)."""
        if self.plan.slots is None and self.plan.n_slots == self.plan.L:
            full = torch.empty_like(like)
            try:  # a view unless the layout interleaves batch and tokens (token-major, B > 1)
                return full.movedim(2, 0).view(self.plan.L, self.G, like.shape[-1])
            except RuntimeError:
                pass
        return like.new_empty(self.plan.n_slots, self.G, like.shape[-1])

    def key_slot_count(self) -> int:
        """Padded key slots of a band plan (the rows of its key-gradient buffers)."""
        front, back = self.plan.key_pad(self.plan.n_slots)
        return front + self.plan.n_slots + back

    def block_rows(self, xs: Tensor, n0: int, n1: int) -> Tensor:
        """(n, G, bq, ...) view of query-slot rows of blocks [n0, n1) of xs (n_slots, G, ...)."""
        bq = self.plan.block
        return xs.view(self.plan.n_blocks, bq, *xs.shape[1:])[n0:n1].transpose(1, 2)

    def overlap_add(self, acc: Tensor, d: Tensor, n0: int, n1: int, origin: int = 0) -> None:
        """Add per-tile key gradients (n, G, span, D) into padded key slots (Lk, G, D), or
        into the rows from key slot ``origin`` on (band tiles only: see :meth:`_rolling_ok`)."""
        plan = self.plan
        n, G, span, D = d.shape
        bq, step = plan.block, plan.key_step
        d = d.to(acc.dtype).transpose(1, 2)  # n, span, G, D
        if plan.key_blocks is not None:
            blocks = acc.view(-1, bq, G, D)
            per_tile = d.contiguous().view(n, span // bq, bq, G, D)  # contiguous rows add fast
            # Row-block adds over runs of consecutive key blocks: index_add_ over these
            # wide rows measured ~10x slower on CPU (it expands the index to every element).
            for tile, slot, target, length in self._key_block_runs(n0, n1, blocks.shape[0] - 1):
                blocks[target : target + length].add_(per_tile[tile, slot : slot + length])
        elif step == 0:
            acc[:span].add_(d.sum(0))
        elif step != bq:
            for t in range(n):
                start = (n0 + t) * step
                acc[start : start + span].add_(d[t])
        else:
            for s in range(span // bq):
                start = (n0 + s) * bq - origin
                acc[start : start + n * bq].view(n, bq, G, D).add_(d[:, s * bq : (s + 1) * bq])

    def _key_block_runs(self, n0: int, n1: int, trash: int) -> list[tuple[int, int, int, int]]:
        """(tile, first slot, first key block, length) runs of consecutive gathered key
        blocks of tiles [n0, n1); -1 entries (no block) go to the ``trash`` block."""
        runs: list[list[int]] = []
        for tile, row in enumerate(self.plan.key_blocks[n0:n1].tolist()):
            for slot, block in enumerate(row):
                block = block if block >= 0 else trash
                last = runs[-1] if runs else None
                if last is not None and last[0] == tile and last[2] + last[3] == block and last[1] + last[3] == slot:
                    last[3] += 1
                else:
                    runs.append([tile, slot, block, 1])
        return [tuple(r) for r in runs]

    # Masks -------------------------------------------------------------------------
    def bias_tile(self, qi: Tensor, kj: Tensor) -> Tensor:
        """(..., H, bq, span) bias for index tensors qi (..., bq), kj (..., span)."""
        return self.bias.tile(qi, kj, self.pattern)

    def tile_mask(self, n0: int, n1: int, need_rows: bool = True) -> tuple[Tensor, Tensor | None]:
        """Additive mask broadcastable to (n, G, bq, span) and row occupancy (n|1, G|1, bq).

        Backward passes ``need_rows=False``: only forward needs the occupancy (to mark empty
        rows' log-sum-exp), and on irregular tiles it costs a pass over the mask."""
        plan = self.plan
        if bool(self.regular[n0]):
            rows = self.template_rows[None, None]
            if self.bias is None:
                return self.template, rows
            if self._template_biased is None:
                ref = self.ref
                b = self.bias_tile(self.qidx[ref], plan.block_keys(self.kidx, ref, ref + 1)[0])
                self._template_biased = self.template + self._expand_heads(b[None, None].detach())
            return self._template_biased, rows
        allowed = self._allowed(n0, n1)  # (n, B|1, bq, span)
        mask = _float_mask(allowed)[:, :, None]  # (n, B|1, 1, bq, span)
        rows = allowed.any(-1)[:, :, None] if need_rows else None  # (n, B|1, 1, bq)
        if self.bias is not None:
            qi, kj = self.qidx[n0:n1], plan.block_keys(self.kidx, n0, n1)
            mask = mask + self.bias_tile(qi, kj)[:, None]  # (n, B|1, H, bq, span)
        return self._merge_bh(mask), self._merge_bh(rows) if rows is not None else None

    def _allowed(self, n0: int, n1: int) -> Tensor:
        """(n, B|1, bq, span) bool: the rule, key padding and key_mask on irregular tiles.

        With a mask cache, forward stores each chunk's mask and backward takes it back."""
        cache = self.mask_cache
        if cache is not None and n0 in cache:
            return cache.pop(n0)
        plan = self.plan
        qi = self.qidx[n0:n1]  # (n, bq)
        kj = plan.block_keys(self.kidx, n0, n1)  # (n, span)
        allowed = plan.rule(qi[:, :, None], kj[:, None, :]) & (kj >= 0)[:, None, :]
        allowed = allowed[:, None]  # (n, 1, bq, span)
        if self.key_mask is not None:
            km = self.key_mask[:, kj.clamp(min=0)]  # (B, n, span)
            allowed = allowed & km.permute(1, 0, 2)[:, :, None, :]  # (n, B, bq, span)
        if cache is not None and self.filling:
            cache[n0] = allowed
        return allowed

    def _expand_heads(self, b: Tensor) -> Tensor:
        """(1, 1, H, ...) -> (1, G, ...)."""
        return b.expand(1, self.B, *b.shape[2:]).reshape(1, self.G, *b.shape[3:])

    def _merge_bh(self, x: Tensor) -> Tensor:
        """(n, B|1, H|1, ...) -> (n, G|1, ...), expanding only when needed."""
        n, b, h = x.shape[:3]
        if b == 1 and h == 1:
            return x.squeeze(2)
        return x.expand(n, self.B, self.H, *x.shape[3:]).reshape(n, self.G, *x.shape[3:])

    # Forward / backward of this part -------------------------------------------------
    def forward(self, q: Tensor, k: Tensor, v: Tensor, scale: float, backend: str, dropout_p: float,
                seed: int) -> tuple[Tensor, Tensor]:
        band = self.plan.contiguous_keys
        if band:
            out_s = self.slot_buffer(q)
            qt, kt, vt = self.band_source(q), self.band_key_source(k), self.band_key_source(v)
        elif self.gather_chunks:
            out_s = q.new_empty(self.plan.n_slots, self.G, v.shape[-1])
        else:
            qs, kp, vp = self.to_slots(q), self.to_key_slots(k), self.to_key_slots(v)
            out_s = torch.empty_like(qs)
        lse_s = torch.empty(out_s.shape[:2], dtype=tiles.acc_dtype(q.dtype), device=q.device)
        for n0, n1 in self.chunks():
            if self.gather_chunks:
                qv, kv, vv = self.gathered_rows(q, n0, n1), self.gathered_keys(k, n0, n1), self.gathered_keys(v, n0, n1)
            elif band:
                qv, kv, vv = self.band_rows(qt, n0, n1), self.band_keys(kt, n0, n1), self.band_keys(vt, n0, n1)
            else:
                qv, kv, vv = self.tile_views(qs, kp, vp, n0, n1)
            mask, rows = self.tile_mask(n0, n1)
            if backend == "fused" and fused_bf16.supports(qv, kv, vv):
                o, lse = fused_bf16.forward(qv, kv, vv, mask, scale)  # lse -inf on empty rows
            elif backend in ("flash", "fused"):
                o, lse = tiles.flash_forward(qv, kv, vv, mask, scale)
                lse = lse.masked_fill(~rows.expand_as(lse), NEG_INF)  # flash reports 0 for empty rows
            else:
                o, lse = tiles.math_forward(qv, kv, vv, mask, scale, dropout_p, seed + n0)
            self.block_rows(out_s, n0, n1).copy_(o)
            self.block_rows(lse_s, n0, n1).copy_(lse)
        self.filling = False  # the cache now holds every chunk; backward takes them back
        lse = self.from_slots(lse_s)
        if self.q_missing:  # tokens this part does not cover contribute nothing
            lse = torch.where((self.q_slot_of >= 0).view(1, 1, -1), lse, torch.full_like(lse, NEG_INF))
        return self.from_slots(out_s), lse

    def backward(self, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse_b: Tensor, dout: Tensor, scale: float,
                 backend: str, dropout_p: float, seed: int, bias_params: Sequence[Tensor],
                 bias_grads: list[Tensor], final: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """(dq, dk, dv) ``(B, H, L, D)`` of this part. ``final``: no other part is added to
        them, so band tiles may round the key gradients to k's dtype as each row completes
        (they are summed in fp32 first either way)."""
        dqs, dkp, dvp = self._backward_slots(q, k, v, out, lse_b, dout, scale, backend, dropout_p, seed,
                                             bias_params, bias_grads, final)
        # The slot copies of q, k, v, out and dout died with _backward_slots: only the
        # gradients' slot buffers exist while they are put back in token order.
        return self.from_slots(dqs), self.from_key_slots(dkp), self.from_key_slots(dvp)

    def _backward_slots(self, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse_b: Tensor, dout: Tensor,
                        scale: float, backend: str, dropout_p: float, seed: int, bias_params: Sequence[Tensor],
                        bias_grads: list[Tensor], final: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """Gradients in slot layout: dq (n_slots, G, D), dk and dv (Lk, G, D) padded key slots."""
        acc = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype
        rolling = self._rolling_ok()
        carry_k = carry_v = None
        band = self.plan.contiguous_keys
        if self.gather_chunks:
            dqs = q.new_empty(self.plan.n_slots, self.G, q.shape[-1])
            dkp = torch.zeros(self.kidx.numel(), self.G, k.shape[-1], dtype=acc, device=q.device)
            dvp = torch.zeros(self.kidx.numel(), self.G, v.shape[-1], dtype=acc, device=q.device)
        elif band:
            dqs = self.slot_buffer(q)
            qt, dot, ot = (self.band_source(x) for x in (q, dout, out))
            kt, vt = self.band_key_source(k), self.band_key_source(v)
            lt = self.band_source(lse_b)
            shape_k = (self.key_slot_count(), self.G, k.shape[-1])
            shape_v = (self.key_slot_count(), self.G, v.shape[-1])
            if rolling:  # written once per row, never zeroed whole; in k's dtype when nothing is added later
                dkp = torch.empty(shape_k, dtype=k.dtype if final else acc, device=q.device)
                dvp = torch.empty(shape_v, dtype=v.dtype if final else acc, device=q.device)
            else:
                dkp = torch.zeros(shape_k, dtype=acc, device=q.device)
                dvp = torch.zeros(shape_v, dtype=acc, device=q.device)
        else:
            qs, kp, vp = self.to_slots(q), self.to_key_slots(k), self.to_key_slots(v)
            dos, os_ = self.to_slots(dout, zero_pad=True), self.to_slots(out)
            lses = self.to_slots(lse_b.unsqueeze(-1)).squeeze(-1)
            dqs = torch.empty_like(qs)
            dkp = torch.zeros(kp.shape, dtype=acc, device=q.device)
            dvp = torch.zeros(vp.shape, dtype=acc, device=q.device)
        for n0, n1 in self.chunks():
            if self.gather_chunks:
                qv, kv, vv = self.gathered_rows(q, n0, n1), self.gathered_keys(k, n0, n1), self.gathered_keys(v, n0, n1)
                dov, ov = self.gathered_rows(dout, n0, n1, zero_pad=True), self.gathered_rows(out, n0, n1)
                lv = self.gathered_rows(lse_b.unsqueeze(-1), n0, n1).squeeze(-1)
            elif band:
                qv, kv, vv = self.band_rows(qt, n0, n1), self.band_keys(kt, n0, n1), self.band_keys(vt, n0, n1)
                dov, ov, lv = self.band_rows(dot, n0, n1), self.band_rows(ot, n0, n1), self.band_rows(lt, n0, n1)
            else:
                qv, kv, vv = self.tile_views(qs, kp, vp, n0, n1)
                dov, ov = self.block_rows(dos, n0, n1), self.block_rows(os_, n0, n1)
                lv = self.block_rows(lses, n0, n1)
            mask, _ = self.tile_mask(n0, n1, need_rows=False)
            if backend == "fused" and fused_bf16.supports(qv, kv, vv, dov, ov):
                dq, dk, dv, dmask = fused_bf16.backward(dov, qv, kv, vv, ov, lv, mask, scale)
            elif backend in ("flash", "fused"):
                dq, dk, dv, dmask = self._flash_backward(dov, qv, kv, vv, ov, lv, mask, scale, acc)
            else:
                dq, dk, dv, dmask = tiles.math_backward(dov, qv, kv, vv, ov, lv, mask, scale, dropout_p, seed + n0)
            self.block_rows(dqs, n0, n1).copy_(dq)
            if rolling:
                carry_k = self._roll(dkp, dk, carry_k, n0, n1, acc)
                carry_v = self._roll(dvp, dv, carry_v, n0, n1, acc)
            else:
                self.overlap_add(dkp, dk, n0, n1)
                self.overlap_add(dvp, dv, n0, n1)
            if bias_grads and dmask is not None:
                self._bias_backward(n0, n1, dmask, bias_params, bias_grads)
        if rolling:
            for dst, carry in ((dkp, carry_k), (dvp, carry_v)):
                end = self.plan.n_blocks * self.plan.block
                dst[end : end + carry.shape[0]].copy_(carry)
                dst[end + carry.shape[0]:].zero_()  # key slots no tile reads (none for band plans)
        return dqs, dkp, dvp

    def _rolling_ok(self) -> bool:
        """Whether key gradients can roll: band tiles in slot order whose key spans start one
        block apart, so the key rows before a chunk's first block are complete once the
        chunks before it are done, and only the overlap with the next chunk stays in fp32."""
        plan = self.plan
        return (plan.key_blocks is None and plan.key_step == plan.block and plan.contiguous_keys
                and not self.gather_chunks)

    def _roll(self, dst: Tensor, d: Tensor, carry: Tensor | None, n0: int, n1: int, acc: torch.dtype) -> Tensor:
        """Sum the tile key gradients ``d`` (n, G, span, D) of blocks [n0, n1) in a fp32
        buffer of just the rows they touch, with ``carry`` (the rows the chunk before left
        open) added at its start; write the rows this chunk completes to ``dst`` (Lk, G, D)
        once, and return the rest as the next chunk's carry."""
        bq, span = self.plan.block, d.shape[2]
        first = n0 * bq
        buf = torch.zeros((n1 - 1 - n0) * bq + span, *d.shape[1:2], d.shape[3], dtype=acc, device=d.device)
        if carry is not None:
            buf[: carry.shape[0]].add_(carry)
        self.overlap_add(buf, d, n0, n1, origin=first)
        done = (n1 - n0) * bq
        dst[first : first + done].copy_(buf[:done])
        return buf[done:]

    @staticmethod
    def _flash_backward(dov: Tensor, qv: Tensor, kv: Tensor, vv: Tensor, ov: Tensor, lv: Tensor,
                        mask: Tensor | None, scale: float, acc: torch.dtype) -> tuple[Tensor, Tensor, Tensor, None]:
        if acc != qv.dtype:
            # PyTorch's CPU flash backward in bf16 measured slower than in fp32 on both
            # machines here (AVX512-BF16 EPYC and AMX Xeon; docs/results.md: bf16
            # window fwd+bwd at 65,536 went from 1.44 to 1.18-1.29 s with this): the tiles
            # are converted once per chunk and differentiated in fp32, which also
            # accumulates the gradients in fp32.
            qv, kv, vv, dov, ov = (tiles.upcast_tile(t, acc) for t in (qv, kv, vv, dov, ov))
        return tiles.flash_backward(dov, qv, kv, vv, ov, lv, mask, scale)

    def _bias_backward(self, n0: int, n1: int, dmask: Tensor, params, grads: list[Tensor]) -> None:
        """Route the score gradient of tiles [n0, n1) into the bias parameters."""
        plan = self.plan
        n = n1 - n0
        ds = dmask.reshape(n, self.B, self.H, plan.block, plan.span).sum(1)  # (n, H, bq, span)
        with torch.enable_grad():
            if bool(self.regular[n0]):
                ref = self.ref
                tile = self.bias_tile(self.qidx[ref], plan.block_keys(self.kidx, ref, ref + 1)[0])  # (H, bq, span)
                ds = ds.sum(0)
            else:
                # Padding entries carry -inf in the mask and so zero score gradient.
                tile = self.bias_tile(self.qidx[n0:n1], plan.block_keys(self.kidx, n0, n1))  # (n, H, bq, span)
        gr = torch.autograd.grad(tile, params, ds.to(tile.dtype), allow_unused=True)
        for acc_g, g in zip(grads, gr):
            if g is not None:
                acc_g += g


def _parts_forward(parts: Sequence[_Part], q: Tensor, k: Tensor, v: Tensor, scale: float, backend: str,
                   dropout_p: float, seed: int) -> tuple[Tensor, Tensor]:
    """Every part's attention merged by log-sum-exp: (out, lse)."""
    out = lse = None
    for i, part in enumerate(parts):
        o, lse_p = part.forward(q, k, v, scale, backend, dropout_p, seed + i * (1 << 40))
        out, lse = (o, lse_p) if out is None else merge_partial(out, lse, o, lse_p)
    return out, lse


def _parts_backward(parts: Sequence[_Part], q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor,
                    dout: Tensor, scale: float, backend: str, dropout_p: float, seed: int,
                    bias_params: Sequence[Tensor], bias_grads: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """(dq, dk, dv) of :func:`_parts_forward`: each part against the merged out and lse."""
    lse_b = torch.where(torch.isfinite(lse), lse, torch.zeros_like(lse))
    dq = dk = dv = None
    for i, part in enumerate(parts):
        g = part.backward(q, k, v, out, lse_b, dout, scale, backend, dropout_p, seed + i * (1 << 40),
                          bias_params, bias_grads, final=len(parts) == 1)
        if dq is None:
            dq, dk, dv = g
        else:  # in place: each part's gradients are fresh buffers of this call
            dq, dk, dv = dq.add_(g[0]), dk.add_(g[1]), dv.add_(g[2])
        del g
    return dq, dk, dv


def _new_seed(dropout_p: float) -> int:
    return int(torch.randint(0, 2**62, (1,)).item()) if dropout_p > 0 else 0


class _BlockedAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, parts: list[_Part], scale: float, dropout_p: float, backend: tuple[str, str],
                *bias_params):
        seed = _new_seed(dropout_p)
        out, lse = _parts_forward(parts, q, k, v, scale, backend[0], dropout_p, seed)
        ctx.save_for_backward(q, k, v, out, lse, *bias_params)
        ctx.parts, ctx.scale, ctx.dropout_p, ctx.backend, ctx.seed = parts, scale, dropout_p, backend, seed
        ctx.n_bias = len(bias_params)
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v, out, lse, *bias_params = ctx.saved_tensors
        dout = dout.contiguous()
        bias_grads = [torch.zeros_like(t) for t in bias_params] if ctx.n_bias else []
        dq, dk, dv = _parts_backward(ctx.parts, q, k, v, out, lse, dout, ctx.scale, ctx.backend[1],
                                     ctx.dropout_p, ctx.seed, bias_params, bias_grads)
        return (dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), None, None, None, None, *bias_grads)


class _PerHeadBlockedAttention(torch.autograd.Function):
    """One tiling per (batch, head), for data-dependent layouts such as LSH.

    Each head's output and gradients are written straight into whole (B, H, L, D) tensors,
    so no per-head copies are concatenated, and only one head's slot copies exist at a
    time. With ``normalize_keys`` the keys are ``F.normalize(q)`` (Reformer's shared QK),
    formed per head in forward and again in backward, where their gradient is folded into
    dq: no whole normalised copy of q and no separate key gradient ever exists.

    Half-precision inputs with ``normalize_keys`` are computed per head in float32: keys
    normalised and then rounded to bf16 move each score by up to about ``2**-9`` of the
    logit (0.2 at a logit of 100), which put bf16 outputs about 12 bf16 ulps off at logits
    near 100 and over 30 at 1000. One head's float32 copies cost little next to its tiles.
    """

    @staticmethod
    def _head_dtype(q: Tensor, normalize_keys: bool) -> torch.dtype:
        """The dtype one head is computed in (see the class docstring)."""
        if normalize_keys and q.dtype in (torch.float16, torch.bfloat16):
            return torch.float32
        return q.dtype

    @staticmethod
    def forward(ctx, q, k, v, parts: list[list[list[_Part]]], scale: float, dropout_p: float,
                backend: tuple[str, str], normalize_keys: bool):
        seed = _new_seed(dropout_p)
        B, H = q.shape[:2]
        work = _PerHeadBlockedAttention._head_dtype(q, normalize_keys)
        out = torch.empty_like(q)
        lses = []
        for b in range(B):
            for h in range(H):
                sl = (slice(b, b + 1), slice(h, h + 1))
                qh, vh = q[sl].to(work), v[sl].to(work)
                kh = F.normalize(qh, dim=-1) if normalize_keys else k[sl]
                o, lse = _parts_forward(parts[b][h], qh, kh, vh, scale, backend[0], dropout_p,
                                        seed + (b * H + h) * (1 << 48))
                out[sl].copy_(o)
                lses.append(lse)
                del o, kh, qh, vh
        lse = torch.cat(lses, dim=1).view(B, H, -1)
        ctx.save_for_backward(q, v, out, lse, *(() if normalize_keys else (k,)))
        ctx.parts, ctx.scale, ctx.dropout_p, ctx.backend, ctx.seed = parts, scale, dropout_p, backend, seed
        ctx.normalize_keys = normalize_keys
        return out

    @staticmethod
    def backward(ctx, dout):
        q, v, out, lse, *rest = ctx.saved_tensors
        dout = dout.contiguous()
        B, H = q.shape[:2]
        work = _PerHeadBlockedAttention._head_dtype(q, ctx.normalize_keys)
        dq, dv = torch.empty_like(q), torch.empty_like(v)
        dk = None if ctx.normalize_keys else torch.empty_like(rest[0])
        for b in range(B):
            for h in range(H):
                sl = (slice(b, b + 1), slice(h, h + 1))
                qh = q[sl].to(work)
                if ctx.normalize_keys:
                    with torch.enable_grad():
                        qh = qh.detach().requires_grad_()
                        kh = F.normalize(qh, dim=-1)
                else:
                    kh = rest[0][sl]
                g_q, g_k, g_v = _parts_backward(ctx.parts[b][h], qh.detach(), kh.detach(), v[sl].to(work),
                                                out[sl].to(work), lse[sl], dout[sl].to(work), ctx.scale,
                                                ctx.backend[1], ctx.dropout_p, ctx.seed + (b * H + h) * (1 << 48),
                                                (), [])
                if ctx.normalize_keys:
                    (g_norm,) = torch.autograd.grad(kh, qh, g_k.to(kh.dtype))
                    g_q = g_q.add_(g_norm) if g_q.dtype == g_norm.dtype else g_q + g_norm
                    del g_norm, kh, qh
                else:
                    dk[sl].copy_(g_k)
                dq[sl].copy_(g_q)
                dv[sl].copy_(g_v)
                del g_q, g_k, g_v
        return dq, dk, dv, None, None, None, None, None


def blocked_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    tiling: Tiling,
    *,
    pattern,
    key_mask: Tensor | None = None,
    bias: TileBias | None = None,
    scale: float,
    dropout_p: float = 0.0,
) -> Tensor:
    """Attention of q (B, H, L, D) over k, v (B, H, L, D) as tiled by ``tiling``.

    ``key_mask`` (B, L) bool, True = may be attended; ``bias`` any
    :class:`~longseq.kernels.bias.TileBias`, evaluated per tile.
    """
    B, H, L, D = q.shape
    params = _grad_params(bias)
    bias_grad = bool(params) and torch.is_grad_enabled()
    backend = _pick_backend(q, dropout_p, bias_grad)
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v, *params))
    budget = min(_MASK_CACHE_BYTES, q.numel() * q.element_size() // 2) if needs_grad else 0
    parts = [_Part(plan, B, H, q.device, key_mask, bias, pattern, budget) for plan in tiling.parts]
    out = _BlockedAttention.apply(q, k, v, parts, scale, dropout_p, backend, *params)
    if tiling.global_rows is not None:
        out = _global_rows(q, k, v, out, tiling, parts[0], scale, dropout_p)
    return out


def blocked_attention_per_head(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    tilings: Sequence[Sequence[Tiling]],
    *,
    pattern,
    key_mask: Tensor | None = None,
    scale: float,
    dropout_p: float = 0.0,
    normalize_keys: bool = False,
) -> Tensor:
    """Attention of q (B, H, L, D) over k, v (B, H, L, D) with ``tilings[b][h]`` per head.

    For layouts that depend on the data of each (batch, head), such as LSH. No positional
    bias and no global rows. Output and gradients equal :func:`blocked_attention` run per
    head, without splitting the inputs or concatenating the results. With
    ``normalize_keys=True`` the keys are ``F.normalize(q, dim=-1)`` (``k`` is ignored and
    may be None), computed per head so that no normalised copy of q is stored.
    """
    B, H, L, D = q.shape
    if len(tilings) != B or any(len(row) != H for row in tilings):
        raise ValueError(f"need one tiling per (batch, head): {B} x {H}")
    if any(t.global_rows is not None for row in tilings for t in row):
        raise ValueError("blocked_attention_per_head does not support global rows")
    backend = _pick_backend(q, dropout_p, False)
    if normalize_keys:
        k = None
    elif k is None:
        raise ValueError("k is required unless normalize_keys=True")
    needs_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (q, k, v))
    budget = min(_MASK_CACHE_BYTES, q.numel() * q.element_size() // (2 * B * H)) if needs_grad else 0
    parts = [[[_Part(plan, 1, 1, q.device, None if key_mask is None else key_mask[b : b + 1], None, pattern, budget)
               for plan in tilings[b][h].parts] for h in range(H)] for b in range(B)]
    return _PerHeadBlockedAttention.apply(q, k, v, parts, scale, dropout_p, backend, normalize_keys)


def _global_rows(q: Tensor, k: Tensor, v: Tensor, out: Tensor, tiling: Tiling, part: _Part, scale: float,
                 dropout_p: float) -> Tensor:
    """Queries that attend every key: dense over (G x L), written over the tile result."""
    g = tiling.global_rows
    L = q.shape[2]
    j = torch.arange(L, device=q.device)
    if tiling.row_rule is not None:
        allowed = tiling.row_rule(g[:, None], j[None, :])
    else:
        allowed = torch.ones(len(g), L, dtype=torch.bool, device=q.device)
    allowed = allowed[None, None]
    if part.key_mask is not None:
        allowed = allowed & part.key_mask[:, None, None, :]
    has_key = allowed.any(-1, keepdim=True)
    # Rows with no allowed key would give NaN: let them attend everything, then zero them.
    allowed = allowed | ~has_key
    mask = torch.zeros(allowed.shape, dtype=q.dtype, device=q.device).masked_fill_(~allowed, NEG_INF)
    if part.bias is not None:
        mask = mask + part.bias_tile(g, j)[None].to(q.dtype)
    rows = torch.nn.functional.scaled_dot_product_attention(
        q[:, :, g], k, v, attn_mask=mask, dropout_p=dropout_p, scale=scale
    )
    rows = rows * has_key.to(rows.dtype)
    return out.index_copy(2, g, rows)
