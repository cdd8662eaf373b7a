"""Tile helpers of the blocked kernel."""

import pytest
import torch

from longseq.kernels.tiles import upcast_tile


def _span_views(x: torch.Tensor, n: int, step: int, rows: int) -> torch.Tensor:
    """(n, G, rows, D) overlapping tiles over the slot axis of x (L, G, D), as the kernel builds them."""
    st, sg = x.stride(0), x.stride(1)
    return x.as_strided((n, x.shape[1], rows, x.shape[2]), (step * st, sg, st, 1), x.storage_offset())


@pytest.mark.parametrize("layout", ["token-major", "head-major"])
@pytest.mark.parametrize("n, step, rows", [(6, 4, 12), (5, 3, 3), (4, 8, 8), (3, 0, 5), (1, 4, 12)])
def test_upcast_tile_equals_plain_conversion(layout, n, step, rows):
    G, D = 3, 5
    L = (n - 1) * step + rows + 2
    if layout == "token-major":
        x = torch.randn(L, G, D, dtype=torch.bfloat16)
    else:  # (G, L, D) memory viewed as (L, G, D), as head-major (B, H, L, D) inputs are
        x = torch.randn(G, L, D, dtype=torch.bfloat16).transpose(0, 1)
    tiles = _span_views(x[1:], n, step, rows)  # a nonzero storage offset too
    up = upcast_tile(tiles)
    assert up.dtype == torch.float32 and up.shape == tiles.shape
    assert torch.equal(up, tiles.float())
    # Shared rows are stored once: the copy is no larger than the rows the tiles cover.
    covered = (n - 1) * step + rows if step else rows
    assert up.untyped_storage().nbytes() <= G * covered * D * 4


def test_upcast_tile_other_strides_fall_back():
    x = torch.randn(4, 3, 6, 5, dtype=torch.bfloat16).transpose(2, 3)  # last dim not contiguous
    assert torch.equal(upcast_tile(x), x.float())
    y = torch.randn(2, 3, 4, 5)
    assert upcast_tile(y) is y  # already the asked dtype: no copy
