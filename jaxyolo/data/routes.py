"""Decode routes: which decoder reads a file, fixed when the file is scanned (``folders.inspect_file``) and stored in
the scan cache. A TensorFlow-free module, so that scanning a folder (or reading its cached scan) does not import
TensorFlow: the trainer imports it on its input-pipeline thread, in parallel with building and compiling the model.
``decode`` holds the decoders and documents each route."""

JPEG, PNG, BMP, GIF, PIL = 0, 1, 2, 3, 4
ROUTE_NAMES = {JPEG: "jpeg", PNG: "png", BMP: "bmp", GIF: "gif", PIL: "pil"}
