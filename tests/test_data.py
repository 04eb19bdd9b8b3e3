"""Input pipeline (issue 4): image folders, bad files, digits, TFDS, determinism, resume, multi-host eval."""

try:  # torchvision must be imported before TensorFlow: triton's LLVM (pulled in by torchvision) and TF's clash
    import torchvision  # noqa: F401
except Exception:  # noqa: BLE001
    pass

import io
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from jaxyolo.data import DatasetError, eval_batches, load_dataset, num_train_batches, train_batches

REPO = Path(__file__).resolve().parents[1]
AUG = dict(scale=0.5, fliplr=0.5, flipud=0.0, auto_augment="randaugment", hsv_h=0.015, hsv_s=0.7, hsv_v=0.4,
           erasing=0.4)  # Ultralytics' defaults
# cheaper to trace (AutoAugment's graph is smaller than RandAugment's), for tests about something else
AUG_FAST = dict(AUG, auto_augment="autoaugment")


def natural(h, w, seed):
    """A smooth, photo-like RGB test image with some noise."""
    r = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack(
        [
            np.sin(6 * x + r.uniform(0, 6)) * 0.5 + 0.5,
            np.cos(12 * y * x + r.uniform(0, 6)) * 0.5 + 0.5,
            (x + y) / 2,
        ],
        -1,
    ) * 255 + r.normal(0, 10, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _exif(orientation):
    ex = Image.Exif()
    ex[274] = orientation
    return ex


def write_zoo(d: Path, seed=0):
    """Every supported format/mode; returns the list of written files."""
    d.mkdir(parents=True, exist_ok=True)
    a = natural(40, 56, seed)
    rgb = Image.fromarray(a)
    out = []

    def save(name, im, **kw):
        p = d / name
        im.save(p, **kw)
        out.append(p)

    save("rgb.jpg", rgb, quality=90)
    save("grey.jpeg", rgb.convert("L"), quality=90)
    save("cmyk.jpg", rgb.convert("CMYK"), quality=90)
    save("progressive.jpg", rgb, quality=80, progressive=True)
    for o in range(2, 9):
        save(f"exif{o}.jpg", rgb, quality=90, exif=_exif(o))
    save("rgb.png", rgb)
    save("rgba.png", Image.fromarray(np.dstack([a, np.full(a.shape[:2], 128, np.uint8)]), "RGBA"))
    save("palette.png", rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=64))
    save("la.png", rgb.convert("LA"))
    save("bilevel.png", rgb.convert("1"))
    save("grey16.png", Image.fromarray((a[..., 0].astype(np.uint16) * 257 + 99).astype(np.uint16)))
    save("exif6.png", rgb, exif=_exif(6))
    save("rgb.bmp", rgb)
    save("palette.bmp", rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16))
    save("rgb.webp", rgb, lossless=True)
    save("lossy.webp", rgb, quality=80)
    save("rgb.tif", rgb)
    save("grey.tiff", rgb.convert("L"), compression="tiff_lzw")
    frames = [rgb.convert("P", palette=Image.Palette.ADAPTIVE), Image.fromarray(255 - a).convert("P")]
    p = d / "anim.gif"
    frames[0].save(p, save_all=True, append_images=frames[1:], duration=100, loop=0)
    out.append(p)
    p = d / "transparent.gif"
    rgb.convert("P", palette=Image.Palette.ADAPTIVE).save(p, transparency=0)
    out.append(p)
    return out


def write_classes(root: Path, counts: dict, write) -> None:
    """Classes a and b under ``root/<split>/`` with ``counts[split]`` images each, written by ``write(dir, class,
    i)``."""
    for split, n in counts.items():
        for c in ("a", "b"):
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n):
                write(d, c, i)


