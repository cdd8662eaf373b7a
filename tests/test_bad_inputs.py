"""Bad inputs across the project, one table: each case feeds one unusable input (a tensor, a
pattern, a genome, annotation or table file, an image folder, detection labels, a YAML config,
a checkpoint, a command-line flag) and expects a clean failure whose message names the
argument or file at fault.

Outcomes:

* an exception type: ``fn(tmp)`` raises it, and its message holds ``names(tmp)``;
* ``CLI``: ``fn(tmp)`` runs a command's ``main``, which exits with status 2 and prints one
  ``<prog>: error: ...`` line on stderr holding ``names(tmp)``;
* ``REPORT``: ``fn(tmp)`` returns a detection :class:`~vision.detection.yolo_format.LabelReport`
  that records a problem for the file ``names(tmp)`` (the readers skip bad rows and files
  and go on; the report says which).
"""

from __future__ import annotations

import gzip
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import lightning  # noqa: F401 (its log handler binds the stderr of the moment it is imported: not a test's)
import numpy as np
import pytest
import torch
from PIL import Image

CLI = "exit status 2"
REPORT = "label report"


@dataclass(frozen=True)
class Case:
    id: str
    fn: Callable[[Path], Any]
    expect: type[BaseException] | str
    names: Callable[[Path], str]
    xfail: str = ""


def _named(text: str) -> Callable[[Path], str]:
    """``names`` for a case: ``text`` with ``{tmp}`` standing for the case's folder."""
    return lambda tmp: text.format(tmp=tmp)


def _write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def _png(path: Path, colour: tuple[int, int, int] = (200, 40, 40), size: int = 24) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), colour, dtype=np.uint8)).save(path)
    return path


# ---------------------------------------------------------------------------------- tensors and patterns
B, H, L, D = 1, 2, 16, 8


def _attend(**overrides) -> Callable[[Path], Any]:
    def call(tmp: Path) -> Any:
        from longseq import attend
        from longseq.patterns import SlidingWindow

        args = dict(q=torch.randn(B, H, L, D), k=torch.randn(B, H, L, D), v=torch.randn(B, H, L, D),
                    pattern=SlidingWindow(2))
        args.update(overrides)
        return attend(args.pop("q"), args.pop("k"), args.pop("v"), args.pop("pattern"), **args)
    return call


def _pattern(build: Callable[[Any], Any]) -> Callable[[Path], Any]:
    def call(tmp: Path) -> Any:
        import longseq.patterns as patterns

        return build(patterns)
    return call


def _alibi(heads: int) -> Any:
    from longseq.positions import ALiBi

    return ALiBi(heads)


TENSORS = [
    Case("tensor-q-not-a-tensor", _attend(q=[[1.0]]), TypeError, _named("q must be a torch.Tensor")),
    Case("tensor-q-rank-3", _attend(q=torch.randn(H, L, D)), ValueError, _named("q must have shape")),
    Case("tensor-q-int-dtype", _attend(q=torch.ones(B, H, L, D, dtype=torch.int64)), ValueError,
         _named("q must be a floating-point")),
    Case("tensor-k-dtype-differs", _attend(k=torch.randn(B, H, L, D, dtype=torch.float16)), ValueError,
         _named("k has dtype")),
    Case("tensor-v-shape-differs", _attend(v=torch.randn(B, H, L, D + 1)), ValueError,
         _named("k and v must have the same shape")),
    Case("tensor-scale-zero", _attend(scale=0.0), ValueError, _named("scale must be a finite number > 0")),
    Case("tensor-scale-nan", _attend(scale=math.nan), ValueError, _named("scale must be a finite number > 0")),
    Case("tensor-dropout-one", _attend(dropout_p=1.0), ValueError, _named("dropout_p must be in [0, 1)")),
    Case("tensor-key-mask-float", _attend(key_mask=torch.ones(B, L)), ValueError,
         _named("key_mask must be a bool tensor")),
    Case("tensor-key-mask-short", _attend(key_mask=torch.ones(B, L - 1, dtype=torch.bool)), ValueError,
         _named("key_mask must have shape")),
    Case("tensor-bias-heads", lambda tmp: _attend(bias=_alibi(8))(tmp), ValueError, _named("bias has 8 heads")),
    Case("tensor-pattern-a-string", _attend(pattern="window"), TypeError,
         _named("pattern must be a longseq.patterns.Pattern")),
]

