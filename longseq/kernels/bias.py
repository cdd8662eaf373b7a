"""What the kernels need of a positional bias: the :class:`TileBias` interface.

The kernels never import a bias class. Any object with these members can be passed to
:func:`longseq.attend` as ``bias=`` (the modules of :mod:`longseq.positions` are such
objects); the blocked kernel evaluates it per tile and never at ``L x L``.
"""

from __future__ import annotations

from typing import Iterator, Protocol, runtime_checkable

from torch import Tensor

__all__ = ["TileBias", "grid_offset_window"]


@runtime_checkable
class TileBias(Protocol):
    """An additive score bias evaluated on tiles of index pairs.

    ``grid_offset_window`` (optional attribute, ``int | None``): when set to ``ws``, the
    bias of a pair depends only on the 2-D grid offset between query and key as long as
    both lie in one ``ws x ws`` window, so a single ``(H, ws^2, ws^2)`` table serves every
    window (what :mod:`longseq.kernels.window2d` relies on). Absent or None otherwise.

    ``heads`` (optional attribute, ``int``): the ``H`` of the tiles. Where present,
    :func:`longseq.attend` checks it against the query heads before any kernel runs.
    """

    def tile(self, i: Tensor, j: Tensor, pattern: object) -> Tensor:
        """Bias ``(..., H, nq, nk)`` for query indices ``i (..., nq)`` and key indices
        ``j (..., nk)`` (original token positions; ``-1`` = padding, masked by the kernel,
        so the value there only has to be finite). ``pattern`` gives the geometry, e.g. a
        2-D grid's ``coords``."""
        ...

    def parameters(self) -> Iterator[Tensor]:
        """Tensors the bias is differentiated for (those with ``requires_grad``)."""
        ...


def grid_offset_window(bias: object) -> int | None:
    """The bias's ``grid_offset_window`` (see :class:`TileBias`), None when it has none."""
    return getattr(bias, "grid_offset_window", None)
