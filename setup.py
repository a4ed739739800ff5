from setuptools import setup

# Metadata lives in pyproject.toml; this file exists so that native extensions
# (the parallel file toolkit core) can be declared in Python.
setup()
