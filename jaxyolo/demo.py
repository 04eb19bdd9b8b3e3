"""The README main job while the trainer is being built: build, summarise and run a forward pass on real digits."""

from __future__ import annotations

import numpy as np


def main() -> None:
    from sklearn.datasets import load_digits

    from jaxyolo import YOLO

    for name in ("yolov8n-cls.yaml", "yolo11n-cls.yaml"):
        model = YOLO(name, nc=10)
        model.info(imgsz=32)
        digits = load_digits()
        imgs = (digits.images[:8] / 16.0 * 255).astype(np.uint8)  # 8x8 grey in [0, 16] -> uint8
        imgs = np.repeat(np.repeat(imgs, 4, axis=1), 4, axis=2)[..., None].repeat(3, axis=-1)  # 32x32 RGB
        probs = model.forward(imgs)
        print(f"forward pass on {len(imgs)} real digits at 32x32 -> probabilities {probs.shape}, "
              f"rows sum to {probs.sum(1).round(4).tolist()[:3]}..., top-1 {probs.argmax(1).tolist()} "
              f"(untrained weights; labels {digits.target[:8].tolist()})")


if __name__ == "__main__":
    main()
