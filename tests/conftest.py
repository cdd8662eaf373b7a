"""Shared test setup: fresh random inputs each run, with the seed printed for replay."""

import os
import random

import pytest
import torch

# Keep test runs off the network and quiet.
os.environ.setdefault("YOLO_OFFLINE", "1")


@pytest.fixture(autouse=True)
def fresh_seed(request):
    """Seed torch from a new random value each run; shown on failure (captured stdout)."""
    seed = int(os.environ.get("LONGSEQ_TEST_SEED", random.SystemRandom().randrange(2**31)))
    torch.manual_seed(seed)
    print(f"[{request.node.name}] LONGSEQ_TEST_SEED={seed}")
    yield seed
