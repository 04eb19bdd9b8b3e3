"""Engine: model facade, trainer, validator, predictor, benchmark mode.

Importing any engine module first turns on JAX's persistent compilation cache (``utils/jax_cache.py``): JAX decides
once per process, at the first compilation, whether to use one, and every entry point (CLI, ``YOLO``, ``python -m
jaxyolo.train``, the exporters) reaches its first compile through this package.
"""

from jaxyolo.utils.jax_cache import enable_compilation_cache

enable_compilation_cache()
