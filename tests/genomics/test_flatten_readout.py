"""``pool="flatten"``: the position-wise readout of aligned windows, and ``pool: auto``, which
picks it when every sequence has one length."""

from __future__ import annotations

import pytest
import torch

from genomics.cli import predict_dna, train_dna
from genomics.data.tokenizers import PAD, reverse_complement
from genomics.models import DNAClassifier, load_model, predict_sequences

from .dna_data import random_dna, write_fasta
from .labelled_data import QUICK, binary_labels, table_rows, write_table

SMALL = dict(dim=32, heads=2, window=8)


def test_padded_rows_match_each_row_alone_on_both_strands():
    """Rows shorter than ``positions`` in a right-padded batch give what each gives alone
    (zero features past its end), and with rc_average the same as its reverse complement."""
    torch.manual_seed(3)
    lengths = [37, 50, 23]
    rows = [torch.randint(0, 4, (n,)) for n in lengths]
    ids = torch.full((3, 50), PAD)
    mask = torch.zeros(3, 50, dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, : len(r)], mask[i, : len(r)] = r, True
    model = DNAClassifier(2, depth=2, kmer_kernel=7, pool="flatten", positions=50, rc_average=True, **SMALL).eval()
    close = dict(atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        batch = model(ids, mask)
        for i, r in enumerate(rows):
            torch.testing.assert_close(batch[i], model(r[None])[0], **close)
            torch.testing.assert_close(batch[i], model(reverse_complement(r[None]))[0], **close)
        model.rc_average = False
        assert not torch.allclose(model(ids, mask)[0], batch[0])  # one strand differs


def test_each_position_has_its_own_weights():
    """Without rotary positions, a k-mer convolution or a window, the encoder is blind to
    order: a mean scores a row and its permutation the same, the flatten readout does not."""
    torch.manual_seed(4)
    row = torch.randint(0, 4, (1, 64))
    shuffled = row[:, torch.randperm(64)]
    blind = dict(depth=1, dim=32, heads=2, window=64, rope_dim=0)
    mean = DNAClassifier(2, **blind).eval()
    flat = DNAClassifier(2, pool="flatten", positions=64, **blind).eval()
    with torch.no_grad():
        torch.testing.assert_close(mean(row), mean(shuffled), atol=1e-5, rtol=1e-5)
        assert (flat(row) - flat(shuffled)).abs().max() > 1e-3
        # the per-position readout is a real dependence: zeroing one position's weights changes the logits
        before = flat(row)
        flat.position_mix[0].weight.data[:, :16] = 0  # position 0's features
        assert not torch.allclose(before, flat(row))


def test_flatten_refuses_longer_rows_and_bad_settings():
    model = DNAClassifier(2, depth=1, pool="flatten", positions=20, **SMALL)
    with pytest.raises(ValueError, match=r"up to 20 bases \(model.positions\), got 21"):
        model(torch.randint(0, 4, (1, 21)))
    with pytest.raises(ValueError, match="pool='flatten' needs positions >= 1"):
        DNAClassifier(2, pool="flatten")
    with pytest.raises(ValueError, match="needs downsample=1"):
        DNAClassifier(2, pool="flatten", positions=20, downsample=2)


def _run(tmp_path, path, *extra):
    return train_dna.run(["--task", "classification", "--data", str(path), *QUICK, *extra,
                          "--out-dir", str(tmp_path / "runs")])


def test_auto_reads_one_length_by_position_and_mixed_lengths_by_mean(tmp_path, capsys):
    same = write_table(tmp_path / "same.csv", ["sequence", "label"], table_rows(binary_labels(24)))
    s = _run(tmp_path, same)
    assert s["data"]["pool"].startswith("flatten over 32 positions (model.pool: auto")  # QUICK cuts rows to 32
    assert "readout: flatten over 32 positions" in capsys.readouterr().out
    model = load_model(s["checkpoint"]).model
    assert model.pool == "flatten" and model.positions == 32

    rows = [(seq[: 20 + i], label) for i, (seq, label) in enumerate(table_rows(binary_labels(24)))]
    mixed = write_table(tmp_path / "mixed.csv", ["sequence", "label"], rows)
    s = train_dna.run(["--task", "classification", "--data", str(mixed), "--max-steps", "2",
                       "--out-dir", str(tmp_path / "runs")])
    assert s["data"]["pool"] == "mean (model.pool: auto; lengths 20-40)"
    assert load_model(s["checkpoint"]).model.pool == "mean"

    s = _run(tmp_path, mixed, "--set", "model.pool=flatten")  # flatten without positions: the longest row
    assert load_model(s["checkpoint"]).model.positions == 32
    assert s["data"]["pool"] == "flatten over 32 positions (model.pool) (after data.max_len=32)"


def test_positions_shorter_than_the_data_is_an_error_before_training(tmp_path):
    from longseq.training.config import ConfigError

    same = write_table(tmp_path / "same.csv", ["sequence", "label"], table_rows(binary_labels(24)))
    with pytest.raises(ConfigError, match=r"model.positions=20: the data holds sequences of up to 32 bases"):
        _run(tmp_path, same, "--set", "model.pool=flatten", "--set", "model.positions=20")
    assert not (tmp_path / "runs").exists()


def test_predict_reads_windows_of_the_readout_length(tmp_path, capsys):
    s = _run(tmp_path, write_table(tmp_path / "same.csv", ["sequence", "label"], table_rows(binary_labels(24))))
    fasta = write_fasta(tmp_path / "new.fa", {"short": random_dna(20, 1), "exact": random_dna(32, 2),
                                              "long": random_dna(90, 3)})
    out = tmp_path / "p.csv"
    summary = predict_dna.run(["--ckpt", s["checkpoint"], "--data", str(fasta), "--out", str(out), "--no-progress"])
    assert summary["window"] == 32 and summary["windowed"] == 1
    assert len(out.read_text().splitlines()) == 4
    assert "warning: 2 of 3 sequences are not 32 bases long" in capsys.readouterr().err
    for window in ("64", "16"):
        with pytest.raises(SystemExit, match=rf"--window {window}: .* the 32 bases it was trained on"):
            predict_dna.run(["--ckpt", s["checkpoint"], "--data", str(fasta), "--out", str(out), "--window", window])
    model = load_model(s["checkpoint"]).model
    with pytest.raises(ValueError, match=r"window=64: a pool='flatten' classifier reads at most 32 bases"):
        list(predict_sequences(model, [torch.randint(0, 4, (40,)).numpy()], "probabilities", window=64, stride=64))
