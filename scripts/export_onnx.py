"""Export a longseq backbone to ONNX (symbolic batch, height and width), check it, or time it.

    python scripts/export_onnx.py --model longseq_vit_small --out onnx/vit_small.onnx
    python scripts/export_onnx.py --model longseq_swin_tiny --features --out onnx/swin_tiny_features.onnx
    python scripts/export_onnx.py --model longseq_vit_small --size 1024 --bench
    python scripts/export_onnx.py --model longseq_swin_tiny --size 1024 --bench

Without ``--bench`` the model is exported to ``--out`` and onnxruntime is checked against
PyTorch (max absolute difference, 1e-4) at two sizes, plus ``--size`` when given.
``--features`` exports timm's ``features_only`` model: one output per feature map, named
``features_0``, ``features_1``, ... (otherwise the one output is ``output``). Weights up
to 1.8 GB are stored inside the ``.onnx`` file; larger models write ``<out>.data`` beside
it, which must travel with the ``.onnx`` file.

``--bench`` exports, then runs PyTorch and onnxruntime at ``--size`` x ``--size`` (batch 1),
each in its own process, and prints seconds per image and peak RSS of each, the export's
time and peak RSS, and their outputs' max difference (:mod:`vision.onnx_bench`).
The weights are random (seeded): speed and memory do not depend on them.
"""

from vision.cli.export_onnx import main

if __name__ == "__main__":
    main()
