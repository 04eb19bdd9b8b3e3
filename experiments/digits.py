"""The README main job: yolov8n-cls on the embedded `digits` dataset (scikit-learn's real handwritten digits).

    python -m jaxyolo.train --config experiments/digits.py
    python -m jaxyolo.train --config experiments/digits.py --config.epochs=3 --workdir runs/digits
Ultralytics equivalent: yolo classify train data=<digits folder> model=yolov8n-cls.yaml epochs=10 imgsz=32 batch=64 \
    fliplr=0.0
Horizontal flips are off: handwritten digits are not mirror-symmetric (a flipped 2 is no digit). Everything else is
Ultralytics' default recipe.
"""

import ml_collections


def get_config():
    c = ml_collections.ConfigDict()
    c.model = "yolov8n-cls.yaml"
    c.data = "digits"
    c.epochs = 10
    c.imgsz = 32
    c.batch = 64
    c.fliplr = 0.0
    return c