def write_bad(d: Path):
    """The bad-file zoo; returns the list of bad files."""
    d.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    Image.fromarray(natural(60, 60, 7)).save(buf, "JPEG", quality=90)
    jpg = buf.getvalue()
    files = {
        "empty.jpg": b"",
        "truncated.jpg": jpg[: len(jpg) // 2],
        "text.jpg": b"this is not an image, just text renamed to .jpg\n" * 5,
    }
    for n, data in files.items():
        (d / n).write_bytes(data)
    Image.fromarray(natural(5, 5, 3)).save(d / "tiny.png")
    return [d / n for n in files] + [d / "tiny.png"]


def reference_decode(path: Path) -> np.ndarray:
    """What the pipeline must decode: Pillow, EXIF-transposed, RGB; 16-bit keeps the high byte (as OpenCV/TF)."""
    with Image.open(path) as im:
        im.seek(0)
        im = ImageOps.exif_transpose(im)
        if im.mode.startswith("I;16"):
            g = (np.asarray(im).astype(np.uint32) >> 8).astype(np.uint8)
            return np.repeat(g[:, :, None], 3, 2)
        return np.asarray(im.convert("RGB"))


@pytest.fixture(scope="module")
def datasets_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("datasets")


@pytest.fixture(scope="module")
def digits(datasets_dir):
    return load_dataset("digits", data_dir=str(datasets_dir))


# ------------------------------------------------------------------------------------------------- folders, bad files


def test_format_zoo_and_bad_files(tmp_path, caplog):
    from jaxyolo.data import decode as D

    root = tmp_path / "zoo"
    good = write_zoo(root / "train" / "a")
    (root / "train" / "b").mkdir(parents=True)
    for i in range(6):
        Image.fromarray(natural(30 + i, 20, 100 + i)).save(root / "train" / "b" / f"b{i}.png")
    bad = write_bad(root / "train" / "b")
    for c in "ab":
        (root / "val" / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(natural(24, 24 + i, 200 + i)).save(root / "val" / c / f"v{i}.jpg")
    bad.append(root / "val" / "a" / "empty.png")
    bad[-1].write_bytes(b"")

    caplog.set_level(logging.INFO, logger="jaxyolo")
    ds = load_dataset(str(root))
    assert ds.names == {0: "a", 1: "b"}
    assert ds.num_skipped == len(bad) == 5
    assert ds.splits["train"] == len(good) + 6 and ds.splits["val"] == 6
    text = caplog.text
    assert "train: 4 bad image file(s) skipped" in text and "val: 1 bad image file(s) skipped" in text
    for p in bad:
        assert str(p) in text
    skipped = {p for v in ds.skipped.values() for p, _ in v}
    assert skipped == {str(p) for p in bad}
    reasons = dict(ds.skipped["train"])
    assert "0 bytes" in reasons[str(root / "train/b/empty.jpg")]
    assert "truncated" in reasons[str(root / "train/b/truncated.jpg")]
    assert "not an image" in reasons[str(root / "train/b/text.jpg")]
    assert "too small" in reasons[str(root / "train/b/tiny.png")]

    # every valid file decodes (with the route the pipeline uses) exactly to Pillow's upright RGB
    recs = ds.records["train"]
    routes = {}
    for path, route, orient, h, w in zip(recs.files, recs.routes, recs.orients, recs.heights, recs.widths):
        img = D.decode_file(path, int(route), int(orient)).numpy()
        ref = reference_decode(Path(path))
        assert img.shape == ref.shape == (h, w, 3), path
        np.testing.assert_array_equal(img, ref, err_msg=path)
        routes[Path(path).name] = D.ROUTE_NAMES[int(route)]
        # a source whose files all take one route (and are all upright) builds the graph without control flow:
        # same pixels, whole and cropped (top 1, left 2), as the per-file switch
        box = (1, 2, int(h) - 2, int(w) - 3)
        crop = D.decode_crop_file(path, int(route), int(orient), *box).numpy()
        for static in ({"static_route": int(route)}, {"static_route": int(route), "upright": int(orient) <= 1}):
            np.testing.assert_array_equal(D.decode_file(path, int(route), int(orient), **static).numpy(), ref,
                                          err_msg=f"{path} {static}")
            np.testing.assert_array_equal(D.decode_crop_file(path, int(route), int(orient), *box, **static).numpy(),
                                          crop, err_msg=f"{path} {static}")
    assert routes["rgb.jpg"] == routes["exif6.jpg"] == routes["grey.jpeg"] == "jpeg"
    assert routes["cmyk.jpg"] == routes["rgb.webp"] == routes["rgb.tif"] == routes["transparent.gif"] == "pil"
    assert routes["grey16.png"] == routes["palette.png"] == "png"
    assert routes["rgb.bmp"] == "bmp" and routes["anim.gif"] == "gif"

    # a whole train + eval pass completes, eval counts each valid image once
    n = 0
    for x, y in train_batches(ds, imgsz=32, batch_size=8, seed=0, epoch=0, aug=AUG_FAST):
        assert x.shape == (8, 32, 32, 3) and x.dtype == np.uint8 and y.dtype == np.int32
        n += len(y)
    assert n == num_train_batches(ds, 8) * 8
    seen = sum(int(m.sum()) for _, _, m in eval_batches(ds, "val", imgsz=32, batch_size=4))
    assert seen == 6

    # the rescan is skipped (cache hit) but bad files are still reported
    assert (root / "train.jaxyolo.cache.json").is_file() and (root / "val.jaxyolo.cache.json").is_file()
    caplog.clear()
    ds2 = load_dataset(str(root))
    assert "scanned" not in caplog.text and str(bad[0]) in caplog.text
    assert ds2.splits == ds.splits and ds2.records["train"].files == recs.files
    # touching a file invalidates the cache
    os.utime(good[0], ns=(1, 1))
    caplog.clear()
    load_dataset(str(root))
    assert "train: scanned" in caplog.text and "val: scanned" not in caplog.text


def _mkclasses(root: Path, classes, n=3, size=(16, 16)):
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(natural(*size, hash((c, i)) % 1000)).save(root / c / f"{i}.png")


def test_layout_errors(tmp_path):
    # not a folder
    with pytest.raises(DatasetError, match="not found"):
        load_dataset(str(tmp_path / "nope"))
    # empty class
    r = tmp_path / "empty_class"
    _mkclasses(r / "train", "ab")
    _mkclasses(r / "val", "ab")
    (r / "train" / "c").mkdir()
    with pytest.raises(DatasetError, match=r"empty class.*'c'") as e:
        load_dataset(str(r))
    assert str(r / "train") in str(e.value)
    # missing validation split
    r = tmp_path / "noval"
    _mkclasses(r / "train", "ab")
    with pytest.raises(DatasetError, match="missing split") as e:
        load_dataset(str(r))
    assert str(r) in str(e.value)
    # missing train split
    r = tmp_path / "notrain"
    _mkclasses(r / "val", "ab")
    with pytest.raises(DatasetError, match="missing split"):
        load_dataset(str(r))
    # class mismatch between splits
    r = tmp_path / "mismatch"
    _mkclasses(r / "train", "abc")
    _mkclasses(r / "val", "abd")
    with pytest.raises(DatasetError, match=r"do not match.*missing in val/: \['c'\].*not in train/: \['d'\]") as e:
        load_dataset(str(r))
    assert str(r / "val") in str(e.value)
    # a train class whose files are all bad
    r = tmp_path / "allbad"
    _mkclasses(r / "train", "ab")
    _mkclasses(r / "val", "ab")
    (r / "train" / "c").mkdir()
    (r / "train" / "c" / "x.jpg").write_bytes(b"")
    with pytest.raises(DatasetError, match="no valid image"):
        load_dataset(str(r))
    # val <-> test fallback
    r = tmp_path / "testonly"
    _mkclasses(r / "train", "ab")
    _mkclasses(r / "test", "ab", n=2)
    ds = load_dataset(str(r))
    assert ds.splits == {"train": 6, "test": 4, "val": 4} and ds.resolve_split("val") == "test"
    assert sum(int(m.sum()) for *_, m in eval_batches(ds, "val", imgsz=16, batch_size=3)) == 4
    # bad fraction, bad data argument
    with pytest.raises(DatasetError):
        load_dataset(str(r), fraction=0)
    with pytest.raises(DatasetError, match="not prepared|not found"):
        load_dataset("tfds:surely_not_a_dataset_xyz", data_dir=str(tmp_path))


def test_auto_split_and_fraction(tmp_path):
    r = tmp_path / "flat"
    _mkclasses(r, "abc", n=10)
    before = sorted(p.relative_to(r) for p in r.rglob("*") if p.is_file())
    ds = load_dataset(str(r))
    assert ds.splits["train"] == 24 and ds.splits["val"] == 6  # 80/20 per class
    for c in range(3):
        assert (ds.records["val"].labels == c).sum() == 2
    assert not set(ds.records["train"].files) & set(ds.records["val"].files)
    ds2 = load_dataset(str(r))
    assert ds2.records["val"].files == ds.records["val"].files  # reproducible
    after = sorted(p.relative_to(r) for p in r.rglob("*") if p.is_file() and "jaxyolo" not in p.name)
    assert after == before  # no file moved
    ds3 = load_dataset(str(r), fraction=0.5)
    assert ds3.splits["train"] == 12 and ds3.splits["val"] == 6
    assert load_dataset(str(r), fraction=7).splits["train"] == 7  # an image count (Ultralytics 8.4)
    assert load_dataset(str(r), fraction=1000).splits["train"] == 24 and load_dataset(str(r), fraction=1).splits[
        "train"] == 24
    for bad in (0, 1.5, -3, True, [0.5, 1.0]):
        with pytest.raises(DatasetError, match=r"fraction=.* is invalid: expected a ratio in \(0, 1\] .* or an image "
                                               r"count > 1"):
            load_dataset(str(r), fraction=bad)


@pytest.mark.ultralytics
@pytest.mark.parametrize("fraction", [0.3, 7, 1000])
def test_fraction_keeps_the_images_ultralytics_keeps(tmp_path, fraction):
    """``fraction`` as a ratio or an image count keeps exactly the training images Ultralytics' ClassificationDataset
    keeps (the real package, same folder)."""
    uds = pytest.importorskip("ultralytics.data.dataset")
    from ultralytics.cfg import get_cfg

    r = tmp_path / "ds"
    _mkclasses(r / "train", "abc", n=9)
    _mkclasses(r / "val", "abc", n=2)
    theirs = uds.ClassificationDataset(str(r / "train"), get_cfg(overrides={"fraction": fraction, "imgsz": 16}),
                                       augment=True, prefix="train")
    ours = load_dataset(str(r), fraction=fraction).records["train"]
    assert [Path(f).resolve() for f in ours.files] == [Path(s[0]).resolve() for s in theirs.samples]


# ------------------------------------------------------------------------------------------------------------ digits


def test_digits(datasets_dir, digits, caplog):
    ds = digits
    assert ds.nc == 10 and ds.names == {i: str(i) for i in range(10)}
    assert ds.splits["train"] + ds.splits["val"] == 1797 and ds.splits["val"] == 360
    counts_val = np.bincount(ds.records["val"].labels, minlength=10)
    counts_all = counts_val + np.bincount(ds.records["train"].labels, minlength=10)
    np.testing.assert_allclose(counts_val / counts_all, 0.2, atol=0.02)  # stratified
    root = datasets_dir / "digits"
    pngs = sorted(root.rglob("*.png"))
    assert len(pngs) == 1797
    im = Image.open(pngs[0])
    assert im.size == (32, 32) and im.mode == "L"
    # the pixels are sklearn's digit, values*255/16, upscaled to 32x32 as digits.py documents
    from sklearn.datasets import load_digits

    from jaxyolo.data import digits as dg

    idx = int(pngs[0].stem)
    ref = Image.fromarray(np.round(load_digits().images[idx] * 255 / 16).astype(np.uint8), "L")
    meta = json.loads((root / ".complete").read_text())
    ref = ref.resize((dg.SIZE, dg.SIZE), Image.BILINEAR if meta.get("resize") == "bilinear" else Image.NEAREST)
    np.testing.assert_array_equal(np.asarray(im), np.asarray(ref))
    # a second load does not rewrite anything
    mtimes = {p: p.stat().st_mtime_ns for p in pngs}
    caplog.set_level(logging.INFO, logger="jaxyolo")
    load_dataset("digits", data_dir=str(datasets_dir))
    assert "wrote" not in caplog.text and "scanned" not in caplog.text
    assert all(p.stat().st_mtime_ns == t for p, t in mtimes.items())
    assert not [p for p in datasets_dir.iterdir() if p.name.startswith(".digits.tmp")]


def test_scanned_folder_loads_without_tensorflow(datasets_dir, digits):
    """Resolving a folder whose scan is cached stays TensorFlow-free, and so do the training batches of a PNG folder
    (host_train.py); tf.data, and TensorFlow with it, is imported on first use by a route that needs it (here the
    decoded RAM cache)."""
    code = textwrap.dedent(f"""
        import sys
        import jaxyolo.data as D
        ds = D.load_dataset("digits", data_dir={str(datasets_dir)!r})
        assert D.num_train_batches(ds, 64) == {digits.splits['train'] // 64}
        assert "tensorflow" not in sys.modules, "load_dataset imported TensorFlow"
        next(iter(D.train_batches(ds, imgsz=32, batch_size=64, seed=0, epoch=0, aug={{}})))
        assert "tensorflow" not in sys.modules, "the host train route imported TensorFlow"
        next(iter(D.train_batches(ds, imgsz=32, batch_size=64, seed=0, epoch=0, aug={{}}, cache="ram")))
        assert "tensorflow" in sys.modules
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]


def test_digits_env_and_atomic(tmp_path, monkeypatch):
    from jaxyolo.data import digits as dg

    monkeypatch.setenv("JAXYOLO_DATASETS_DIR", str(tmp_path))
    (tmp_path / ".digits.tmp-leftover").mkdir()  # an interrupted earlier attempt is ignored
    import cv2

    def boom(*args):
        raise KeyboardInterrupt  # interrupted mid-way, files being written: nothing left behind

    with monkeypatch.context() as m:
        m.setattr(cv2, "imwrite", boom)
        with pytest.raises(KeyboardInterrupt):
            load_dataset("digits")
    assert not (tmp_path / "digits").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".digits.tmp-leftover"]
    ds = load_dataset("digits")
    assert ds.root == str(tmp_path / "digits") and (tmp_path / "digits" / ".complete").is_file()


def test_digits_split_is_sklearns(monkeypatch):
    """digits.py reads scikit-learn's bundled digits file itself and keeps the split as a constant (importing
    scikit-learn cost ~0.6 s of a first run): the same images, labels and split as ``load_digits()`` and
    ``train_test_split(test_size=0.2, stratify=y, random_state=0)``, also through its fallback to ``load_digits()``."""
    import importlib.util

    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from jaxyolo.data import digits as dg

    d = load_digits()
    tr, va = train_test_split(np.arange(len(d.target)), test_size=dg.VAL_FRACTION, stratify=d.target,
                              random_state=dg.SEED)
    want = (np.round(d.images * (255.0 / 16.0)).astype(np.uint8), d.target, np.sort(tr), np.sort(va))
    for fallback in (False, True):
        if fallback:
            monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
        got = dg.digits_split()
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)
    code = "import sys; from jaxyolo.data import digits; digits.digits_split(); assert 'sklearn' not in sys.modules"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]


def test_digits_scan_cache_is_the_scans(tmp_path, caplog):
    """materialize() writes the scan caches of the folder it made (record_scan): the first load scans nothing, and
    its records equal those of a real scan of the same files."""
    import dataclasses

    caplog.set_level(logging.INFO, logger="jaxyolo")
    ds = load_dataset("digits", data_dir=str(tmp_path))
    assert "wrote" in caplog.text and "scanned" not in caplog.text
    root = tmp_path / "digits"
    for cache in root.glob("*.jaxyolo.cache.json"):
        cache.unlink()
    caplog.clear()
    again = load_dataset("digits", data_dir=str(tmp_path))
    assert caplog.text.count("scanned") == 2
    for split in ("train", "val"):
        a, b = ds.records[split], again.records[split]
        for f in dataclasses.fields(a):
            x, y = getattr(a, f.name), getattr(b, f.name)
            assert np.array_equal(np.asarray(x), np.asarray(y)), (split, f.name)


def test_digits_first_run_reads_memory_while_a_child_writes(tmp_path, caplog):
    """The trainer's ``files_in_background=True``: on the run that makes the digits folder, ``load_dataset`` returns
    before the files exist, with records equal to a scan of the folder written afterwards and images equal to those
    files' decoded pixels; training and validation batches come from memory, identical to the files' batches;
    readers of the files (tf.data, caches) wait for them; a failed write is a DatasetError naming the folder."""
    import dataclasses
    from concurrent.futures import Future

    from jaxyolo.data import host_eval, host_train

    caplog.set_level(logging.INFO, logger="jaxyolo")
    ds = load_dataset("digits", data_dir=str(tmp_path), files_in_background=True)
    assert ds.files_pending is not None and all(r.images is not None for r in ds.records.values())
    kw = dict(imgsz=32, batch_size=64, seed=3, epoch=1, aug=AUG)
    mem_train = [b for _, b in zip(range(2), train_batches(ds, **kw))]
    mem_val = list(eval_batches(ds, "val", imgsz=32, batch_size=128))
    ds.wait_files()
    assert ds.files_pending is None and (tmp_path / "digits" / ".complete").is_file()
    assert "digits: wrote 1437 train + 360 val" in caplog.text
    scanned = load_dataset("digits", data_dir=str(tmp_path))
    assert (scanned.names, scanned.nc, scanned.splits, scanned.aliases, scanned.root) == \
        (ds.names, ds.nc, ds.splits, ds.aliases, ds.root)
    for split in ("train", "val"):
        a, b = ds.records[split], scanned.records[split]
        assert b.images is None
        for f in dataclasses.fields(a):
            if f.name != "images":
                assert np.array_equal(np.asarray(getattr(a, f.name)), np.asarray(getattr(b, f.name))), (split, f.name)
        for i in (0, 1, 300, len(a) - 1):
            np.testing.assert_array_equal(a.images[i], host_train.load(a.files[i]))
            np.testing.assert_array_equal(a.images[i], host_eval.read_rgb(a.files[i]))
    for (x0, y0), (x1, y1) in zip(mem_train, train_batches(scanned, **kw)):
        np.testing.assert_array_equal(x0, x1)
        np.testing.assert_array_equal(y0, y1)
    for u, v in zip(mem_val, eval_batches(scanned, "val", imgsz=32, batch_size=128)):
        for p, q in zip(u, v):
            np.testing.assert_array_equal(p, q)
    failed = Future()
    failed.set_exception(OSError("No space left on device"))
    ds.files_pending = failed
    with pytest.raises(DatasetError, match=r"image folder .*digits could not be written: No space left"):
        next(iter(train_batches(ds, cache="ram", **kw)))  # a reader of the files


def test_digits_background_write_timeout(tmp_path, monkeypatch):
    """A background digits write that does not finish is killed and reported (naming the folder), its partial
    folder removed: never a run that waits forever."""
    from jaxyolo.data import digits

    monkeypatch.setattr(digits, "WRITE_TIMEOUT_S", 0.01)
    tmp, root = tmp_path / ".digits.tmp", tmp_path / "digits"
    tmp.mkdir()
    with pytest.raises(OSError, match=r"writing .*digits did not finish in 0.01 s"):
        digits._write_in_child(tmp, root)
    assert not tmp.exists() and not root.exists()


# --------------------------------------------------------------------------------------- determinism, resume, caching


def test_resume_and_multihost_train(digits):
    ds = digits
    kw = dict(imgsz=32, batch_size=64, seed=3, epoch=2, aug=AUG)
    full = list(train_batches(ds, **kw))
    assert len(full) == num_train_batches(ds, 64) == 1437 // 64
    k = 17
    resumed = list(train_batches(ds, start_batch=k, **kw))
    assert len(resumed) == len(full) - k
    for (x0, y0), (x1, y1) in zip(full[k:], resumed):
        np.testing.assert_array_equal(x0, x1)
        np.testing.assert_array_equal(y0, y1)
    # 2 hosts: host p gets the p-th half of every global batch, augmented identically
    h0 = list(train_batches(ds, process_index=0, process_count=2, start_batch=20, **kw))
    h1 = list(train_batches(ds, process_index=1, process_count=2, start_batch=20, **kw))
    assert len(h0) == len(h1) == 2
    for (xa, ya), (xb, yb), (x, y) in zip(h0, h1, full[20:]):
        np.testing.assert_array_equal(np.concatenate([xa, xb]), x)
        np.testing.assert_array_equal(np.concatenate([ya, yb]), y)
    # another epoch or seed gives other batches; every image of the epoch is used at most once
    other = next(train_batches(ds, **{**kw, "epoch": 3}))
    assert not np.array_equal(other[0], full[0][0])


@pytest.mark.parametrize("policy", ["randaugment", ""])  # both host-augmented: one Python call per batch
def test_batched_host_augmentation_is_the_per_example_transform(digits, policy):
    """The pipeline augments its crops one batch per call (ragged batch -> ``host_augment.augment_batch``); each
    image must be exactly what the one-example ``train_transform`` gives for that example's seed."""
    from jaxyolo.data import transforms as T
    from jaxyolo.data._tf import tf

    aug = dict(AUG, auto_augment=policy, hsv_h=0, hsv_s=0, hsv_v=0)
    seed, epoch, b = 5, 1, 16
    x, y = next(train_batches(digits, imgsz=(24, 32), batch_size=b, seed=seed, epoch=epoch, aug=aug))
    assert x.shape == (b, 24, 32, 3) and x.dtype == np.uint8
    recs = digits.records["train"]
    perm = np.random.default_rng(np.random.SeedSequence([seed, epoch])).permutation(len(recs.files))[:b]
    for j, i in enumerate(perm):
        img = tf.constant(np.asarray(Image.open(recs.files[i]).convert("RGB")))
        h, w = int(img.shape[0]), int(img.shape[1])
        k = T.example_seed(seed, epoch, int(i))
        one = T.train_transform(lambda t, l, ch, cw: img[t : t + ch, l : l + cw], h, w, k, (24, 32), aug)
        np.testing.assert_array_equal(x[j], one.numpy(), err_msg=f"example {i}")
        assert y[j] == recs.labels[i]
    assert len({im.tobytes() for im in x}) == b


def test_cache_modes_identical(digits):
    aug = dict(scale=0.5, fliplr=0.5, auto_augment="", hsv_h=0, hsv_s=0, hsv_v=0, erasing=0.4)  # cheap to trace
    kw = dict(imgsz=32, batch_size=32, seed=1, epoch=0, aug=aug)
    base = [b for _, b in zip(range(2), train_batches(digits, **kw))]
    ev = [b for _, b in zip(range(2), eval_batches(digits, "val", imgsz=32, batch_size=32))]
    for cache in ("ram", "disk"):
        got = [b for _, b in zip(range(2), train_batches(digits, cache=cache, **kw))]
        for (x0, y0), (x1, y1) in zip(base, got):
            np.testing.assert_array_equal(x0, x1)
            np.testing.assert_array_equal(y0, y1)
        got = [b for _, b in zip(range(2), eval_batches(digits, "val", imgsz=32, batch_size=32, cache=cache))]
        for a, b in zip(ev, got):
            for u, v in zip(a, b):
                np.testing.assert_array_equal(u, v)
    assert (Path(digits.root) / ".jaxyolo-decoded").is_dir()


SEED_SCRIPT = textwrap.dedent(
    """
    import hashlib, sys
    from jaxyolo.data import load_dataset, train_batches
    ds = load_dataset("digits", data_dir=sys.argv[1])
    aug = dict(scale=0.5, fliplr=0.5, auto_augment=sys.argv[4], erasing=0.4)
    h = hashlib.sha256()
    it = train_batches(ds, imgsz=32, batch_size=16, seed=int(sys.argv[2]), epoch=0, aug=aug,
                       workers=int(sys.argv[3]))
    for i, (x, y) in zip(range(3), it):  # `it` stays alive, unfinished, until the interpreter exits
        h.update(x.tobytes()); h.update(y.tobytes())
    print("HASH", h.hexdigest())
    """
)


def _start(script, *args, env=None):
    e = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    return subprocess.Popen([sys.executable, "-c", script, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=e, cwd=REPO)


def _wait(proc, timeout=600):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return out


def _run(script, *args, env=None):
    return _wait(_start(script, *args, env=env))


@pytest.mark.parametrize("policy", ["randaugment", "autoaugment"])  # the Pillow (host) path and the TF-op path
def test_same_seed_same_batches_across_processes(datasets_dir, digits, policy):
    """Also: each script exits with its train iterator unfinished (the shutdown path of ``pipeline._numpy_iter``).
    The hang that path fixes was reproduced with 224 px crops of larger JPEGs, not with these tiny digits, so this
    only guards the path from erroring or stalling."""
    pa = _start(SEED_SCRIPT, datasets_dir, 7, 0, policy)
    pb = _start(SEED_SCRIPT, datasets_dir, 7, 1, policy)  # another process, another thread count
    a, b = _wait(pa, timeout=240), _wait(pb, timeout=240)
    ha = [ln for ln in a.splitlines() if ln.startswith("HASH")]
    hb = [ln for ln in b.splitlines() if ln.startswith("HASH")]
    assert len(ha) == 1 and ha == hb


# ------------------------------------------------------------------------------------------- exactly-once eval, 8 devs

EVAL_SCRIPT = textwrap.dedent(
    """
    import hashlib, json, sys
    import numpy as np
    import jax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from PIL import Image
    from jaxyolo.data import load_dataset, eval_batches
    from jaxyolo.data.host_eval import classify_transform
    assert jax.device_count() == 8, jax.devices()
    ds = load_dataset(sys.argv[1])
    n_proc, global_batch = 2, 64
    seen, total_mask, nbatches = [], 0, []
    for p in range(n_proc):  # simulated process p owns devices 4p..4p+3
        mesh = Mesh(np.array(jax.devices()[4 * p: 4 * p + 4]), ("data",))
        sh = NamedSharding(mesh, P("data"))
        nb = 0
        for x, y, m in eval_batches(ds, "val", imgsz=24, batch_size=global_batch, process_index=p,
                                    process_count=n_proc):
            assert x.shape == (global_batch // n_proc, 24, 24, 3) and x.dtype == np.uint8 and m.dtype == bool
            xs = jax.device_put(x, sh)  # the host batch splits evenly over its 4 devices
            assert len(xs.addressable_shards) == 4 and xs.addressable_shards[0].data.shape[0] == 8
            total_mask += int(m.sum())
            for xi, yi in zip(x[m], y[m]):
                seen.append((int(yi), hashlib.sha1(xi.tobytes()).hexdigest()))
            nb += 1
        nbatches.append(nb)
    recs = ds.records["val"]
    expected = []
    for f, lab in zip(recs.files, recs.labels):
        img = classify_transform(np.asarray(Image.open(f).convert("RGB")), 24)  # Ultralytics' eval transform
        expected.append((int(lab), hashlib.sha1(img.tobytes()).hexdigest()))
    print(json.dumps(dict(total_mask=total_mask, n=len(recs), nbatches=nbatches, distinct=len(set(seen)),
                          same=sorted(seen) == sorted(expected))))
    """
)


def test_eval_exactly_once_8_devices(tmp_path):
    root = tmp_path / "thousand"
    rng = np.random.default_rng(0)
    for split, n in (("train", 30), ("val", 1001)):
        for i in range(n):
            c = "abc"[i % 3]
            (root / split / c).mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (10 + i % 7, 12, 3), dtype=np.uint8)).save(
                root / split / c / f"{i}.png")
    out = _run(EVAL_SCRIPT, root, env={"XLA_FLAGS": "--xla_force_host_platform_device_count=8",
                                       "JAX_PLATFORMS": "cpu"})
    res = json.loads(out.strip().splitlines()[-1])
    assert res == dict(total_mask=1001, n=1001, nbatches=[16, 16], distinct=1001, same=True)


# -------------------------------------------------------------------------------------------------------------- TFDS


def _make_tiny_tfds(data_dir: Path):
    import tensorflow_datasets as tfds

    class TinyCls(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                features=tfds.features.FeaturesDict(
                    {"image": tfds.features.Image(shape=(None, None, 3)),
                     "label": tfds.features.ClassLabel(names=["cat", "dog", "owl"])}
                ),
                supervised_keys=("image", "label"),
            )

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(0, 70), "test": self._generate_examples(1, 23)}

        def _generate_examples(self, seed, n):
            for i in range(n):
                yield i, {"image": natural(12 + i % 9, 14 + i % 5, seed * 1000 + i), "label": i % 3}

    TinyCls(data_dir=str(data_dir)).download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False))


