"""Builds jaxyolo's C++ extensions against jaxlib's XLA FFI headers; the rest of the package is declared in
pyproject.toml. Both are optional: where one cannot be built the install goes on and jaxyolo uses XLA's own ops.

* ``jaxyolo/nn/cpu_kernels.cc`` (Linux): BatchNorm's per-channel sums in one pass (``jaxyolo/nn/cpu_kernels.py``).
* ``jaxyolo/nn/onednn_conv.cc`` (Linux x86_64): oneDNN's convolutions (``jaxyolo/nn/onednn.py``), also against
  ``onednn-devel-cpu-gomp``'s headers.
"""

import platform
import sys
from importlib import metadata
from pathlib import Path

from setuptools import Extension, setup


def _jaxlib_include() -> str:
    import jaxlib  # the XLA FFI headers (xla/ffi/api/ffi.h) ship in jaxlib's wheel

    return str(Path(jaxlib.__file__).parent / "include")


def _onednn_include() -> str:
    dist = metadata.distribution("onednn-devel-cpu-gomp")
    header = next(f for f in dist.files or () if f.name == "dnnl.hpp" and f.parent.name == "dnnl")
    return str(Path(dist.locate_file(header)).parents[2])


ext_modules = []
if platform.system() == "Linux":
    try:
        ext_modules.append(Extension(
            "jaxyolo.nn._cpu_kernels", ["jaxyolo/nn/cpu_kernels.cc"], include_dirs=[_jaxlib_include()],
            extra_compile_args=["-std=c++17", "-O3", "-w"], language="c++", optional=True))
    except ImportError as e:
        print(f"jaxyolo: not building the CPU kernel extension ({e!r}); XLA's reductions will be used", file=sys.stderr)
if platform.system() == "Linux" and platform.machine() == "x86_64":
    try:
        ext_modules.append(Extension(
            "jaxyolo.nn._onednn_conv", ["jaxyolo/nn/onednn_conv.cc"], include_dirs=[_jaxlib_include(), _onednn_include()],
            libraries=["gomp"],  # omp_set_num_threads; the dnnl_* symbols resolve from libdnnl, loaded first at run time
            extra_compile_args=["-std=c++17", "-O2", "-w"], language="c++", optional=True))
    except (ImportError, metadata.PackageNotFoundError, StopIteration) as e:
        print(f"jaxyolo: not building the oneDNN extension ({e!r}); XLA's convolutions will be used", file=sys.stderr)

setup(ext_modules=ext_modules)
