"""Test helpers shipped with the package (the FUSE latency filesystem)."""
