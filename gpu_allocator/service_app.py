"""What the allocator and the agent share as command-line services: a traitlets
config file given on the command line, and an asyncio main."""

from __future__ import annotations

import asyncio

from traitlets import Unicode
from traitlets.config import Application


class ServiceApp(Application):
    """Base of gpuhub's long-running services; subclasses define start_async()."""

    config_file = Unicode(
        "", help="A traitlets config file (Python) to load, e.g. gpu_allocator_config.py."
    ).tag(config=True)

    def initialize(self, argv=None):
        super().initialize(argv)
        if self.config_file:
            self.load_config_file(self.config_file)

    async def start_async(self) -> None:
        raise NotImplementedError

    def start(self):
        asyncio.run(self.start_async())
