"""``longseq-export-onnx`` (scripts/export_onnx.py): a train_vit checkpoint exports its trained
classifier (or backbone features); unknown names, non-checkpoints and sides below the
model's ``min_export_side`` are one line before anything is exported; a failed
onnxruntime check is an error that ``python -O`` keeps; the exporter's INFO logs stay
quiet unless ``--verbose``. The checkpoint command of --help and docs/vision.md runs here."""

from __future__ import annotations

import ast
import json
import logging
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from torch import nn

import vision.export
from longseq.training.errors import UserError
from vision.cli import export_onnx as cli
from vision.cli import train_vit
from vision.export import OnnxCheckError, check_onnx, export_onnx
from vision.tasks.classification import ImageClassificationTask

from .helpers import TINY_KWARGS, example_commands

REPO = Path(__file__).resolve().parents[2]
NAME = "longseq_vit_tiny"
ERROR = f"{cli.PROG}: error: "
#: What the shipped commands call the checkpoint: train_vit's default run folder.
DOC_CKPT = Path("runs/train_vit/checkpoints/last.ckpt")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``last.ckpt`` of a one-step ``train_vit`` run of a tiny ViT on 48 x 48 digits."""
    root = tmp_path_factory.mktemp("train")
    args = ["--backbone", NAME, "--img-size", "48", "--max-steps", "1", "--batch-size", "4", "--train-size", "4",
            "--val-size", "4", "--num-workers", "0", "--out-dir", str(root / "run")]
    cfg = train_vit.build_config_from_args(train_vit.parser().parse_args(args))
    cfg["model"] = {"name": NAME, **TINY_KWARGS[NAME]}
    cfg["data"]["cache_dir"] = str(root / "cache")
    cfg["trainer"]["enable_progress_bar"] = False
    return Path(train_vit.run(cfg)["last_checkpoint"])


@pytest.fixture
def no_export(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refused inputs must be refused before anything is exported or benchmarked."""
    import vision.onnx_bench

    def refuse(*args, **kwargs):
        raise AssertionError("exported before the input was checked")

    monkeypatch.setattr(vision.export, "export_onnx", refuse)
    monkeypatch.setattr(vision.onnx_bench, "bench_onnx", refuse)


def _error(argv: list[str], capsys) -> str:
    """The one stderr line of ``main(argv)``, which must exit with status 2."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if not ln.startswith(("INFO ", "[torch.onnx]"))]
    assert len(err) == 1 and err[0].startswith(ERROR), err
    return err[0].removeprefix(ERROR)


def _ort(path: Path, x: torch.Tensor) -> list[np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})


def _checkpoint_commands() -> tuple[list[list[str]], list[list[str]]]:
    """The checkpoint export commands of --help and of docs/vision.md (inline or in a block)."""
    helps = [a for a in example_commands(cli.__doc__, "export_onnx") if any(v.endswith(".ckpt") for v in a)]
    text = (REPO / "docs" / "vision.md").read_text()
    docs = [shlex.split(c)[2:] for c in re.findall(r"`?(python scripts/export_onnx\.py [^`\n]*)`?", text)]
    return helps, [a for a in docs if any(v.endswith(".ckpt") for v in a)]


# ---------------------------------------------------------------------------------------
# a train_vit checkpoint
# ---------------------------------------------------------------------------------------

def test_help_examples_are_run() -> None:
    """Each --help example is in docs/vision.md's code blocks (test_vision_export runs those
    on tiny models) or is the checkpoint command run below, which the docs show as well."""
    doc_lines = {ln.strip() for ln in (REPO / "docs" / "vision.md").read_text().splitlines()}
    helps, docs = _checkpoint_commands()
    assert len(helps) == 1 and docs == helps, (helps, docs)
    for argv in example_commands(cli.__doc__, "export_onnx"):
        assert argv in helps or shlex.join(["python", "scripts/export_onnx.py", *argv]) in doc_lines, argv


def test_documented_checkpoint_command_exports_the_trained_classifier(
        ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, caplog) -> None:
    """The --help / docs command, verbatim, where train_vit's default run left its checkpoint:
    onnxruntime's logits equal the trained classifier's, not a fresh model's; the output is
    the result lines, without the exporter's INFO flood."""
    (argv,), _ = _checkpoint_commands()
    monkeypatch.chdir(tmp_path)
    DOC_CKPT.parent.mkdir(parents=True)
    shutil.copy(ckpt, DOC_CKPT)
    caplog.set_level(logging.INFO)
    cli.main(argv)
    out = capsys.readouterr().out
    path = Path(argv[argv.index("--out") + 1])
    assert f"ONNX {path} ({NAME}, 10 classes, from {DOC_CKPT})" in out
    assert "256x320: max |onnxruntime - PyTorch|" in out and "320x256: max |onnxruntime - PyTorch|" in out
    noisy = [r for r in caplog.records if r.name.startswith(cli.EXPORTER_LOGGERS) and r.levelno < logging.WARNING]
    assert not noisy, f"{len(noisy)} exporter INFO records, e.g. {noisy[0].name}: {noisy[0].getMessage()}"

    trained = ImageClassificationTask.load_from_checkpoint(ckpt, map_location="cpu").eval().backbone
    x = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    (logits,) = _ort(path, x)
    assert logits.shape == (2, 10)
    with torch.no_grad():
        eager = trained(x).numpy()
        torch.manual_seed(0)  # the command's seed: what a timm name would have exported
        fresh = timm.create_model(NAME, num_classes=10, **TINY_KWARGS[NAME]).eval()(x).numpy()
    np.testing.assert_allclose(logits, eager, atol=1e-4, rtol=0)
    assert np.abs(logits - fresh).max() > 1e-3


