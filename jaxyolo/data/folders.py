"""Image-folder datasets in Ultralytics' layout: scan, verify, cache the scan, resolve splits.

Layout (as Ultralytics' ``check_cls_dataset``)::

    root/train/<class>/*.jpg       class names = sorted sub-folders of train/ (hidden folders ignored)
    root/val|validation|valid/<class>/*
    root/test/<class>/*            optional; 'val' falls back to 'test' and vice versa

A folder of class sub-folders without ``train/`` is split 80/20 per class, reproducibly and without touching the
files (the split lives in the file lists): within a class, valid images are ordered by the SHA-1 of their relative
path and the first ``round(0.2 n)`` (at least 1 when n >= 2) go to val.

Verification (once per file list; result cached): every file is opened with Pillow (header: format, mode, size,
EXIF orientation), files smaller than 10 px a side are rejected, then every file is *fully decoded with the decoder
the pipeline will use* (OpenCV for PNG/BMP, whose pixels equal TF's (``host_train``); TF for JPEG/GIF and for a
PNG/BMP OpenCV cannot read; Pillow otherwise; see ``decode``), so nothing that passes can crash training and nothing
broken is trained on. Bad files (0-byte, truncated, not an image, too small) are skipped and
logged (logger ``jaxyolo``) with their path and reason, every time the dataset is loaded.

The scan cache is ``<root>/<split>.jaxyolo.cache.json``, keyed by the SHA-256 of (relative path, size, mtime_ns) of
every candidate file; if the dataset folder is read-only it goes to ``$JAXYOLO_CACHE_DIR`` (default
``~/.cache/jaxyolo``)/scans/.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from jaxyolo.data import routes as R
from jaxyolo.data.dataset import LOGGER, Dataset, DatasetError, SplitRecords

IMG_EXTS = frozenset(
    "avif bmp dng gif heic heif jfif jp2 jpe jpeg jpg mpo pbm pgm png pnm ppm tif tiff webp".split()
)  # Ultralytics' IMG_FORMATS + gif/jfif/jpe/netpbm
MIN_SIZE = 10  # Ultralytics: both sides > 9 px
CACHE_VERSION = 1
VAL_NAMES = ("val", "validation", "valid")
_SCAN_THREADS = 8


def cache_dir() -> Path:
    return Path(os.environ.get("JAXYOLO_CACHE_DIR") or Path.home() / ".cache" / "jaxyolo")


def _is_writable(d: Path) -> bool:
    return d.is_dir() and os.access(d, os.W_OK | os.X_OK)


def _class_dirs(d: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(d) if e.is_dir() and not e.name.startswith("."))


def _list_files(class_dir: Path) -> list[tuple[str, int, int]]:
    """(path, size, mtime_ns) of image-extension files under class_dir (recursive, sorted, hidden skipped)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in sorted(filenames):
            if fn.startswith(".") or fn.rpartition(".")[-1].lower() not in IMG_EXTS:
                continue
            p = os.path.join(dirpath, fn)
            try:
                st = os.stat(p)
            except OSError:
                continue
            out.append((p, st.st_size, st.st_mtime_ns))
    return out


# -------------------------------------------------------------------------------------------------------- inspection


def _bmp_tf_ok(path: str) -> bool:
    """Uncompressed 24-bit BMP with a BITMAPINFOHEADER-or-later header: what tf.io.decode_bmp reads exactly."""
    try:
        with open(path, "rb") as f:
            hdr = f.read(34)
        if len(hdr) < 34 or hdr[:2] != b"BM":
            return False
        dib = struct.unpack("<I", hdr[14:18])[0]
        bpp = struct.unpack("<H", hdr[28:30])[0]
        comp = struct.unpack("<I", hdr[30:34])[0]
        return dib >= 40 and bpp == 24 and comp == 0
    except OSError:
        return False


