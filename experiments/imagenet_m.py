"""YOLOv8m-cls on ImageNet with Ultralytics' recipe.

    python -m jaxyolo.train --config experiments/imagenet_m.py --config.data_dir=gs://bucket/tfds --workdir runs/in_m
Ultralytics equivalent: yolo classify train data=imagenet model=yolov8m-cls.yaml epochs=100 imgsz=224
"""

from experiments.imagenet_common import imagenet_config


def get_config():
    return imagenet_config("m")
