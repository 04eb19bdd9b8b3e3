"""The host train route (``jaxyolo/data/host_train.py``): tf.data's training batches exactly, without TensorFlow."""

import os

import numpy as np
import pytest
from PIL import Image

from jaxyolo.data import host_train, load_dataset, train_batches
from jaxyolo.data import stateless_np as S

tf = pytest.importorskip("tensorflow")

AUG = dict(scale=0.5, fliplr=0.5, flipud=0.0, auto_augment="randaugment", erasing=0.4)


def test_philox_in_numpy_equals_tensorflow():
    """fold_in (int32 and int64 seeds, int64 data), split (int64 seeds) and float32/float64 uniforms of TF's
    stateless Philox."""
    rng = np.random.default_rng(0)
    seeds64 = rng.integers(-(2 ** 62), 2 ** 62, (150, 2), dtype=np.int64)
    seeds32 = rng.integers(-(2 ** 31), 2 ** 31 - 1, (150, 2), dtype=np.int64).astype(np.int32)
    data = rng.integers(-(2 ** 40), 2 ** 40, 150, dtype=np.int64)
    for seeds in (seeds64, seeds32):
        fold = np.stack([tf.random.experimental.stateless_fold_in(tf.constant(s), tf.constant(d, tf.int64)).numpy()
                         for s, d in zip(seeds, data)])
        np.testing.assert_array_equal(S.fold_in(seeds, data), fold)
    split = np.stack([tf.random.experimental.stateless_split(tf.constant(s), 8).numpy() for s in seeds64])
    np.testing.assert_array_equal(S.split(seeds64, 8), split)  # (the route splits int64 seeds only)
    seeds = S.split(seeds64, 1)[:, 0]
    u32 = np.stack([tf.random.stateless_uniform([10], s, 0.25, 1.0, tf.float32, alg="philox").numpy() for s in seeds])
    np.testing.assert_array_equal(S.uniform_f32(seeds, 10, 0.25, 1.0), u32)
    u64 = np.stack([tf.random.stateless_uniform([2], s, 0.0, 1.0, tf.float64, alg="philox").numpy() for s in seeds])
    np.testing.assert_array_equal(S.uniform_f64(seeds, 2, 0.0, 1.0), u64)


def test_seeds_and_boxes_equal_the_graph():
    """Every example's [8, 2] seeds and its RandomResizedCrop box equal transforms.example_seed + rrc_params, for
    image shapes from square to 1:8 (whose boxes take the centre-crop fallback)."""
    from jaxyolo.data import transforms as T

    idx = np.arange(0, 4000, 7)
    seeds = host_train.example_seeds(5, 3, idx)
    ref = np.stack([tf.random.experimental.stateless_split(T.example_seed(5, 3, int(i)), 8).numpy() for i in idx])
    np.testing.assert_array_equal(seeds, ref)
    shapes = np.array([(32, 32), (8, 64), (64, 8), (480, 640), (17, 23), (1, 1)] * 100)[: len(idx)]
    for scale in ((0.5, 1.0), (0.08, 1.0)):
        boxes = host_train.rrc_boxes(seeds[:, 0], shapes[:, 0], shapes[:, 1], scale)
        ref = np.stack([np.stack([int(v) for v in T.rrc_params(tf.constant(s), int(h), int(w), scale)])
                        for s, (h, w) in zip(seeds[:, 0], shapes)])
        np.testing.assert_array_equal(boxes, ref)


def _mixed_folder(root):
    """PNGs in every common mode (RGB, grey, palette, RGBA, grey+alpha, 16-bit grey) and 24-bit BMPs, of varied
    shapes."""
    rng = np.random.default_rng(1)
    kinds = ["RGB", "L", "P", "RGBA", "LA", "I;16", "bmp-RGB"]  # (an 8-bit BMP takes the PIL route: tf.data)
    shapes = [(24, 24), (20, 36), (40, 12), (10, 80), (33, 33)]
    for split, n in (("train", 12), ("val", 2)):
        for c in range(3):
            d = root / split / f"c{c}"
            d.mkdir(parents=True)
            for i in range(n):
                kind = kinds[(i + c) % len(kinds)]
                h, w = shapes[(i * 3 + c) % len(shapes)]
                rgba = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
                if kind == "I;16":
                    im = Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
                elif kind == "P":
                    im = Image.fromarray(rgba[..., :3]).quantize(16)
                else:
                    mode = kind.split("-")[-1]
                    im = Image.fromarray(rgba).convert(mode)
                im.save(d / f"{i}.{'bmp' if kind.startswith('bmp') else 'png'}")
    return root


