from setuptools import Extension, setup

# Metadata lives in pyproject.toml; this file exists so that native extensions
# (the parallel file toolkit core) can be declared in Python.
setup(
    ext_modules=[
        Extension(
            "vfolder_manager.ptools._core",
            sources=["vfolder_manager/ptools/_core.c"],
            extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wno-unused-function"],
            extra_link_args=["-pthread"],
        )
    ],
)
