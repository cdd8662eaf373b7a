"""Adapters that plug longseq backbones into third-party detection tools.

Each submodule imports its tool lazily (inside functions), so importing this package
never imports ultralytics (AGPL-3.0, an optional extra).
"""
