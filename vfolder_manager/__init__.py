"""Storage proxy: virtual folders and the parallel file toolkit (ptools)."""
