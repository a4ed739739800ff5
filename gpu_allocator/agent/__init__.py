"""gpuhub-agent: runs on every GPU host, registers it with the allocator and keeps
it alive with heartbeats (see app.GPUAgent)."""