PATTERNS = [
    Case("pattern-window-zero", _pattern(lambda p: p.SlidingWindow(0)), ValueError, _named("SlidingWindow.window")),
    Case("pattern-window-string", _pattern(lambda p: p.SlidingWindow("x")), TypeError,
         _named("SlidingWindow.window")),
    Case("pattern-grid-one-axis", _pattern(lambda p: p.Window2D(4, (4,))), ValueError, _named("Window2D.grid")),
    Case("pattern-shift-too-big", _pattern(lambda p: p.Window2D(4, (4, 4), shift=4)), ValueError,
         _named("Window2D.shift")),
    Case("pattern-block-zero", _pattern(lambda p: p.BigBird(0)), ValueError, _named("BigBird.block")),
    Case("pattern-stride-zero", _pattern(lambda p: p.Strided(0)), ValueError, _named("Strided.stride")),
    Case("pattern-mode-unknown", _pattern(lambda p: p.Strided(4, mode="diagonal")), ValueError,
         _named("Strided.mode")),
    Case("pattern-bucket-zero", _pattern(lambda p: p.LSH(bucket_size=0)), ValueError, _named("LSH.bucket_size")),
]


# ---------------------------------------------------------------------------------- genome, annotation and table files
def _records(name: str, data: bytes | str | None) -> Callable[[Path], Any]:
    def call(tmp: Path) -> Any:
        from genomics.io.readers import iter_records

        path = tmp / name if data is None else _write(tmp / name, data)
        return list(iter_records(path))
    return call


def _truncated_gzip() -> bytes:
    return gzip.compress(b">chr\n" + b"ACGT" * 500)[:40]


def _gff(text: str | None) -> Callable[[Path], Any]:
    def call(tmp: Path) -> Any:
        from genomics.io.annotation import labels_from_gff

        path = tmp / "genes.gff" if text is None else _write(tmp / "genes.gff", text)
        return labels_from_gff(path, {"chr1": 100})
    return call


def _table(data: bytes | str) -> Callable[[Path], Any]:
    def call(tmp: Path) -> Any:
        from genomics.data.tokenizers import NucleotideTokenizer
        from genomics.io.labelled import read_table

        return read_table(_write(tmp / "seqs.csv", data), NucleotideTokenizer())
    return call


def _bed(text: str) -> Callable[[Path], Any]:
    def call(tmp: Path) -> Any:
        from genomics.io.bed import read_bed

        return read_bed(_write(tmp / "peaks.bed", text))
    return call


def _genomics_ok():
    from genomics.io.readers import DataInputError, GenomeFormatError

    return DataInputError, GenomeFormatError


DataInputError, GenomeFormatError = _genomics_ok()

FILES = [
    Case("fasta-missing", _records("nope.fa", None), FileNotFoundError, _named("{tmp}/nope.fa")),
    Case("fasta-empty", _records("empty.fa", ""), GenomeFormatError, _named("{tmp}/empty.fa")),
    Case("fasta-text-before-header", _records("notes.fa", "hello\n>chr\nACGT\n"), GenomeFormatError,
         _named("{tmp}/notes.fa")),
    Case("fasta-binary", _records("blob.fa", b">chr\n\x00\xff\xfe\x80ACGT\n"), GenomeFormatError,
         _named("{tmp}/blob.fa")),
    Case("fasta-truncated-gzip", _records("cut.fa.gz", _truncated_gzip()), GenomeFormatError,
         _named("{tmp}/cut.fa.gz")),
    Case("fasta-unknown-suffix", _records("genome.xyz", "hello\n"), GenomeFormatError,
         _named("{tmp}/genome.xyz")),
    Case("genbank-garbage", _records("genome.gb", "this is not a GenBank record\n"), GenomeFormatError,
         _named("{tmp}/genome.gb")),
    Case("gff-missing", _gff(None), DataInputError, _named("--gff {tmp}/genes.gff")),
    Case("gff-three-columns", _gff("chr1\tsrc\tgene\n"), DataInputError, _named("{tmp}/genes.gff:1")),
    Case("gff-start-not-integer", _gff("chr1\tsrc\tgene\tten\t20\t.\t+\t.\tID=g\n"), DataInputError,
         _named("{tmp}/genes.gff:1")),
    Case("gff-no-matching-id", _gff("chrX\tsrc\tgene\t1\t20\t.\t+\t.\tID=g\n"), DataInputError,
         _named("--gff {tmp}/genes.gff")),
    Case("csv-empty", _table(""), DataInputError, _named("{tmp}/seqs.csv")),
    Case("csv-no-sequence-column", _table("name,label\na,1\n"), DataInputError, _named("{tmp}/seqs.csv")),
    Case("csv-short-row", _table("sequence,label\nACGTACGT\n"), DataInputError, _named("{tmp}/seqs.csv:2")),
    Case("csv-empty-label", _table("sequence,label\nACGTACGT,\n"), DataInputError, _named("{tmp}/seqs.csv:2")),
    Case("csv-bad-split-value", _table("sequence,label,split\nACGTACGT,a,later\n"), DataInputError,
         _named("{tmp}/seqs.csv:2")),
    Case("csv-not-utf8", _table(b"sequence,label\n\xff\xfe\xfa,1\n"), DataInputError, _named("{tmp}/seqs.csv")),
    Case("bed-two-columns", _bed("chr1\t10\n"), ValueError, _named("{tmp}/peaks.bed:1")),
    Case("bed-start-not-integer", _bed("chr1\tten\t20\n"), ValueError, _named("{tmp}/peaks.bed:1")),
]


