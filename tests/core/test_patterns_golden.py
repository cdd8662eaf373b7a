"""Golden masks written out literally from the formulas, so the reference cannot share
a bug with the implementation (1 = may attend)."""

import pytest
import torch

from longseq.patterns import Dense, SlidingWindow, Window2D


def parse(rows: str) -> torch.Tensor:
    lines = [line.strip() for line in rows.strip().splitlines()]
    return torch.tensor([[c == "1" for c in line] for line in lines])


# |i - j| <= 2
WINDOW_2 = """
1110000000000000
1111000000000000
1111100000000000
0111110000000000
0011111000000000
0001111100000000
0000111110000000
0000011111000000
0000001111100000
0000000111110000
0000000011111000
0000000001111100
0000000000111110
0000000000011111
0000000000001111
0000000000000111
"""

# (i - j) % 2 == 0 and |i - j| <= 2 * 2
DILATED_2_2 = """
1010100000000000
0101010000000000
1010101000000000
0101010100000000
1010101010000000
0101010101000000
0010101010100000
0001010101010000
0000101010101000
0000010101010100
0000001010101010
0000000101010101
0000000010101010
0000000001010101
0000000000101010
0000000000010101
"""

# |i - j| <= 2, j <= i
CAUSAL_2 = """
1000000000000000
1100000000000000
1110000000000000
0111000000000000
0011100000000000
0001110000000000
0000111000000000
0000011100000000
0000001110000000
0000000111000000
0000000011100000
0000000001110000
0000000000111000
0000000000011100
0000000000001110
0000000000000111
"""

# |i - j| <= 1, globals {0, 9}: rows 0 and 9 and columns 0 and 9 all ones
GLOBAL_1 = """
1111111111111111
1110000001000000
1111000001000000
1011100001000000
1001110001000000
1000111001000000
1000011101000000
1000001111000000
1000000111000000
1111111111111111
1000000001110000
1000000001111000
1000000001011100
1000000001001110
1000000001000111
1000000001000011
"""

# Same, causal: intersect with j <= i
GLOBAL_1_CAUSAL = """
1000000000000000
1100000000000000
1110000000000000
1011000000000000
1001100000000000
1000110000000000
1000011000000000
1000001100000000
1000000110000000
1111111111000000
1000000001100000
1000000001110000
1000000001011000
1000000001001100
1000000001000110
1000000001000011
"""


@pytest.mark.parametrize(
    "pattern, golden",
    [
        (SlidingWindow(2), WINDOW_2),
        (SlidingWindow(2, dilation=2), DILATED_2_2),
        (SlidingWindow(2, causal=True), CAUSAL_2),
        (SlidingWindow(1, global_tokens=[9, 0]), GLOBAL_1),
        (SlidingWindow(1, causal=True, global_tokens=(0, 9)), GLOBAL_1_CAUSAL),
    ],
)
def test_sliding_window_golden(pattern, golden):
    assert torch.equal(pattern.dense_mask(16), parse(golden))


def test_dense_golden():
    assert bool(Dense().dense_mask(16).all())
    assert torch.equal(Dense(causal=True).dense_mask(16), torch.ones(16, 16, dtype=torch.bool).tril())


# 4x4 grid, window 2: four windows {0,1,4,5} {2,3,6,7} {8,9,12,13} {10,11,14,15}
WINDOW2D_4x4 = """
1100110000000000
1100110000000000
0011001100000000
0011001100000000
1100110000000000
1100110000000000
0011001100000000
0011001100000000
0000000011001100
0000000011001100
0000000000110011
0000000000110011
0000000011001100
0000000011001100
0000000000110011
0000000000110011
"""

# Shift 1: after rolling by -1, windows are rows {1,2}|{3,0} x cols {1,2}|{3,0}:
# {5,6,9,10}; {7,11}|{4,8}; {13,14}|{1,2}; {15}|{12}|{3}|{0}. Row 0 and column 0 wrapped
# around, so inside wrapped windows only tokens contiguous before the roll attend.
WINDOW2D_4x4_SHIFT1 = """
1000000000000000
0110000000000000
0110000000000000
0001000000000000
0000100010000000
0000011001100000
0000011001100000
0000000100010000
0000100010000000
0000011001100000
0000011001100000
0000000100010000
0000000000001000
0000000000000110
0000000000000110
0000000000000001
"""

# 3x3 grid, window 2: padded to 4x4; windows {0,1,3,4} {2,5} {6,7} {8}
WINDOW2D_3x3_PADDED = """
110110000
110110000
001001000
110110000
110110000
001001000
000000110
000000110
000000001
"""


def test_window2d_golden():
    assert torch.equal(Window2D(2, (4, 4)).dense_mask(16), parse(WINDOW2D_4x4))
    assert torch.equal(Window2D(2, (4, 4), shift=1).dense_mask(16), parse(WINDOW2D_4x4_SHIFT1))
    assert torch.equal(Window2D(2, (3, 3)).dense_mask(9), parse(WINDOW2D_3x3_PADDED))


def test_window2d_shift_matches_swin_roll():
    """Independent construction: roll the grid, tile windows, label Swin's slices."""
    H = W = 8
    ws, s = 4, 2
    ids = torch.arange(H * W).view(H, W)
    rolled = torch.roll(ids, shifts=(-s, -s), dims=(0, 1))
    region = torch.zeros(H, W, dtype=torch.long)
    cnt = 0
    for hs in (slice(0, -ws), slice(-ws, -s), slice(-s, None)):
        for wsl in (slice(0, -ws), slice(-ws, -s), slice(-s, None)):
            region[hs, wsl] = cnt
            cnt += 1
    expected = torch.zeros(H * W, H * W, dtype=torch.bool)
    for wy in range(0, H, ws):
        for wx in range(0, W, ws):
            tok = rolled[wy : wy + ws, wx : wx + ws].reshape(-1)
            reg = region[wy : wy + ws, wx : wx + ws].reshape(-1)
            same = reg[:, None] == reg[None, :]
            expected[tok[:, None], tok[None, :]] = same
    assert torch.equal(Window2D(ws, (H, W), shift=s).dense_mask(H * W), expected)
