"""Ultralytics ``.pt`` interop, both ways, without ultralytics, torchvision -- or torch.

* ``mapping``: name/layout mapping between torch state dicts and Flax variables.
* ``unpickler``: ``read_checkpoint`` -- ``torch.load`` through an allow-list unpickler (nothing in the file runs).
* ``arrays``: ``read_checkpoint_arrays`` -- the same unpickler and allow-list with tensors as numpy arrays, no torch
  (what ``load`` uses: importing torch costs ~2 s).
* ``load``: ``load_pt(path) -> (module, variables, meta)`` for Ultralytics classification checkpoints.
* ``layers``: Ultralytics' classification modules, written once over an ``(nn, torch)`` pair and built from the same
  layer specs as the Flax model.
* ``mirror``: those classes over real torch (forward passes: the exporters' torch graph, the tests).
* ``torchless`` + ``writer``: those classes over torch-free stand-ins, and ``torch.save``'s zip format written
  without torch.
* ``save``: ``save_pt(path, module, variables, cfg, names, train_args=None, half=True, **extra)`` (no torch).

Nothing here is imported eagerly; only ``mirror`` and ``unpickler.read_checkpoint`` need torch.
"""
