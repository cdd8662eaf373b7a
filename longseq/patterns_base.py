"""The :class:`Pattern` base class and argument checks shared by every pattern module.

Kept apart from :mod:`longseq.patterns` so that pattern families defined in their own
modules (such as :mod:`longseq.patterns_lsh`) can subclass it while
:mod:`longseq.patterns` imports them eagerly, without an import cycle.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["Pattern"]


def _check_positive_int(name: str, value: int, minimum: int = 1) -> None:
    if isinstance(value, torch.SymInt):  # symbolic sizes while exporting
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


class Pattern:
    """Base class. Subclasses are frozen dataclasses and implement :meth:`allowed`.

    How a pattern is computed is not its concern: the kernels turn it into a tiling
    (:func:`longseq.kernels.plan.tiling_for`) or run an implementation registered for
    its type (:func:`longseq.kernels.registry.register_attention`). A pattern defined
    outside longseq may still provide its own ``tiling(L, device)`` or
    ``attend(q, k, v, *, key_mask, bias, dropout_p, scale)`` method; those take precedence.
    """

    causal: bool = False
    #: Whether :func:`longseq.attend` may be called with ``Hkv != H`` for this pattern.
    supports_gqa: bool = True

    def allowed(self, i: Tensor, j: Tensor) -> Tensor:
        """Boolean rule on broadcastable integer tensors of query and key indices."""
        raise NotImplementedError

    def dense_mask(self, L: int, device: torch.device | str | None = None) -> Tensor:
        """``(L, L)`` bool mask, True = may attend. For tests and small inputs only."""
        _check_positive_int("L", L)
        idx = torch.arange(L, device=device)
        return self.allowed(idx[:, None], idx[None, :])

    def check_length(self, L: int) -> None:
        """Raise ``ValueError`` when the pattern cannot serve a sequence of length ``L``."""
