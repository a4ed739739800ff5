"""``{gpuhub-cli}``: the ``gpuhub`` command line's reference, generated from its
argparse parser (gpuhub.cli.build_parser): one section per command with its
``--help`` exactly as the command prints it, so the page cannot drift from the
code."""

from __future__ import annotations

from docutils import nodes
from docutils.parsers.rst import Directive


class CLIReference(Directive):
    has_content = False

    def run(self):
        from gpuhub.cli import every_command

        out = []
        for path, parser in every_command():
            name = " ".join(("gpuhub", *path))
            section = nodes.section(ids=[nodes.make_id(name)], names=[nodes.fully_normalize_name(name)])
            section += nodes.title(text=name)
            text = parser.format_help()
            section += nodes.literal_block(text, text, language="text")
            out.append(section)
        return out


def setup(app):
    app.add_directive("gpuhub-cli", CLIReference)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
