"""Pure decisions of the vfolder service: names, permissions, paths, quotas and
mount specs. No I/O here; everything is tested without a filesystem."""
