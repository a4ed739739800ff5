"""Where things live on a storage host, derived only from ids."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

_ID = re.compile(r"^[0-9a-f]{32}$")

#: directories of the service on each host, next to the vfolders
UPLOADS_DIR = ".uploads"


def check_id(vid: str) -> str:
    if not isinstance(vid, str) or not _ID.match(vid):
        raise ValueError(f"not a vfolder id: {vid!r}")
    return vid


def vfolder_relpath(vid: str) -> PurePosixPath:
    """``ab/abcdef…``: a vfolder's directory under its host's root, from its id
    only (two-character fan-out keeps directories small on a NAS)."""
    check_id(vid)
    return PurePosixPath(vid[:2]) / vid


def upload_relpath(upload_id: str) -> PurePosixPath:
    check_id(upload_id)
    return PurePosixPath(UPLOADS_DIR) / upload_id
