"""Many inputs: expansion (`inputs`), output paths and clashes (`layout`), skip or redo
(`resume`), the run loop (`run`), decode-ahead and background encoding (`io`), and the
Ray executor (`ray`). Submodules are imported where used: this package's import is free.
"""
