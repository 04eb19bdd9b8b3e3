"""Ultralytics ``.pt`` interop, both ways, with torch but without ultralytics or torchvision.

* ``mapping``: name/layout mapping between torch state dicts and Flax variables.
* ``unpickler``: ``read_checkpoint`` -- ``torch.load`` through an allow-list unpickler (nothing in the file runs).
* ``arrays``: ``read_checkpoint_arrays`` -- the same unpickler and allow-list with tensors as numpy arrays, no torch
  (what ``load`` uses: importing torch costs ~2 s).
* ``load``: ``load_pt(path) -> (module, variables, meta)`` for Ultralytics classification checkpoints.
* ``mirror``: torch modules with Ultralytics' class names/attributes, built from the same layer specs as the Flax model.
* ``save``: ``save_pt(path, module, variables, cfg, names, train_args=None, half=True, **extra)``.

Nothing here is imported eagerly, so ``import converters.torch_weights`` does not need torch; only ``save``,
``mirror`` and ``unpickler.read_checkpoint`` do.
"""
