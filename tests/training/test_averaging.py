"""The EMA of the weights: its update rule and the ``averaging`` section's checks."""

import pytest
import torch

from longseq.training.averaging import Averaging, ema_callback, ema_update


def test_ema_update_warms_up_then_keeps_its_decay():
    update = ema_update(0.99)
    averaged, current = [torch.zeros(3), torch.zeros(2, dtype=torch.float64)], [torch.ones(3), torch.ones(2)]
    current[1] = current[1].double()
    expected = 0.0
    for n in range(1, 200):  # n updates already folded in (AveragedModel copies the weights on the first)
        d = min(0.99, (1 + n) / (10 + n))
        update(averaged, current, torch.tensor(n))
        expected = d * expected + (1 - d)
        assert averaged[0][0].item() == pytest.approx(expected, rel=1e-5)
        assert averaged[1][0].item() == pytest.approx(expected, rel=1e-12)
    assert (1 + 199) / (10 + 199) > 0.95  # the warm-up has reached the set decay well before the end
    ints = [torch.zeros(4, dtype=torch.long)]
    update(ints, [torch.arange(4)], torch.tensor(5))  # integer buffers (index tables) are copied, not averaged
    assert ints[0].tolist() == [0, 1, 2, 3]


def test_averaging_section_checks_its_values():
    assert ema_callback(Averaging()) is None and ema_callback(Averaging(ema_decay=0)) is None
    assert ema_callback(Averaging(ema_decay=0.999)) is not None
    for bad in (1.0, -0.1, 1.5, "0.9", True):
        with pytest.raises(ValueError, match=r"ema_decay must be in \[0, 1\)"):
            Averaging(ema_decay=bad)
