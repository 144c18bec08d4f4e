"""Build of the optional compiled core (forwarder._core); everything else is in pyproject.toml.

Without a C compiler or the Python headers the build says so in one line and the package installs
without the core: it then runs on its pure-Python reference code, with the same output, slower.
Set NSG_FORWARDER_REQUIRE_CORE=1 to make a failed build an error instead (CI, the container image).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

CORE_SOURCES = [
    "csrc/flow.c",
    "csrc/render.c",
    "csrc/community_id.c",
    "csrc/reduce.c",
    "csrc/module.c",
    "csrc/reduce_module.c",
]


class OptionalBuildExt(build_ext):
    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any build failure means: no compiled core
            self._skip(exc)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            self._skip(exc)

    def _skip(self, exc: Exception) -> None:
        if os.environ.get("NSG_FORWARDER_REQUIRE_CORE") == "1":
            raise exc
        print(
            "nsg-forwarder: the compiled core was not built (no C compiler or Python headers: "
            f"{exc}); installing the pure-Python core, same output, slower",
            file=sys.stderr,
        )


class BuildPyWithSchemas(build_py):
    """The JSON schemas ship inside the package (forwarder/schemas), as config/loader.py expects."""

    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "forwarder" / "schemas"
        target.mkdir(parents=True, exist_ok=True)
        for schema in Path("schemas").glob("*.json"):
            shutil.copy2(schema, target / schema.name)


setup(
    ext_modules=[
        Extension(
            "forwarder._core",
            sources=CORE_SOURCES,
            depends=["csrc/flow.h", "csrc/reduce.h", "csrc/events.h"],
            extra_compile_args=["-O2", "-std=c11", "-Wno-unused-parameter"],
            optional=os.environ.get("NSG_FORWARDER_REQUIRE_CORE") != "1",
        )
    ],
    cmdclass={"build_ext": OptionalBuildExt, "build_py": BuildPyWithSchemas},
)