def test_tfds_source(tmp_path):
    _make_tiny_tfds(tmp_path)
    ds = load_dataset("tfds:tiny_cls:1.0.0", data_dir=str(tmp_path))
    assert ds.kind == "tfds" and ds.names == {0: "cat", 1: "dog", 2: "owl"} and ds.nc == 3
    assert ds.splits == {"train": 70, "test": 23, "val": 23}
    kw = dict(imgsz=16, batch_size=8, seed=5, epoch=1, aug=AUG_FAST)
    full = list(train_batches(ds, **kw))
    assert len(full) == num_train_batches(ds, 8) == 8
    assert full[0][0].shape == (8, 16, 16, 3) and full[0][0].dtype == np.uint8
    again = list(train_batches(ds, **kw))
    resumed = list(train_batches(ds, start_batch=5, **kw))
    for (a, ya), (b, yb) in zip(full, again):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(ya, yb)
    for (a, ya), (b, yb) in zip(full[5:], resumed):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(ya, yb)
    # per-host split (tfds.split_for_jax_process): equal train batch counts on both hosts
    hosts = [list(train_batches(ds, process_index=p, process_count=2, **kw)) for p in range(2)]
    assert [len(h) for h in hosts] == [8, 8] and hosts[0][0][0].shape[0] == 4
    # eval: each test example exactly once over 2 hosts, uncached and cached
    for cache in (False, "ram"):
        labels, n_mask, nbs = [], 0, []
        for p in range(2):
            batches = list(eval_batches(ds, "val", imgsz=16, batch_size=6, process_index=p, process_count=2,
                                        cache=cache))
            nbs.append(len(batches))
            for x, y, m in batches:
                n_mask += int(m.sum())
                labels += y[m].tolist()
        assert n_mask == 23 and nbs[0] == nbs[1] == 4
        assert sorted(labels) == sorted([i % 3 for i in range(23)])
    cached = list(train_batches(ds, cache="ram", **kw))
    assert len(cached) == 8 and cached[0][0].shape == (8, 16, 16, 3)