def inspect_file(path: str, size: int):
    """Header check. Returns (ok, info): info = (h, w, route, orient) upright, or the reason it is bad."""
    from PIL import Image, UnidentifiedImageError

    if size == 0:
        return False, "empty file (0 bytes)"
    try:
        with Image.open(path) as im:
            fmt, mode = im.format, im.mode
            w, h = im.size
            try:
                orient = int(im.getexif().get(274, 1) or 1)
            except Exception:
                orient = 1
            if orient < 1 or orient > 8:
                orient = 1
            transparency = "transparency" in im.info
            tile = im.tile[0][1] if getattr(im, "tile", None) else None
            full_frame = tile is not None and tuple(tile) == (0, 0, im.size[0], im.size[1])
    except UnidentifiedImageError:
        return False, "not an image (Pillow cannot identify the file)"
    except Exception as e:  # noqa: BLE001  (e.g. a plugin registered by another package fails on it)
        return False, f"not an image Pillow can open ({type(e).__name__}: {e})"
    if orient >= 5:
        w, h = h, w
    if w < MIN_SIZE or h < MIN_SIZE:
        return False, f"image too small ({w}x{h} px, need at least {MIN_SIZE} px a side)"
    if fmt in ("JPEG", "MPO") and mode in ("L", "RGB", "YCbCr"):
        route = R.JPEG
    elif fmt == "PNG":
        route = R.PNG
    elif fmt == "BMP" and mode == "RGB" and _bmp_tf_ok(path):
        route = R.BMP
    elif fmt == "GIF" and not transparency and full_frame:
        route = R.GIF
    else:
        route = R.PIL
    if route == R.PIL:
        orient = 1  # pil_load applies EXIF orientation itself
    return True, (h, w, route, orient)


def _verify_tf(paths, routes, orients):
    """Decode with the TF decoders (in parallel, via tf.data); returns {i: (h, w)} for the files that decode."""
    if not paths:  # (before the imports: a folder with nothing for TF must not import TensorFlow)
        return {}
    from jaxyolo.data import decode as D
    from jaxyolo.data._tf import dataset_options, parallel_calls, tf

    ds = tf.data.Dataset.from_tensor_slices(
        (np.arange(len(paths), dtype=np.int64), np.array(paths, dtype=object), np.array(routes, np.int32),
         np.array(orients, np.int32))
    )

    def f(i, p, r, o):
        return i, tf.shape(D.decode_file(p, r, o))[:2]

    ds = ds.map(f, num_parallel_calls=parallel_calls(0), deterministic=False).ignore_errors(log_warning=False)
    ds = ds.with_options(dataset_options())  # (the map's deterministic=False still applies)
    return {int(i): (int(s[0]), int(s[1])) for i, s in ds.as_numpy_iterator()}


def _verify_host(path, orient):
    """(h, w) of a PNG/BMP file as OpenCV decodes it upright (``host_train.load``, the decoder that reads these files
    for training on the host; its pixels equal TF's, tested), or None where it cannot: TF then has its say
    (``_verify_tf``). Scanning a folder of PNG/BMP files imports no TensorFlow this way (TF's import alone took
    2.3 s on the 2-core VM, its decode of the digits train split 0.5 s; OpenCV's 0.08 s)."""
    from jaxyolo.data.host_train import load

    try:
        return load(path, orient).shape[:2]
    except Exception:  # noqa: BLE001  (any failure: let TF and then Pillow try, and give the reason)
        return None


def _verify_pil(path):
    from jaxyolo.data.decode import pil_load

    try:
        a = pil_load(path)
        return True, (a.shape[0], a.shape[1])
    except Exception as e:  # noqa: BLE001
        return False, f"corrupt or truncated image ({type(e).__name__}: {e})"


# ------------------------------------------------------------------------------------------------------------- scan


def _cache_path(split_dir: Path, tag: str) -> Path:
    parent = split_dir.parent if tag != "all" else split_dir
    if _is_writable(parent):
        return parent / f"{tag}.jaxyolo.cache.json"
    h = hashlib.sha1(str(split_dir.resolve()).encode()).hexdigest()[:16]
    return cache_dir() / "scans" / f"{h}-{tag}.jaxyolo.cache.json"