# ---------------------------------------------------------------------------------- command lines
def _train_vit(*argv: str, data: Callable[[Path], Path] | None = None) -> Callable[[Path], Any]:
    def call(tmp: Path) -> Any:
        from vision.cli import train_vit

        extra = ["--data", str(data(tmp))] if data is not None else []
        return train_vit.main([*extra, *(a.format(tmp=tmp) for a in argv), "--out-dir", str(tmp / "out")])
    return call


def _train_dna(*argv: str, fasta: bool = True) -> Callable[[Path], Any]:
    def call(tmp: Path) -> Any:
        from genomics.cli import train_dna

        extra = ["--fasta", str(_write(tmp / "genome.fa", ">chr\n" + "ACGT" * 50 + "\n"))] if fasta else []
        return train_dna.main([*extra, *(a.format(tmp=tmp) for a in argv), "--out-dir", str(tmp / "out")])
    return call


def _folder(tmp: Path) -> Path:
    """A valid two-class image folder."""
    for name, colour in (("cat", (200, 40, 40)), ("dog", (40, 40, 200))):
        for i in range(2):
            _png(tmp / "photos" / name / f"{i}.png", colour)
    return tmp / "photos"


def _missing_folder(tmp: Path) -> Path:
    return tmp / "nowhere"


def _empty_folder(tmp: Path) -> Path:
    (tmp / "empty").mkdir()
    return tmp / "empty"


def _a_file(tmp: Path) -> Path:
    return _write(tmp / "photo.png", b"not a folder")


def _flat_folder(tmp: Path) -> Path:
    _png(tmp / "flat" / "a.png")
    return tmp / "flat"


def _class_without_images(tmp: Path) -> Path:
    _folder(tmp)
    _write(tmp / "photos" / "bird" / "readme.txt", "no images")
    return tmp / "photos"


def _one_class(tmp: Path) -> Path:
    _png(tmp / "photos" / "cat" / "0.png")
    return tmp / "photos"


def _splits_without_train(tmp: Path) -> Path:
    for split in ("valid", "test"):
        _png(tmp / "photos" / split / "cat" / "0.png")
    return tmp / "photos"


def _val_class_not_in_train(tmp: Path) -> Path:
    for split, names in (("train", ("cat", "dog")), ("valid", ("cat", "bird"))):
        for name in names:
            _png(tmp / "photos" / split / name / "0.png")
    return tmp / "photos"


def _corrupt_class(tmp: Path) -> Path:
    _folder(tmp)
    _write(tmp / "photos" / "bird" / "0.jpg", b"\xff\xd8\xff\xe0 truncated download")
    return tmp / "photos"


def _yaml(text: str) -> Callable[[Path], Path]:
    return lambda tmp: _write(tmp / "run.yaml", text)


def _vit_config(text: str) -> Callable[[Path], Any]:
    def call(tmp: Path) -> Any:
        from vision.cli import train_vit

        return train_vit.main(["--config", str(_yaml(text)(tmp)), "--out-dir", str(tmp / "out")])
    return call


def _dna_config(text: str) -> Callable[[Path], Any]:
    def call(tmp: Path) -> Any:
        return _train_dna("--config", str(_yaml(text)(tmp)))(tmp)
    return call