def test_checkpoint_features_are_the_trained_backbones(ckpt: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "features.onnx"
    cli.main(["--model", str(ckpt), "--features", "--sample-size", "64,80", "--check-sizes", "64,80",
              "--out", str(out)])
    assert f"(the trained backbone of {NAME}, from {ckpt})" in capsys.readouterr().out
    trained = ImageClassificationTask.load_from_checkpoint(ckpt, map_location="cpu").eval().backbone
    settings = timm.create_model(NAME, features_only=True, **TINY_KWARGS[NAME])  # timm's out_indices and norm
    x = torch.randn(1, 3, 80, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        eager = trained.forward_intermediates(x, indices=settings.out_indices, norm=settings.norm,
                                              output_fmt=settings.output_fmt, intermediates_only=True)
    got = _ort(out, x)
    assert len(got) == len(eager) >= 1
    for g, e in zip(got, eager):
        np.testing.assert_allclose(g, e.numpy(), atol=1e-4, rtol=0)


def test_checkpoint_bench_times_its_architecture(ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys) -> None:
    import vision.onnx_bench

    calls = []
    monkeypatch.setattr(vision.onnx_bench, "bench_onnx", lambda *a, **k: calls.append((a, k)) or {"model": a[0]})
    monkeypatch.setattr(vision.onnx_bench, "format_bench", lambda row: "bench row")
    cli.main(["--model", str(ckpt), "--bench", "--size", "64", "--out", str(tmp_path / "b.onnx")])
    (args, kwargs), = calls
    assert args[:2] == (NAME, 64)
    assert kwargs["num_classes"] == 10 and kwargs["model_kwargs"] == TINY_KWARGS[NAME]
    assert json.loads(capsys.readouterr().out.splitlines()[-1]) == {"model": NAME}
    # Without --out the random-weight bench export is named apart from the trained model's file.
    calls.clear()
    cli.main(["--model", str(ckpt), "--bench", "--size", "64"])
    (args, _), = calls
    assert Path(args[2]) == ckpt.with_name(f"{ckpt.stem}_bench.onnx")


@pytest.mark.parametrize("extra,message", [
    (["--num-classes", "3"], f"--num-classes: not with a checkpoint (--model {{ckpt}} rebuilds its own {NAME} "
                             "with 10 classes)"),
    (["--model-kwargs", '{"depth": 2}'], "--model-kwargs: not with a checkpoint"),
])
def test_checkpoint_refuses_architecture_flags(ckpt: Path, extra: list[str], message: str, capsys,
                                               no_export) -> None:
    assert _error(["--model", str(ckpt), *extra], capsys).startswith(message.format(ckpt=ckpt))


def test_not_a_classifier_checkpoint(tmp_path: Path, capsys, no_export) -> None:
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint")
    assert _error(["--model", str(text)], capsys).startswith(f"--model: {text}: not a checkpoint (")
    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"lr": 0.1}}, other)
    assert _error(["--model", str(other)], capsys) == (
        f"--model: {other}: not a classifier checkpoint of {train_vit.PROG} "
        "(its hyper-parameters name no backbone_name)")
    missing = tmp_path / "runs" / "food" / "checkpoints" / "last.ckpt"
    assert _error(["--model", str(missing)], capsys) == f"--model: {missing}: no checkpoint there (no such file)"


# ---------------------------------------------------------------------------------------
# names, sizes, checks, logs
# ---------------------------------------------------------------------------------------

def test_unknown_name_names_close_longseq_models(capsys, no_export) -> None:
    message = _error(["--model", "longseq_vit_smal"], capsys)
    assert message.startswith("--model: unknown model 'longseq_vit_smal' (did you mean 'longseq_vit_small'")
    assert "Traceback" not in message
    assert _error(["--model", "resnet1"], capsys).startswith("--model: unknown timm model 'resnet1'")