def _key(split_dir: Path, classes, listing) -> str:
    h = hashlib.sha256()
    h.update(f"v{CACHE_VERSION}\n{json.dumps(classes)}\n".encode())
    for p, size, mtime in listing:
        h.update(f"{os.path.relpath(p, split_dir)}\0{size}\0{mtime}\n".encode())
    return h.hexdigest()


def _listing(split_dir: Path, classes: list[str]):
    """(``_list_files`` of every class folder in ``classes`` order, their class indices, files per class)."""
    listing, labels, counts = [], [], {}
    for ci, c in enumerate(classes):
        files = _list_files(split_dir / c)
        counts[c] = len(files)
        listing += files
        labels += [ci] * len(files)
    return listing, labels, counts


def scan_split(split_dir, tag: str | None = None, classes: list[str] | None = None):
    """Scan one split folder of class sub-folders.

    Returns (classes, per-class file counts, records with labels = index in ``classes``, bad [(path, reason)]).
    ``classes`` defaults to the folder's own sorted sub-folders."""
    split_dir = Path(split_dir)
    tag = tag or split_dir.name
    classes = list(classes) if classes is not None else _class_dirs(split_dir)
    listing, labels, counts = _listing(split_dir, classes)
    key = _key(split_dir, classes, listing)
    cpath = _cache_path(split_dir, tag)
    cached = _read_cache(cpath, key)
    t0 = time.time()
    if cached is None:
        good, bad = _verify(listing)
        _write_cache(cpath, split_dir, key, listing, good, bad)
        LOGGER.info(f"{tag}: scanned {len(listing)} files in {time.time() - t0:.1f}s ({len(bad)} bad)")
    else:
        good, bad = cached
    idx = np.array(sorted(good), dtype=np.int64)
    recs = SplitRecords(
        root=str(split_dir),
        files=[listing[i][0] for i in idx],
        labels=np.array([labels[i] for i in idx], np.int32),
        heights=np.array([good[i][0] for i in idx], np.int32).reshape(-1),
        widths=np.array([good[i][1] for i in idx], np.int32).reshape(-1),
        routes=np.array([good[i][2] for i in idx], np.int32).reshape(-1),
        orients=np.array([good[i][3] for i in idx], np.int32).reshape(-1),
        sizes=np.array([listing[i][1] for i in idx], np.int64).reshape(-1),
        mtimes=np.array([listing[i][2] for i in idx], np.int64).reshape(-1),
    )
    bad_list = [(listing[i][0], reason) for i, reason in sorted(bad.items())]
    return classes, counts, recs, bad_list


def record_scan(split_dir, info: tuple[int, int, int, int]) -> None:
    """Write the scan cache of a split folder whose every image its writer knows to be good, each ``info`` = (height,
    width, decode route, EXIF orientation), as ``scan_split`` would record it: for a folder made by jaxyolo itself
    (the embedded digits), whose scan would re-open every file just written (~0.3 s of a first digits run). The
    cache is keyed like any other (paths, sizes, mtimes), so a file changed afterwards is scanned again."""
    split_dir = Path(split_dir)
    classes = _class_dirs(split_dir)
    listing = _listing(split_dir, classes)[0]
    good = {i: tuple(int(v) for v in info) for i in range(len(listing))}
    _write_cache(_cache_path(split_dir, split_dir.name), split_dir, _key(split_dir, classes, listing), listing, good,
                 {})


