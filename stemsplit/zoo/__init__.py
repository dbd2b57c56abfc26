"""The pretrained zoo: model cards, verified downloads, cache, safe checkpoint readers."""
