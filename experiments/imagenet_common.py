"""Ultralytics' ImageNet classification recipe, shared by experiments/imagenet_{n,s,m,l,x}.py."""

import ml_collections


def imagenet_config(scale: str, arch: str = "yolov8") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.model = f"{arch}{scale}-cls.yaml"
    c.data = "tfds:imagenet2012"  # or an image folder with train/ and val/ class subfolders
    c.data_dir = ""  # TFDS data_dir holding a prepared imagenet2012 (e.g. a gs:// bucket on a TPU pod)
    c.epochs = 100
    c.imgsz = 224
    c.batch = 1024  # global batch over all devices/hosts; Ultralytics' nominal batch (nbs) stays 64
    c.optimizer = "auto"  # > 10k iterations -> Nesterov SGD lr 0.01, momentum 0.9
    c.amp = True  # bf16 compute on GPU/TPU
    c.cache = False
    c.checkpoint_every = 2000  # optimizer-independent: global batches between mid-epoch checkpoints
    return c
