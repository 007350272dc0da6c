"""`make bench`: each figure of bench/results/results.md, measured by its `p<N>_*.py`."""
