"""Build glue for the one C extension (native._native); metadata lives in pyproject.toml.

The extension is optional: without a C compiler the install still succeeds and
the suite runs on the pure-Python fallback (native/_fallback.py), saying so.
"""
import sys

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "native._native",
            sources=["native/_native.c"],
            extra_compile_args=["-O3", "-std=c11", "-Wall", "-Wextra"],
            # dlopen (deflate_pages binds zlib-ng at run time): in libc since glibc 2.34, libdl before
            libraries=["dl"] if sys.platform.startswith("linux") else [],
            optional=True,
        )
    ]
)