def _load_config(text: str | None) -> Callable[[Path], Any]:
    def call(tmp: Path) -> Any:
        from longseq.training.config import Section, load_config

        path = tmp / "run.yaml" if text is None else _yaml(text)(tmp)
        return load_config(path, [Section("model", ("dim", "depth")), Section("trainer")])
    return call


IMAGES = [
    Case("images-data-missing", _train_vit(data=_missing_folder), CLI, _named("--data: {tmp}/nowhere")),
    Case("images-data-empty", _train_vit(data=_empty_folder), CLI, _named("--data: {tmp}/empty")),
    Case("images-data-a-file", _train_vit(data=_a_file), CLI, _named("--data: {tmp}/photo.png")),
    Case("images-no-class-folders", _train_vit(data=_flat_folder), CLI, _named("--data: {tmp}/flat")),
    Case("images-class-without-images", _train_vit(data=_class_without_images), CLI,
         _named("--data: {tmp}/photos/bird")),
    Case("images-one-class", _train_vit(data=_one_class), CLI, _named("--data: {tmp}/photos: one class folder (cat)")),
    Case("images-splits-without-train", _train_vit(data=_splits_without_train), CLI,
         _named("--data: {tmp}/photos: split folders (test, valid) but no train/")),
    Case("images-val-class-not-in-train", _train_vit(data=_val_class_not_in_train), CLI,
         _named("--data: {tmp}/photos/valid: class folders ['bird'] are not under {tmp}/photos/train")),
    Case("images-class-of-corrupt-files", _train_vit(data=_corrupt_class), CLI, _named("--data: {tmp}/photos/bird")),
    Case("images-reader-not-a-folder", lambda tmp: __import__("vision.data.image_folder", fromlist=["x"])
         .scan_image_folder(tmp / "none"), ValueError, _named("{tmp}/none")),
]

FLAGS = [
    Case("flag-vit-img-size-zero", _train_vit("--img-size", "0"), CLI, _named("--img-size")),
    Case("flag-vit-batch-size-zero", _train_vit("--batch-size", "0"), CLI, _named("--batch-size")),
    Case("flag-vit-epochs-zero", _train_vit("--epochs", "0"), CLI, _named("--epochs")),
    Case("flag-vit-max-steps-minus-two", _train_vit("--max-steps", "-2"), CLI, _named("--max-steps")),
    Case("flag-vit-num-workers-negative", _train_vit("--num-workers", "-1"), CLI, _named("--num-workers")),
    Case("flag-vit-ckpt-every-steps-zero", _train_vit("--ckpt-every-steps", "0"), CLI, _named("--ckpt-every-steps")),
    Case("flag-vit-max-minutes-negative", _train_vit("--max-minutes", "-1"), CLI, _named("--max-minutes")),
    Case("flag-dna-seq-len-zero", _train_dna("--seq-len", "0"), CLI, _named("--seq-len")),
    Case("flag-dna-batch-size-zero", _train_dna("--batch-size", "0"), CLI, _named("--batch-size")),
    Case("flag-dna-max-steps-zero", _train_dna("--max-steps", "0"), CLI, _named("--max-steps")),
    Case("flag-dna-ckpt-every-minutes-zero", _train_dna("--ckpt-every-minutes", "0"), CLI,
         _named("--ckpt-every-minutes")),
    Case("flag-dna-fasta-missing", _train_dna("--fasta", "{tmp}/nope.fa", fasta=False), CLI, _named("{tmp}/nope.fa")),
]

