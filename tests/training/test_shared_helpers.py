"""The domain-neutral helpers: throughput callback, peak memory, checksum-verified package files."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from longseq.hardware import peak_memory_gb, peak_rss_bytes
from longseq.package_data import PackagedFile, package_file
from longseq.training.callbacks import Throughput


class _Module:
    device = torch.device("cpu")

    def __init__(self):
        self.logged = {}

    def log(self, name, value, **kwargs):
        self.logged[name] = value


def test_throughput_counts_items_after_skipped_batches():
    cb, module = Throughput(skip=1, prog_bar="img_s", length=lambda b: b[0].shape[-1]), _Module()
    for n, width in [(4, 8), (3, 16), (5, 4)]:
        batch = (torch.zeros(n, width), torch.zeros(n))
        cb.on_train_batch_start(None, module, batch, 0)
        cb.on_train_batch_end(None, module, None, batch, 0)
    assert cb.items == 8 and cb.seconds > 0 and cb.per_second == cb.items / cb.seconds
    assert cb.max_length == 16 and module.logged["img_s"] > 0


def test_throughput_custom_count_and_dict_batches():
    cb = Throughput(count=lambda b: int(b["mask"].sum()))
    batch = {"input_ids": torch.zeros(2, 10), "mask": torch.tensor([[1] * 10, [1] * 4 + [0] * 6]).bool()}
    cb.on_train_batch_start(None, _Module(), batch, 0)
    cb.on_train_batch_end(None, _Module(), None, batch, 0)
    assert cb.items == 14
    assert Throughput().per_second != Throughput().per_second  # NaN before any batch


def test_peak_memory_grows_with_a_large_allocation():
    before = peak_rss_bytes()
    x = torch.ones(64 * 2**20 // 4 * 4)  # 256 MiB, touched
    assert peak_rss_bytes() >= before and peak_rss_bytes() > x.numel()
    assert set(peak_memory_gb("cpu")) == {"peak_rss_gb"} and peak_memory_gb()["peak_rss_gb"] > 0.25


def test_package_file_verifies_checksum(tmp_path):
    import hashlib

    import longseq

    relative = "kernels/csrc/bf16_tiles.c"
    digest = hashlib.sha256((Path(longseq.__file__).parent / relative).read_bytes()).hexdigest()
    good = PackagedFile("longseq", relative, "longseq==0.1.0", digest, "core")
    assert package_file(good).name == "bf16_tiles.c" and good.path() == package_file(good)
    bad = PackagedFile("longseq", relative, "longseq==0.1.0", "0" * 64, "core")
    with pytest.raises(ValueError, match=r"bf16_tiles.c: SHA-256 differs from the file in longseq==0.1.0"):
        package_file(bad)
    with pytest.raises(FileNotFoundError, match=r"pip install 'nopkg==1'"):
        package_file(PackagedFile("nopkg_not_installed", "x", "nopkg==1", digest, "genomics"))


def test_import_longseq_pulls_in_no_training_stack():
    code = ("import sys, longseq, longseq.patterns, longseq.layers; "
            "print(sorted(m for m in ('lightning', 'yaml', 'timm', 'matplotlib', 'torchmetrics') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