def test_read_only_dataset_caches_elsewhere(tmp_path, monkeypatch):
    """A dataset folder we may not write to (a shared/read-only mount): the scan cache and the decoded-image disk
    cache go to $JAXYOLO_CACHE_DIR, nothing is written under the dataset, and a second load hits the moved cache.
    (Tests run as root, where chmod does not stop writes, so the permission probe is what gets patched.)"""
    from jaxyolo.data import folders

    root = tmp_path / "ro"
    write_classes(root, {"train": 8, "val": 4},
                  lambda d, c, i: Image.fromarray(natural(24, 24, i + 100 * (c == "b"))).save(d / f"{i}.png"))
    before = sorted(str(p) for p in root.rglob("*"))
    cache = tmp_path / "cache"
    monkeypatch.setenv("JAXYOLO_CACHE_DIR", str(cache))
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, *a, **k: False if str(p).startswith(str(root)) and mode & os.W_OK
                        else real_access(p, mode, *a, **k))
    ds = load_dataset(str(root))
    assert ds.splits["train"] == 16 and ds.splits["val"] == 8
    aug = dict(scale=0.5, fliplr=0.5, auto_augment="", hsv_h=0, hsv_s=0, hsv_v=0, erasing=0.0)
    x, y = next(iter(train_batches(ds, imgsz=16, batch_size=8, seed=0, epoch=0, aug=aug, cache="disk")))
    assert x.shape == (8, 16, 16, 3)
    assert sorted(str(p) for p in root.rglob("*")) == before  # nothing written under the read-only dataset
    scans = sorted((cache / "scans").glob("*.jaxyolo.cache.json"))
    assert len(scans) == 2, scans  # train and val
    assert any((cache / "decoded").iterdir())
    calls = []
    monkeypatch.setattr(folders, "_write_cache", lambda *a, **k: calls.append(a), raising=False)
    assert load_dataset(str(root)).splits == ds.splits
    assert not calls  # the second load read the moved scan cache