CONFIGS = [
    Case("yaml-vit-invalid", _vit_config("model:\n  name: [unclosed\n"), CLI, _named("{tmp}/run.yaml")),
    Case("yaml-vit-unknown-key", _vit_config("trainer:\n  max_epoch: 3\n"), CLI,
         _named("{tmp}/run.yaml:2: trainer.max_epoch")),
    Case("yaml-vit-unknown-section", _vit_config("trainers:\n  max_epochs: 3\n"), CLI,
         _named("{tmp}/run.yaml:1: unknown section 'trainers'")),
    Case("yaml-vit-section-not-a-mapping", _vit_config("data: 5\n"), CLI, _named("{tmp}/run.yaml:1: section 'data'")),
    Case("yaml-vit-unknown-model", _vit_config("model:\n  name: no_such_vit\n"), CLI,
         _named("{tmp}/run.yaml:2: model.name")),
    Case("yaml-dna-invalid", _dna_config("model: {dim: [\n"), CLI, _named("{tmp}/run.yaml")),
    Case("yaml-dna-unknown-key", _dna_config("model:\n  dimm: 16\n"), CLI, _named("{tmp}/run.yaml:2: model.dimm")),
    Case("set-dna-head-chunks-not-dividing-heads", _train_dna("--set", "model.head_chunks=3", "--seq-len", "128"),
         CLI, _named("model: head_chunks (3) must divide")),
    Case("set-vit-window-size-zero", _train_vit("--set", "model.window_size=0", data=_folder), CLI,
         _named("model: longseq_vit_small: window_size must be >= 1, got 0")),
    Case("yaml-missing-file", _load_config(None), Exception, _named("{tmp}/run.yaml: config file not found")),
    Case("yaml-top-level-list", _load_config("- model\n- data\n"), Exception, _named("{tmp}/run.yaml:1")),
    Case("yaml-key-in-wrong-section", _load_config("trainer: {}\nmodel:\n  max_epochs: 3\n"), Exception,
         _named("{tmp}/run.yaml:3: model.max_epochs")),
]


# ---------------------------------------------------------------------------------- checkpoints
def _text_ckpt(tmp: Path) -> Path:
    return _write(tmp / "notes.ckpt", "not a checkpoint\n")


def _foreign_ckpt(tmp: Path) -> Path:
    path = tmp / "other.ckpt"
    torch.save({"state_dict": {"backbone.blocks.0.attn.qkv.weight": torch.zeros(3, 3)}, "hyper_parameters": {}}, path)
    return path


def _vit_ckpt(flag: str, make: Callable[[Path], Path]) -> Callable[[Path], Any]:
    def call(tmp: Path) -> Any:
        return _train_vit(flag, str(make(tmp)), data=_folder)(tmp)
    return call


def _dna_ckpt(flag: str) -> Callable[[Path], Any]:
    def call(tmp: Path) -> Any:
        return _train_dna(flag, str(_text_ckpt(tmp)))(tmp)
    return call


def _read_dna_checkpoint(tmp: Path) -> Any:
    from genomics.models.loading import read_checkpoint

    return read_checkpoint(_text_ckpt(tmp))


CHECKPOINTS = [
    Case("ckpt-vit-resume-from-text", _vit_ckpt("--ckpt-path", _text_ckpt), CLI, _named("{tmp}/notes.ckpt")),
    Case("ckpt-vit-init-from-text", _vit_ckpt("--init-from", _text_ckpt), CLI, _named("{tmp}/notes.ckpt")),
    Case("ckpt-vit-init-from-other-architecture", _vit_ckpt("--init-from", _foreign_ckpt), CLI,
         _named("--init-from: {tmp}/other.ckpt")),
    Case("ckpt-vit-resume-other-architecture", _vit_ckpt("--ckpt-path", _foreign_ckpt), CLI,
         _named("--ckpt-path: {tmp}/other.ckpt")),
    Case("ckpt-vit-pretrained-missing", _vit_ckpt("--pretrained", lambda tmp: tmp / "vit.pth"), CLI,
         _named("--pretrained: {tmp}/vit.pth")),
    Case("ckpt-vit-resume-last-without-run", _train_vit("--ckpt-path", "last", data=_folder), CLI,
         _named("--ckpt-path last")),
    Case("ckpt-dna-init-from-text", _dna_ckpt("--init-from"), CLI, _named("{tmp}/notes.ckpt")),
    Case("ckpt-dna-resume-from-text", _dna_ckpt("--ckpt-path"), CLI, _named("{tmp}/notes.ckpt")),
    Case("ckpt-dna-reader-text", _read_dna_checkpoint, ValueError, _named("{tmp}/notes.ckpt")),
]


# ---------------------------------------------------------------------------------- detection labels
def _yolo(label: str | None, *, image: bool = True) -> Callable[[Path], Any]:
    def call(tmp: Path) -> Any:
        from vision.detection.yolo_format import scan_split

        _png(tmp / "det" / "images" / "train" / ("a.png" if image else "b.png"))
        if label is not None:
            _write(tmp / "det" / "labels" / "train" / "a.txt", label)
        return scan_split(tmp / "det", "train", num_classes=2)[1]
    return call


