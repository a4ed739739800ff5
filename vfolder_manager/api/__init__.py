"""REST handlers of the vfolder service, under ``{prefix}api/v1/``."""

from .handlers import routes  # noqa: F401
