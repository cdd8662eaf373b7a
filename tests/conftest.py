"""Shared test setup: fresh random inputs each run, with the seed printed for replay."""

import atexit
import os
import random
import shutil
import tempfile

import pytest
import torch

# Keep test runs off the network and quiet.
os.environ.setdefault("YOLO_OFFLINE", "1")
# Under pytest-xdist (`-n 2`) each worker takes its share of the cores: two workers with
# every core each would make OpenMP threads wait on one another. The commands the tests run
# (in this process or as children, which inherit it) read LONGSEQ_NUM_THREADS.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    _THREADS = str(max(1, (os.cpu_count() or 1) // _WORKERS))
    os.environ.setdefault("OMP_NUM_THREADS", _THREADS)
    os.environ.setdefault("LONGSEQ_NUM_THREADS", _THREADS)
    torch.set_num_threads(int(os.environ["LONGSEQ_NUM_THREADS"]))


@pytest.fixture(autouse=True)
def _threads_restored():
    """A test that changes torch's thread count (a benchmark's measured share) leaves the
    worker as it found it."""
    threads = torch.get_num_threads()
    yield
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
# Measured choices (tile backend, precision) go to a cache of this run, not the user's.
if "LONGSEQ_CACHE_DIR" not in os.environ:
    os.environ["LONGSEQ_CACHE_DIR"] = tempfile.mkdtemp(prefix="longseq-test-cache-")
    atexit.register(shutil.rmtree, os.environ["LONGSEQ_CACHE_DIR"], ignore_errors=True)


@pytest.fixture(autouse=True)
def fresh_seed(request):
    """Seed torch from a new random value each run; shown on failure (captured stdout)."""
    seed = int(os.environ.get("LONGSEQ_TEST_SEED", random.SystemRandom().randrange(2**31)))
    torch.manual_seed(seed)
    print(f"[{request.node.name}] LONGSEQ_TEST_SEED={seed}")
    yield seed


@pytest.fixture(autouse=True)
def default_tile_paths(request, monkeypatch):
    """``auto`` takes the tile path measured fastest on the CPU at hand
    (``longseq.kernels.tile_choice``); in this process tests get its default path instead,
    so what they assert about routes does not depend on timing. Tests marked
    ``measured_tiles`` measure."""
    if "measured_tiles" not in request.keywords:
        from longseq.kernels import tile_choice

        monkeypatch.setattr(tile_choice, "measured_backend",
                            lambda dtype, head_dim, candidates, default, measure: (default, "the default path"))
    yield