def _verify(listing):
    """-> (good {i: (h, w, route, orient)}, bad {i: reason})."""
    good, bad = {}, {}
    with ThreadPoolExecutor(_SCAN_THREADS) as ex:
        heads = list(ex.map(lambda t: inspect_file(t[0], t[1]), listing))
    for i, (ok, info) in enumerate(heads):
        (good if ok else bad)[i] = info
    host_idx = [i for i, v in good.items() if v[2] in (R.PNG, R.BMP)]
    with ThreadPoolExecutor(_SCAN_THREADS) as ex:
        shapes = list(ex.map(lambda i: _verify_host(listing[i][0], good[i][3]), host_idx))
    verified = set()
    for i, hw in zip(host_idx, shapes):
        if hw is not None:
            good[i] = (*hw, good[i][2], good[i][3])
            verified.add(i)
    tf_idx = [i for i, v in good.items() if v[2] != R.PIL and i not in verified]
    pil_idx = [i for i, v in good.items() if v[2] == R.PIL]
    decoded = _verify_tf([listing[i][0] for i in tf_idx], [good[i][2] for i in tf_idx], [good[i][3] for i in tf_idx])
    retry = []
    for k, i in enumerate(tf_idx):
        if k in decoded:
            h, w = decoded[k]
            good[i] = (h, w, good[i][2], good[i][3])
        else:
            retry.append(i)  # TF could not decode it: let Pillow try (and give the reason if it fails too)
    for i in retry:
        good[i] = good[i][:2] + (R.PIL, 1)
    pil_idx += retry
    with ThreadPoolExecutor(_SCAN_THREADS) as ex:
        res = list(ex.map(lambda i: _verify_pil(listing[i][0]), pil_idx))
    for i, (ok, info) in zip(pil_idx, res):
        if ok:
            good[i] = (info[0], info[1], R.PIL, 1)
        else:
            del good[i]
            bad[i] = info
    for i in list(good):
        h, w = good[i][:2]
        if h < MIN_SIZE or w < MIN_SIZE:
            del good[i]
            bad[i] = f"image too small ({w}x{h} px, need at least {MIN_SIZE} px a side)"
    return good, bad


def _read_cache(cpath: Path, key: str):
    try:
        with open(cpath) as f:
            c = json.load(f)
        if c.get("version") != CACHE_VERSION or c.get("key") != key:
            return None
        good = {int(i): tuple(v) for i, v in zip(c["good_idx"], c["good"])}
        bad = {int(i): r for i, r in c["bad"]}
        return good, bad
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_cache(cpath: Path, split_dir: Path, key, listing, good, bad):
    payload = {
        "version": CACHE_VERSION,
        "key": key,
        "root": str(split_dir),
        "n_files": len(listing),
        "good_idx": sorted(good),
        "good": [list(good[i]) for i in sorted(good)],
        "bad": [[i, bad[i]] for i in sorted(bad)],
    }
    try:
        cpath.parent.mkdir(parents=True, exist_ok=True)
        tmp = cpath.with_name(f".{cpath.name}.{os.getpid()}.tmp")
        with open(tmp, "w") as f:
            json.dump(payload, f)
        os.replace(tmp, cpath)
    except OSError as e:
        LOGGER.warning(f"could not write the scan cache {cpath}: {e}")


def _log_bad(tag: str, bad):
    if bad:
        lines = "\n".join(f"  {p}: {r}" for p, r in bad)
        LOGGER.warning(f"{tag}: {len(bad)} bad image file(s) skipped (not used):\n{lines}")


# ---------------------------------------------------------------------------------------------------------- layout


def _auto_split(recs: SplitRecords, frac: float = 0.2):
    """Per class: valid images ordered by SHA-1 of their relative path; the first round(frac n) (>= 1 if n >= 2)
    are val. Deterministic, independent of listing order, no files moved."""
    train_idx, val_idx = [], []
    for c in np.unique(recs.labels):
        idx = np.flatnonzero(recs.labels == c)
        keys = [hashlib.sha1(os.path.relpath(recs.files[i], recs.root).encode()).hexdigest() for i in idx]
        order = idx[np.argsort(keys, kind="stable")]
        n_val = int(round(frac * len(idx)))
        if len(idx) >= 2:
            n_val = max(n_val, 1)
        val_idx += sorted(order[:n_val].tolist())
        train_idx += sorted(order[n_val:].tolist())
    return recs.subset(train_idx), recs.subset(val_idx)


