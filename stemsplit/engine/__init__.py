"""The chunked, streaming inference engine: plans, runs and overlap-adds chunks."""
