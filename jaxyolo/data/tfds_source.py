"""TFDS datasets: ``data='tfds:<name>[:<version>]'`` (optionally ``<name>/<config>``), read from ``data_dir``.

Nothing is downloaded: the dataset must already be prepared in ``data_dir`` (or TFDS' default data dir). The image
and label features are the builder's ``supervised_keys`` when it has them, else the first ``Image`` and the first
``ClassLabel`` feature; class names come from the ``ClassLabel``. Split names: 'train' -> train, 'val' ->
validation / val / valid / test (first present), 'test' -> test (falling back to the val split and vice versa).
Images are decoded in the pipeline (JPEG with the accurate IDCT, PNG etc. with ``decode_image``), grey -> RGB.
"""

from __future__ import annotations

from jaxyolo.data.dataset import LOGGER, Dataset, DatasetError, train_count


def _features(builder):
    import tensorflow_datasets as tfds

    feats = builder.info.features
    sk = builder.info.supervised_keys
    image_key = label_key = None
    if sk and len(sk) == 2 and isinstance(sk[0], str) and isinstance(sk[1], str):
        image_key, label_key = sk
    items = list(feats.items()) if hasattr(feats, "items") else []
    if image_key is None or not isinstance(feats[image_key], tfds.features.Image):
        image_key = next((k for k, f in items if isinstance(f, tfds.features.Image)), None)
    if label_key is None or not isinstance(feats[label_key], tfds.features.ClassLabel):
        label_key = next((k for k, f in items if isinstance(f, tfds.features.ClassLabel)), None)
    if image_key is None or label_key is None:
        raise DatasetError(
            f"TFDS dataset {builder.info.full_name}: needs an Image feature and a ClassLabel feature, found {feats}"
        )
    return image_key, label_key


def load_tfds(data: str, data_dir: str | None = None, fraction: float | int = 1.0) -> Dataset:
    from jaxyolo.data._tf import tf  # before tfds, which would import TensorFlow itself (with Keras)
    import tensorflow_datasets as tfds

    spec = data.split(":", 1)[1] if data.startswith("tfds:") else data
    if not spec:
        raise DatasetError(f"{data!r}: expected tfds:<name>[:<version>]")
    try:
        builder = tfds.builder(spec, data_dir=data_dir)
    except Exception as e:  # noqa: BLE001
        raise DatasetError(
            f"TFDS dataset {spec!r} not found in data_dir={data_dir or tfds.core.constants.DATA_DIR!r} "
            f"(prepare it first; nothing is downloaded): {type(e).__name__}: {e}"
        ) from e
    available = dict(builder.info.splits.items()) if hasattr(builder.info.splits, "items") else {}
    if not available or not tf.io.gfile.exists(builder.data_dir):
        raise DatasetError(f"TFDS dataset {spec!r} is not prepared in {builder.data_dir} (nothing is downloaded)")
    image_key, label_key = _features(builder)
    names = list(builder.info.features[label_key].names)
    splits, tfds_splits, aliases = {}, {}, {}
    if "train" not in available:
        raise DatasetError(f"TFDS dataset {spec!r}: missing split 'train' (has {sorted(available)})")
    n_train = available["train"].num_examples
    count = train_count(fraction, n_train)
    if count < n_train:
        tfds_splits["train"] = f"train[:{count}]"
        n_train = count
    else:
        tfds_splits["train"] = "train"
    splits["train"] = n_train
    val = next((s for s in ("validation", "val", "valid") if s in available), None)
    if val:
        tfds_splits["val"] = val
        splits["val"] = available[val].num_examples
    if "test" in available:
        tfds_splits["test"] = "test"
        splits["test"] = available["test"].num_examples
    if "val" not in tfds_splits and "test" in tfds_splits:
        aliases["val"] = "test"
        splits["val"] = splits["test"]
    if "test" not in tfds_splits and "val" in tfds_splits:
        aliases["test"] = "val"
        splits["test"] = splits["val"]
    if "val" not in splits:
        raise DatasetError(
            f"TFDS dataset {spec!r}: missing split: no validation/val/test split (has {sorted(available)})"
        )
    LOGGER.info(f"{data}: {len(names)} classes, " + ", ".join(f"{k} {v}" for k, v in splits.items()))
    return Dataset(
        source=data,
        names=dict(enumerate(names)),
        nc=len(names),
        splits=splits,
        kind="tfds",
        tfds_builder=builder,
        tfds_splits=tfds_splits,
        aliases=aliases,
        image_key=image_key,
        label_key=label_key,
    )
