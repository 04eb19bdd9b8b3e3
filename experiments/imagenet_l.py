"""YOLOv8l-cls on ImageNet with Ultralytics' recipe.

    python -m jaxyolo.train --config experiments/imagenet_l.py --config.data_dir=gs://bucket/tfds --workdir runs/in_l
Ultralytics equivalent: yolo classify train data=imagenet model=yolov8l-cls.yaml epochs=100 imgsz=224
"""

from experiments.imagenet_common import imagenet_config


def get_config():
    return imagenet_config("l")
