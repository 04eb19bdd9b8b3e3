"""Where the input pipeline's CPU time goes: per-stage and per-RandAugment-op cost of jaxyolo's train transform.

    python benchmarks/profile_data_ops.py [--dir /tmp/jaxyolo_bench_data] [--images 600]

Runs the stages cumulatively on one thread over the JPEG folder made by ``bench_data.py`` (read -> decode ->
decode-and-crop -> + resize -> + flip -> + RandAugment -> + erasing) and reports CPU ms per image, then times each
RandAugment op alone on a 224x224 image (including ~0.2 ms of Python call overhead per op). Prints tables only.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="/tmp/jaxyolo_bench_data")
    ap.add_argument("--images", type=int, default=600)
    a = ap.parse_args()
    import numpy as np
    import tensorflow as tf

    from jaxyolo.data import pil_ops as O
    from jaxyolo.data import tf_augment as A
    from jaxyolo.data import transforms as T

    files = sorted(glob.glob(f"{a.dir}/**/train/*/*.jpg", recursive=True))[: a.images]
    if not files:
        sys.exit(f"no JPEGs under {a.dir}/**/train: run benchmarks/bench_data.py first (it generates the folder)")
    n = len(files)

    def run(name, fn):
        ds = tf.data.Dataset.from_tensor_slices((files, np.arange(n, dtype=np.int64))).map(fn, num_parallel_calls=1)
        o = tf.data.Options()
        o.threading.private_threadpool_size = 1
        o.threading.max_intra_op_parallelism = 1
        ds = ds.with_options(o)
        for _ in ds.take(20):
            pass
        c0 = time.process_time()
        for _ in ds:
            pass
        print(f"  {name:<34}{(time.process_time() - c0) / n * 1e3:8.2f}", flush=True)

    def seed(i):
        return T.example_seed(0, tf.constant(0, tf.int64), i)

    def crop(p, i):
        raw = tf.io.read_file(p)
        sh = tf.io.extract_jpeg_shape(raw)
        top, left, ch, cw = T.rrc_params(tf.unstack(tf.random.experimental.stateless_split(seed(i), 8))[0], sh[0],
                                         sh[1], (0.5, 1.0))
        return tf.io.decode_and_crop_jpeg(raw, tf.stack([top, left, ch, cw]), channels=3, dct_method="INTEGER_ACCURATE")

    def full(p, i, aug):
        raw = tf.io.read_file(p)
        sh = tf.io.extract_jpeg_shape(raw)
        return T.train_transform(
            lambda t, l, ch, cw: tf.io.decode_and_crop_jpeg(raw, tf.stack([t, l, ch, cw]), channels=3,
                                                            dct_method="INTEGER_ACCURATE"), sh[0], sh[1], seed(i),
            224, aug)

    base = dict(scale=0.5, fliplr=0.5, erasing=0.0, hsv_h=0, hsv_s=0, hsv_v=0)
    print(f"{n} JPEGs from {a.dir}, one thread; stage (cumulative)        CPU ms/img")
    run("read file", lambda p, i: tf.io.read_file(p))
    run("decode (full image)", lambda p, i: tf.io.decode_jpeg(tf.io.read_file(p), channels=3,
                                                             dct_method="INTEGER_ACCURATE"))
    run("random crop, decode the window only", crop)
    run("+ resize to 224 (antialiased)", lambda p, i: O.pil_resize(tf.cast(crop(p, i), tf.float32), [224, 224]))
    run("+ flip (train transform, no aug)", lambda p, i: full(p, i, {**base, "auto_augment": "none"}))
    run("+ RandAugment(2, 9)", lambda p, i: full(p, i, {**base, "auto_augment": "randaugment"}))
    run("+ RandomErasing(0.4)", lambda p, i: full(p, i, {**base, "auto_augment": "randaugment", "erasing": 0.4}))
    x = tf.random.uniform([224, 224, 3], 0, 255)
    print("RandAugment op alone on 224x224 (ms, incl. call overhead)")
    for name in A.RANDAUGMENT_OPS:
        mag = {"Posterize": 4, "Solarize": 128.0}.get(name, 0.3)
        f = tf.function(lambda x, name=name, mag=mag: A.apply_op_named(x, name, mag))
        f(x)
        t = time.perf_counter()
        for _ in range(100):
            f(x)
        print(f"  {name:<34}{(time.perf_counter() - t) * 10:8.2f}", flush=True)


if __name__ == "__main__":
    main()