def _check_classes(tag, split_dir, names, counts, recs, bad, strict_bad: bool):
    empty = [c for c in names if counts.get(c, 0) == 0]
    if empty:
        raise DatasetError(
            f"{split_dir}: empty class folder(s) with no image files: {', '.join(repr(c) for c in empty)}"
        )
    present = set(np.unique(recs.labels).tolist())
    all_bad = [c for i, c in enumerate(names) if i not in present]
    if all_bad:
        msg = f"{split_dir}: class folder(s) with no valid image (all files bad): {', '.join(map(repr, all_bad))}"
        if strict_bad:
            raise DatasetError(msg)
        LOGGER.warning(msg)


def load_folder(data: str, root: Path, source: str | None = None) -> Dataset:
    """Resolve an image-folder dataset (see module doc)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset {data!r} not found: {root} is not a directory")
    train_dir = root / "train"
    val_dir = next((root / n for n in VAL_NAMES if (root / n).is_dir()), None)
    test_dir = root / "test" if (root / "test").is_dir() else None
    records, skipped = {}, {}
    if train_dir.is_dir():
        names = _class_dirs(train_dir)
        if not names:
            raise DatasetError(f"{train_dir}: no class sub-folders (expected {train_dir}/<class>/<images>)")
        _, counts, recs, bad = scan_split(train_dir, "train", names)
        _log_bad("train", bad)
        _check_classes("train", train_dir, names, counts, recs, bad, strict_bad=True)
        records["train"], skipped["train"] = recs, bad
        for split, d in (("val", val_dir), ("test", test_dir)):
            if d is None:
                continue
            own = _class_dirs(d)
            if own != names:
                missing = sorted(set(names) - set(own))
                extra = sorted(set(own) - set(names))
                raise DatasetError(
                    f"{d}: class folders do not match {train_dir} "
                    f"(missing in {d.name}/: {missing or 'none'}; not in train/: {extra or 'none'})"
                )
            _, counts, recs, bad = scan_split(d, d.name, names)
            _log_bad(split, bad)
            _check_classes(split, d, names, counts, recs, bad, strict_bad=False)
            records[split], skipped[split] = recs, bad
        if val_dir is None and test_dir is None:
            raise DatasetError(
                f"{root}: missing split: no validation folder next to train/ "
                f"(expected one of {', '.join(VAL_NAMES)} or test/)"
            )
    else:
        if val_dir is not None or test_dir is not None:
            raise DatasetError(f"{root}: missing split: {train_dir} does not exist")
        names = _class_dirs(root)
        if not names:
            raise DatasetError(
                f"{root}: no train/ folder and no class sub-folders (expected {root}/train/<class>/<images> "
                f"or {root}/<class>/<images>)"
            )
        _, counts, recs, bad = scan_split(root, "all", names)
        _log_bad("dataset", bad)
        _check_classes("dataset", root, names, counts, recs, bad, strict_bad=True)
        records["train"], records["val"] = _auto_split(recs)
        skipped["all"] = bad
        LOGGER.info(
            f"{root}: no train/ folder, split the {len(recs)} images 80/20 per class "
            f"({len(records['train'])} train, {len(records['val'])} val; files not moved)"
        )
    return folder_dataset(data, root, names, records, skipped, source)


def folder_dataset(data: str, root: Path, names: list[str], records: dict[str, SplitRecords],
                   skipped: dict | None = None, source: str | None = None) -> Dataset:
    """The ``Dataset`` of an image folder's resolved splits (fallback aliases, split sizes, the summary line)."""
    skipped = {} if skipped is None else skipped
    aliases = {}
    if "val" not in records and "test" in records:
        aliases["val"] = "test"
    if "test" not in records and "val" in records:
        aliases["test"] = "val"
    splits = {k: len(v) for k, v in records.items()}
    for a, real in aliases.items():
        splits[a] = splits[real]
    n_bad = sum(len(v) for v in skipped.values())
    LOGGER.info(
        f"{source or data}: {len(names)} classes, "
        + ", ".join(f"{k} {v}" for k, v in splits.items())
        + (f", {n_bad} bad file(s) skipped" if n_bad else "")
    )
    return Dataset(
        source=source or data,
        names=dict(enumerate(names)),
        nc=len(names),
        splits=splits,
        kind="folder",
        root=str(root),
        records=records,
        skipped=skipped,
        aliases=aliases,
    )
