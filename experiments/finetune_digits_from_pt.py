"""Fine-tune from an Ultralytics checkpoint (any yolov8*/yolo11*-cls .pt; the head is re-sized to the dataset).

    python -m jaxyolo.train --config experiments/finetune_digits_from_pt.py --config.model=path/to/yolov8n-cls.pt
Ultralytics equivalent: yolo classify train data=<digits folder> model=yolov8n-cls.pt epochs=5 imgsz=32
"""

import ml_collections


def get_config():
    c = ml_collections.ConfigDict()
    c.model = "runs/classify/train/weights/best.pt"  # replace with your .pt
    c.data = "digits"
    c.epochs = 5
    c.imgsz = 32
    c.batch = 64
    c.lr0 = 0.001
    c.optimizer = "AdamW"
    c.warmup_epochs = 0.0
    return c
