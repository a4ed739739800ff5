"""The allocator's pure core: the resource model, the in-memory pool state with
its indexes, placement and request validation. No I/O here."""
