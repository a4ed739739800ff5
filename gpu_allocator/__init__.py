"""gpuhub allocator: owns the pool of GPU hosts and hands out shares of it."""
