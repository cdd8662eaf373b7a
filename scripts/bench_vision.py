"""Benchmark longseq vision backbones beside timm ViT-S/16 and Swin-T at high resolution.

For each model, image side and mode (``train``: one fp32 SGD step on a cross-entropy
loss; ``infer``: a no-grad forward) at batch 1, a fresh subprocess measures the median
step time, images/s, peak RSS (so each row's memory is its own), the model FLOPs of the
step (``torch.utils.flop_counter``, forward x 3 for a training step) and the achieved
GFLOP/s. Writes ``bench_vision.csv`` and ``bench_vision.png`` to ``--out-dir``.

    python scripts/bench_vision.py                                  # full run (long: hours on CPU)
    python scripts/bench_vision.py --sizes 64 96 --repeats 1 --models longseq_vit_tiny vit_small_patch16_224

A model name may end in ``:`` and a JSON object of ``timm.create_model`` keyword arguments,
e.g. the ``train_vit.py`` default model at batch 16:

    python scripts/bench_vision.py --sizes 512 --modes train --batch 16 --repeats 5 --no-flops \
        --models 'longseq_vit_digits:{"patch_size": 32, "mlp_ratio": 2.0, "embed_kwargs": {"first_stride": 4}}'

Installed, the command is ``longseq-bench-vision``.
"""

from vision.cli.bench_vision import main

if __name__ == "__main__":
    main()
