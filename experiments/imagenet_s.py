"""YOLOv8s-cls on ImageNet with Ultralytics' recipe.

    python -m jaxyolo.train --config experiments/imagenet_s.py --config.data_dir=gs://bucket/tfds --workdir runs/in_s
Ultralytics equivalent: yolo classify train data=imagenet model=yolov8s-cls.yaml epochs=100 imgsz=224
"""

from experiments.imagenet_common import imagenet_config


def get_config():
    return imagenet_config("s")