def test_batches_equal_the_tf_data_route(tmp_path, monkeypatch):
    """Same images, labels and order as tf.data: two epochs, a resumed epoch, and two processes' shares."""
    ds = load_dataset(str(_mixed_folder(tmp_path / "mixed")))
    assert host_train.applies(ds, 16, AUG, cache=False)
    kw = dict(imgsz=16, batch_size=4, seed=2, aug=AUG, workers=2)
    cases = [dict(epoch=0), dict(epoch=5), dict(epoch=1, start_batch=3),
             dict(epoch=2, process_index=1, process_count=2), dict(epoch=2, process_index=0, process_count=2)]
    for case in cases:
        monkeypatch.setenv("JAXYOLO_HOST_TRAIN", "1")
        ours = list(train_batches(ds, **kw, **case))
        monkeypatch.setenv("JAXYOLO_HOST_TRAIN", "0")
        ref = list(train_batches(ds, **kw, **case))
        assert len(ours) == len(ref) > 0, case
        for (x, y), (xr, yr) in zip(ours, ref):
            assert x.dtype == xr.dtype == np.uint8 and y.dtype == yr.dtype == np.int32
            np.testing.assert_array_equal(y, yr)
            np.testing.assert_array_equal(x, xr)


def test_where_the_route_applies(tmp_path, monkeypatch):
    root = _mixed_folder(tmp_path / "png")
    ds = load_dataset(str(root))
    assert host_train.applies(ds, 32, {}, cache=False)  # Ultralytics' defaults: RandAugment on the host
    assert not host_train.applies(ds, 32, {}, cache="ram")  # the decoded cache is read by tf.data
    assert not host_train.applies(ds, 32, {"auto_augment": "autoaugment"}, cache=False)  # a TF-side policy
    monkeypatch.setenv("JAXYOLO_HOST_TRAIN", "0")
    assert not host_train.applies(ds, 32, {}, cache=False)
    monkeypatch.delenv("JAXYOLO_HOST_TRAIN")
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(root / "train" / "c0" / "x.jpg")
    assert not host_train.applies(load_dataset(str(root)), 32, {}, cache=False)  # a JPEG: tf.data decodes windows
    assert os.environ.get("JAXYOLO_HOST_TRAIN") is None


def test_pool_threads_and_chunked_batches(tmp_path, monkeypatch):
    """The pool's size follows the images' pixels (one thread for digits-sized images), and a batch made in chunks
    on several threads equals the one-thread batch, padding included."""
    from jaxyolo.data import host_eval

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    small, big = ([32] * 5, [32] * 5), ([300] * 5, [400] * 5)
    assert host_eval.pool_threads(8, *small) == 1
    assert host_eval.pool_threads(8, *big) == min(8, cores, 14)
    assert host_eval.pool_threads(1, *big) == 1
    assert host_eval.pool_threads(0, *big) == min(cores, 14)  # 0: one per core
    assert host_eval.pool_threads(8, [], []) == 1

    ds = load_dataset(str(_mixed_folder(tmp_path / "mixed")))
    kw = dict(imgsz=16, batch_size=4, seed=2, epoch=1, aug=AUG, workers=8)

    def both(make):
        out = []
        for n in (1, 3):
            monkeypatch.setattr(host_train, "pool_threads", lambda *a, n=n: n)
            monkeypatch.setattr(host_eval, "pool_threads", lambda *a, n=n: n)
            out.append(list(make()))
        return out

    one, three = both(lambda: train_batches(ds, **kw))
    assert len(one) == len(three) > 1
    for (x1, y1), (x3, y3) in zip(one, three):
        np.testing.assert_array_equal(x1, x3)
        np.testing.assert_array_equal(y1, y3)
    one, three = both(lambda: host_eval.folder_eval_batches(ds, "val", imgsz=16, batch_size=4, workers=8))
    assert len(one) == len(three) == 2 and not one[-1][2].all()  # 6 images: the last batch is padded
    for a, b in zip(one, three):
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)


def test_small_splits_are_decoded_once(tmp_path, monkeypatch):
    """A split that decodes to at most MEMO_MAX_BYTES is read and decoded once per process (the later epochs reuse
    the read-only images, and give the same batches); a larger one is read every epoch."""
    ds = load_dataset(str(_mixed_folder(tmp_path / "mixed")))
    n = ds.splits["train"]
    reads = []
    real = host_train.load
    monkeypatch.setattr(host_train, "load", lambda *a: reads.append(a[0]) or real(*a))
    kw = dict(imgsz=16, batch_size=4, seed=2, aug=AUG, workers=2)
    first = [list(train_batches(ds, epoch=e, **kw)) for e in range(3)]
    assert len(reads) == len(set(reads)) <= n and len(set(reads)) >= n - 4  # (drop_remainder: a few unused)
    monkeypatch.setattr(host_train, "MEMO_MAX_BYTES", 0)
    reads.clear()
    again = [list(train_batches(ds, epoch=e, **kw)) for e in range(3)]
    assert len(reads) == 3 * len(first[0]) * 4
    for a, b in zip(first, again):
        for (x, y), (xr, yr) in zip(a, b):
            np.testing.assert_array_equal(x, xr)
            np.testing.assert_array_equal(y, yr)
