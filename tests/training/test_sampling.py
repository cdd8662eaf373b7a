"""A data order that depends on (seed, epoch) only and resumes mid-epoch, with per-item seeds."""

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from longseq.training.sampling import ResumableSampler, SeededDataset, items_done, steps_before_epoch


class Noisy(Dataset):
    """Items drawn from torch's global random stream, as augmentation is."""

    def __len__(self):
        return 10

    def __getitem__(self, index):
        return torch.tensor([float(index)]) + torch.rand(1)


def test_order_is_a_function_of_seed_and_epoch():
    a, b = ResumableSampler(10, seed=3), ResumableSampler(10, seed=3)
    torch.manual_seed(0)
    first = list(a)
    torch.manual_seed(1)  # the global stream plays no part
    assert list(b) == first and sorted(i for i, _ in first) == list(range(10))
    b.set_epoch(1)
    assert list(b) != first and list(ResumableSampler(10, seed=4)) != first


def test_draws_with_replacement_and_in_order():
    draws = list(ResumableSampler(5, 12, replacement=True, seed=0))
    assert len(draws) == 12 and all(0 <= i < 5 for i, _ in draws)
    assert [i for i, _ in ResumableSampler(3, 7, shuffle=False)] == [0, 1, 2, 0, 1, 2, 0]
    assert len(ResumableSampler(10, 25)) == 25
    with pytest.raises(ValueError):
        ResumableSampler(0)


def test_position_resumes_mid_epoch_and_keeps_the_length():
    whole = list(ResumableSampler(10, seed=1, epoch=2))
    state = {"epoch": 2, "done": 4}
    resumed = ResumableSampler(10, seed=1, position=lambda: (state["epoch"], state["done"]))
    assert list(resumed) == whole[4:] and len(resumed) == 10 and resumed.skipped == 4
    state.update(epoch=3, done=0)  # the next epoch starts from its first item
    assert list(resumed) == list(ResumableSampler(10, seed=1, epoch=3))


def test_seeded_items_do_not_depend_on_or_disturb_the_global_stream():
    ds = SeededDataset(Noisy())
    torch.manual_seed(0)
    before = torch.get_rng_state()
    x = ds[(3, 42)]
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(123)
    assert torch.equal(ds[(3, 42)], x) and not torch.equal(ds[(3, 43)], x)
    assert len(ds) == 10 and ds[2].shape == (1,)  # a plain index reads the item as before


def test_loader_batches_resume_with_workers():
    def batches(position, workers):
        sampler = ResumableSampler(10, 10, seed=5, position=position)
        loader = DataLoader(SeededDataset(Noisy()), batch_size=2, sampler=sampler, num_workers=workers,
                            generator=torch.Generator().manual_seed(0))
        return [b for b in loader]

    whole = batches(lambda: (0, 0), 0)
    resumed = batches(lambda: (0, 6), 2)  # 3 batches trained before the kill; workers draw the same items
    assert len(resumed) == 2 and all(torch.equal(a, b) for a, b in zip(whole[3:], resumed))


class Trainer:
    def __init__(self, epoch, step, accumulate=1):
        self.current_epoch, self.global_step, self.accumulate_grad_batches = epoch, step, accumulate


def test_items_done_from_epoch_and_step():
    assert steps_before_epoch(3, 5) == 15 and steps_before_epoch(2, [4, 6, 8]) == 10
    assert steps_before_epoch(5, [4, 6]) == 4 + 6 + 6 * 3  # the last size repeats
    assert items_done(Trainer(1, 7), [4, 6], batch_size=2) == 6  # 3 of epoch 1's steps done
    assert items_done(Trainer(1, 4), [4, 6], batch_size=2) == 0  # the epoch's start
    assert items_done(Trainer(0, 3, accumulate=2), 10, batch_size=4) == 24
    assert items_done(None, 5, 2) == 0
