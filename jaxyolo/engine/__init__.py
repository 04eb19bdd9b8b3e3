"""Engine: model facade, trainer, validator, predictor, benchmark mode.

Importing any engine module first turns on JAX's persistent compilation cache (``utils/jax_cache.py``): JAX decides
once per process, at the first compilation, whether to use one, and every entry point (CLI, ``YOLO``, ``python -m
jaxyolo.train``, the exporters) reaches its first compile through this package. For the same reason it is where
XLA:CPU's step buffers are made reusable (``utils/malloc.py``: synchronous CPU dispatch, glibc's heap kept),
which must happen before JAX's CPU backend starts.
"""

from jaxyolo.utils import malloc
from jaxyolo.utils.jax_cache import enable_compilation_cache

malloc.tune()
enable_compilation_cache()