def test_png_bmp_folder_scan_imports_no_tensorflow_and_keeps_rejecting_broken_files(tmp_path):
    """PNG/BMP files are verified with OpenCV, the decoder that reads them for training (TensorFlow's import alone
    took 2.3 s of a first digits run): a folder of them scans without importing TensorFlow, with the sizes Pillow
    reads; truncated PNG/BMP files still end up skipped with their reason (OpenCV fails them, then TF and Pillow)."""
    root = tmp_path / "ds"

    def write(d, c, i):
        Image.fromarray(natural(20 + i, 30 + 2 * i, i)).save(d / f"{i}.png")
        Image.fromarray(natural(25, 17 + i, i + 9)).save(d / f"{i}.bmp")

    write_classes(root, {"train": 3, "val": 2}, write)
    code = textwrap.dedent(f"""
        import sys
        from jaxyolo.data import load_dataset
        ds = load_dataset({str(root)!r})
        r = ds.records["train"]
        print(ds.splits["train"], ds.splits["val"], "tensorflow" in sys.modules,
              sorted(set(zip(r.heights.tolist(), r.widths.tolist()))))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[:3] == ["12", "8", "False"], out.stdout
    assert "(20, 30), (21, 32), (22, 34), (25, 17), (25, 18), (25, 19)" in out.stdout

    png, bmp = io.BytesIO(), io.BytesIO()
    Image.fromarray(natural(40, 40, 1)).save(png, "PNG")
    Image.fromarray(natural(40, 40, 2)).save(bmp, "BMP")
    (root / "train/a/cut.png").write_bytes(png.getvalue()[: len(png.getvalue()) // 2])
    (root / "train/b/cut.bmp").write_bytes(bmp.getvalue()[: len(bmp.getvalue()) // 2])
    ds = load_dataset(str(root))
    reasons = dict(ds.skipped["train"])
    assert set(reasons) == {str(root / "train/a/cut.png"), str(root / "train/b/cut.bmp")}, reasons
    assert all("truncated" in r or "corrupt" in r for r in reasons.values()), reasons
    assert ds.splits["train"] == 12
