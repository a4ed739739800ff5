"""``python -m gpuhub.cli``: the same as the ``gpuhub`` command."""

from . import main

raise SystemExit(main())
