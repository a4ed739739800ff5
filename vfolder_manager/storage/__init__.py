"""Storage hosts (directories, NFS mounts of a NAS in production), usage scans,
quota backends and I/O statistics."""
