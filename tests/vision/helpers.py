"""Shared test settings for the vision tests: tiny model sizes, the documented example commands."""

from __future__ import annotations

import vision

#: Shrunken widths/depths per registered model, so every model trains in a test quickly.
TINY_KWARGS = {
    name: (
        dict(embed_dim=32, depths=(1, 1, 2, 1), num_heads=(1, 2, 2, 4), window_size=3)
        if "swin" in name
        else dict(embed_dim=32, depth=3, num_heads=2, window_size=3, global_blocks=(1,))
    )
    for name in vision.MODEL_NAMES
}


def example_commands(doc: str, script: str) -> list[list[str]]:
    """The arguments of every ``python scripts/<script>.py ...`` example line in ``doc`` (a
    command's ``--help`` text), comments removed."""
    import shlex

    prefix = f"python scripts/{script}.py"
    return [shlex.split(line.strip(), comments=True)[2:] for line in doc.splitlines()
            if line.strip().startswith(prefix)]