def _data_yaml(text: str) -> Callable[[Path], Any]:
    def call(tmp: Path) -> Any:
        from vision.detection.yolo_format import load_data_yaml

        return load_data_yaml(_write(tmp / "data.yaml", text))
    return call


def _no_split(tmp: Path) -> Any:
    from vision.detection.yolo_format import scan_split

    return scan_split(tmp / "det", "train")


_VOC = """<annotation><filename>{image}</filename><object><name>{name}</name><bndbox>
<xmin>{x0}</xmin><ymin>2</ymin><xmax>{x1}</xmax><ymax>10</ymax></bndbox></object></annotation>"""


def _voc(xml: str, *, image: bool = True, classes: tuple[str, ...] = ("car",)) -> Callable[[Path], Any]:
    def call(tmp: Path) -> Any:
        from vision.detection.voc import voc_to_yolo

        if image:
            _png(tmp / "voc" / "a.png")
        path = _write(tmp / "voc" / "a.xml", xml)
        return voc_to_yolo([path], tmp / "out", list(classes))
    return call


DETECTION = [
    Case("yolo-four-columns", _yolo("0 0.5 0.5 0.2\n"), REPORT, _named("{tmp}/det/labels/train/a.txt")),
    Case("yolo-not-numbers", _yolo("0 a b c d\n"), REPORT, _named("{tmp}/det/labels/train/a.txt")),
    Case("yolo-class-out-of-range", _yolo("7 0.5 0.5 0.2 0.2\n"), REPORT, _named("{tmp}/det/labels/train/a.txt")),
    Case("yolo-box-outside", _yolo("0 0.95 0.5 0.5 0.2\n"), REPORT, _named("{tmp}/det/labels/train/a.txt")),
    Case("yolo-label-without-image", _yolo("0 0.5 0.5 0.2 0.2\n", image=False), REPORT,
         _named("{tmp}/det/labels/train/a.txt")),
    Case("yolo-no-image-folder", _no_split, ValueError, _named("{tmp}/det/images/train")),
    Case("yolo-data-yaml-no-names", _data_yaml("path: .\ntrain: images/train\n"), ValueError,
         _named("{tmp}/data.yaml")),
    Case("voc-unparsable-xml", _voc("<annotation><filename>a.png"), REPORT, _named("{tmp}/voc/a.xml")),
    Case("voc-missing-image", _voc(_VOC.format(image="gone.png", name="car", x0=2, x1=10), image=False), REPORT,
         _named("{tmp}/voc/a.xml")),
    Case("voc-unknown-class", _voc(_VOC.format(image="a.png", name="tank", x0=2, x1=10)), REPORT,
         _named("{tmp}/voc/a.xml")),
    Case("voc-box-not-numbers", _voc(_VOC.format(image="a.png", name="car", x0="left", x1=10)), REPORT,
         _named("{tmp}/voc/a.xml")),
    Case("voc-box-outside", _voc(_VOC.format(image="a.png", name="car", x0=2, x1=400)), REPORT,
         _named("{tmp}/voc/a.xml")),
    Case("voc-no-class-names", _voc(_VOC.format(image="a.png", name="car", x0=2, x1=10), classes=()), ValueError,
         _named("class_names")),
]

CASES = [*TENSORS, *PATTERNS, *FILES, *IMAGES, *FLAGS, *CONFIGS, *CHECKPOINTS, *DETECTION]


def _marks(case: Case) -> list:
    return [pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else []


def test_table_is_large_and_unique():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 60


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=_marks(c)) for c in CASES])
def test_bad_input_fails_cleanly(case: Case, tmp_path: Path, capsys, monkeypatch):
    monkeypatch.setenv("LONGSEQ_CACHE_DIR", str(tmp_path / "cache"))
    named = case.names(tmp_path)
    if case.expect == CLI:
        with pytest.raises(SystemExit) as info:
            case.fn(tmp_path)
        err = capsys.readouterr().err
        lines = [line for line in err.strip().splitlines() if ": error: " in line]
        assert info.value.code == 2, err[-2000:]
        assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
        assert named in lines[0], lines[0]
        assert not (tmp_path / "out").exists(), "wrote to --out-dir before refusing the input"
    elif case.expect == REPORT:
        report = case.fn(tmp_path)
        assert report.count >= 1, "no problem reported"
        assert named in report.problems, report.problems
    else:
        with pytest.raises(case.expect) as info:  # type: ignore[arg-type]
            case.fn(tmp_path)
        assert named in str(info.value), str(info.value)
