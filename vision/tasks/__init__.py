"""Lightning tasks on top of the backbones."""
