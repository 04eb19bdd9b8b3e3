"""Builds jaxyolo's oneDNN convolution extension (``jaxyolo/nn/onednn_conv.cc``, ``winograd_conv.cc``,
``matmul.cc``; Linux x86_64); the rest of the package is declared in pyproject.toml. The extension is optional: where it cannot be built
the install goes on and jaxyolo uses XLA's own convolutions (``jaxyolo/nn/onednn.py``, which warns). A failed build
also removes an earlier build of the extension from the source tree (``_BuildExt``), so that an editable install
never goes on loading a library built from other sources than its own."""

import platform
import sys
from importlib import metadata
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


def _include_dirs() -> list[str]:
    import jaxlib  # the XLA FFI headers (xla/ffi/api/ffi.h) ship in jaxlib's wheel

    dist = metadata.distribution("onednn-devel-cpu-gomp")
    header = next(f for f in dist.files or () if f.name == "dnnl.hpp" and f.parent.name == "dnnl")
    return [str(Path(jaxlib.__file__).parent / "include"), str(Path(dist.locate_file(header)).parents[2])]


class _BuildExt(build_ext):
    """``build_ext`` that, when an (optional) extension fails to build, deletes the copy an earlier build left beside
    the sources: ``pip install -e .`` after a broken edit would otherwise keep loading the old library, silently
    (setuptools reports an optional extension's failure as a warning, which ``pip -q`` hides)."""

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except BaseException:
            stale = Path(__file__).resolve().parent / self.get_ext_filename(ext.name)
            if stale.exists():
                stale.unlink()
                print(f"jaxyolo: removed {stale}, built from earlier sources", file=sys.stderr)
            raise


ext_modules = []
if platform.system() == "Linux" and platform.machine() == "x86_64":
    try:
        ext_modules.append(Extension(
            "jaxyolo.nn._onednn_conv",
            ["jaxyolo/nn/onednn_conv.cc", "jaxyolo/nn/winograd_conv.cc", "jaxyolo/nn/matmul.cc"],
            depends=["jaxyolo/nn/ffi_slices.h"], include_dirs=_include_dirs(),
            libraries=["gomp"],  # omp_set_num_threads; the dnnl_* symbols resolve from libdnnl, loaded first at run time
            extra_compile_args=["-std=c++17", "-O2", "-fopenmp-simd", "-w"], language="c++", optional=True))
    except (ImportError, metadata.PackageNotFoundError, StopIteration) as e:
        print(f"jaxyolo: not building the oneDNN extension ({e!r}); XLA's convolutions will be used", file=sys.stderr)

setup(ext_modules=ext_modules, cmdclass={"build_ext": _BuildExt})