SWIN_TINY = json.dumps(TINY_KWARGS["longseq_swin_tiny"])  # 4 * 2**3 * 3 + 1: its smallest side is 97


@pytest.mark.parametrize("argv,flag,side", [
    (["--size", "100", "--out", "onnx/x.onnx"], "--size: 100x100", 225),  # Swin-T as shipped
    (["--model-kwargs", SWIN_TINY, "--size", "90"], "--size: 90x90", 97),
    (["--model-kwargs", SWIN_TINY, "--sample-size", "96,300"], "--sample-size: 96x300", 97),
    (["--model-kwargs", SWIN_TINY, "--check-sizes", "128,128", "120,96"], "--check-sizes: 120x96", 97),
    (["--model-kwargs", SWIN_TINY, "--bench", "--size", "90"], "--size: 90x90", 97),
])
def test_sides_below_min_export_side_are_refused_up_front(argv: list[str], flag: str, side: int, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch, capsys, no_export) -> None:
    monkeypatch.chdir(tmp_path)
    assert _error(["--model", "longseq_swin_tiny", *argv], capsys) == (
        f"{flag} is below the smallest side longseq_swin_tiny exports at: {side} (min_export_side); "
        "use sides of at least that")
    assert not (tmp_path / "onnx").exists()


def test_timm_name_still_exports_and_checks(tmp_path: Path, capsys) -> None:
    out = tmp_path / "vit.onnx"
    cli.main(["--model", NAME, "--num-classes", "3", "--model-kwargs", json.dumps(TINY_KWARGS[NAME]),
              "--sample-size", "64,80", "--check-sizes", "64,80", "--size", "96", "--out", str(out)])
    lines = capsys.readouterr().out.splitlines()
    assert f"ONNX {out}" in lines and any(ln.startswith("  96x96: max |onnxruntime - PyTorch|") for ln in lines)
    assert _ort(out, torch.zeros(1, 3, 96, 64))[0].shape == (1, 3)


class _Pool(nn.Module):
    """(B, 3, H, W) -> (B, 4): a conv and a mean, exported in a second."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean((2, 3))


def test_a_mismatch_raises_and_the_command_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    model = _Pool().eval()
    path = export_onnx(model, tmp_path / "pool.onnx", sample_size=(64, 64), min_side=8)
    assert check_onnx(model, path, [(32, 40)])[0] < 1e-5
    with torch.no_grad():
        model.conv.bias += 1.0  # the file no longer matches the model
    with pytest.raises(OnnxCheckError, match=r"ONNX differs from eager by .* > 1e-04 at 32x40"):
        check_onnx(model, path, [(32, 40)])

    def mismatch(*args, **kwargs):
        raise OnnxCheckError("ONNX differs from eager by 7.01e-02 > 1e-04 at 256x320")

    monkeypatch.setattr(vision.export, "check_onnx", mismatch)
    monkeypatch.setattr(vision.export, "export_onnx", lambda model, path, **kwargs: Path(path))
    out = tmp_path / "vit.onnx"
    message = _error(["--model", NAME, "--model-kwargs", json.dumps(TINY_KWARGS[NAME]), "--sample-size", "64,80",
                      "--out", str(out)], capsys)
    assert message == f"{out}: onnxruntime check failed: ONNX differs from eager by 7.01e-02 > 1e-04 at 256x320"
    assert issubclass(OnnxCheckError, AssertionError) and issubclass(UserError, ValueError)


def test_no_assert_statements_in_the_export_code() -> None:
    """``python -O`` strips assert statements: the checks must be raises."""
    for module in ("vision/export.py", "vision/cli/export_onnx.py", "vision/onnx_bench.py"):
        tree = ast.parse((REPO / module).read_text())
        asserts = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Assert)]
        assert not asserts, f"{module}: assert statements at lines {asserts}"


def test_exporter_loggers_quiet_unless_verbose() -> None:
    loggers = [logging.getLogger(name) for name in cli.EXPORTER_LOGGERS]
    before = [lg.level for lg in loggers]
    with cli._exporter_logs(verbose=False):
        assert all(lg.getEffectiveLevel() == logging.WARNING for lg in loggers)
        pass_logger = logging.getLogger("onnx_ir.passes.common.initializer_deduplication")
        assert pass_logger.getEffectiveLevel() == logging.WARNING
    assert [lg.level for lg in loggers] == before
    with cli._exporter_logs(verbose=True):
        assert [lg.level for lg in loggers] == before
    assert cli.parser().parse_args(["--verbose"]).verbose
