"""Sphinx configuration of gpuhub's documentation (``make docs``).

Pages are MyST Markdown; the theme is JupyterHub's (pydata-sphinx-theme). Four
references are generated, not written: the configuration from the traitlets
(autodoc-traits), the REST APIs from their OpenAPI specs (sphinxcontrib-openapi;
tests/test_openapi.py checks the specs against the route tables), the
Prometheus metrics from the services' registries (``_ext/metrics_reference.py``),
and the ``gpuhub`` command line from its argparse parser (``_ext/cli_reference.py``).
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(HERE, "_ext"))

project = "gpuhub"
author = "gpuhub contributors"
copyright = "gpuhub contributors"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "autodoc_traits",
    "sphinxcontrib.openapi",
    "metrics_reference",
    "cli_reference",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# the builds are offline: no intersphinx inventories are fetched
intersphinx_mapping = {}
autodoc_member_order = "bysource"
autodoc_typehints = "none"
# the configurable classes' own docstrings mention traitlets, tornado and
# JupyterHub objects that no inventory here resolves
nitpick_ignore_regex = [(r"py:.*", r".*")]

html_theme = "pydata_sphinx_theme"
html_title = "gpuhub"
html_static_path = ["_static"]
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": [],
}
html_sidebars = {"index": []}

# the packages whose traits these pages document: a class's traits inherited
# from JupyterHub, dockerspawner or traitlets' Application are theirs to document
OWN_PACKAGES = ("gpu_allocator", "gpuhub", "spawner", "vfolder_manager")


def skip_foreign_traits(app, what, name, obj, skip, options):
    owner = getattr(obj, "this_class", None)
    if owner is not None and not owner.__module__.startswith(OWN_PACKAGES):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", skip_foreign_traits)
