"""Transforms (issue 4): eval transform vs Ultralytics, augmentation ops vs torchvision, train-time statistics."""

try:  # torchvision must be imported before TensorFlow: triton's LLVM (pulled in by torchvision) and TF's clash
    import torchvision  # noqa: F401
except Exception:  # noqa: BLE001
    pass

import math

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from jaxyolo.data import eval_transform_np, sample_crop_boxes
from jaxyolo.data import host_augment as P
from jaxyolo.data import pil_ops as O
from jaxyolo.data import tf_augment as A
from jaxyolo.data import transforms as T


def natural(h, w, seed):
    r = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack(
        [np.sin(6 * x + r.uniform(0, 6)) * 0.5 + 0.5, np.cos(12 * y * x + r.uniform(0, 6)) * 0.5 + 0.5, (x + y) / 2],
        -1,
    ) * 255 + r.normal(0, 10, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _test_images():
    from sklearn.datasets import load_digits

    d = load_digits().images
    imgs = []
    for i, (h, w) in zip((0, 7, 42), ((40, 40), (24, 56), (90, 30))):  # real digits, upsampled (PIL bilinear)
        g = Image.fromarray(np.round(d[i] * 255 / 16).astype(np.uint8)).resize((w, h), Image.BILINEAR)
        imgs.append(np.asarray(g.convert("RGB")))
    imgs += [natural(300, 200, 1), natural(200, 300, 2), natural(224, 224, 3), natural(50, 100, 4),
             natural(17, 333, 5), np.random.default_rng(6).integers(0, 256, (131, 97, 3), dtype=np.uint8)]
    return imgs


@pytest.mark.ultralytics
def test_eval_transform_matches_ultralytics():
    from ultralytics.data.augment import classify_transforms

    worst = 0
    for size in (224, 64, 32, (96, 128), (64, 48)):
        ref_tf = classify_transforms(size)
        for img in _test_images():
            ref = (ref_tf(Image.fromarray(img)).permute(1, 2, 0).numpy() * 255.0).round().astype(int)
            ours = eval_transform_np(img, size)
            assert ours.dtype == np.uint8 and ours.shape == ref.shape, (size, img.shape)
            d = np.abs(ours.astype(int) - ref).max()
            worst = max(worst, d)
            assert d <= 2, (size, img.shape, d)
    assert worst <= 2


def test_eval_transform_np_inputs():
    img = natural(30, 40, 0)
    a = eval_transform_np(img, 16)
    assert a.shape == (16, 16, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(eval_transform_np(np.dstack([img, img[..., :1]]), 16), a)  # RGBA: alpha dropped
    g = eval_transform_np(img[..., 0], 16)  # grey HW
    np.testing.assert_array_equal(g[..., 0], g[..., 1])
    assert eval_transform_np(img, (12, 20)).shape == (12, 20, 3)
    np.testing.assert_array_equal(eval_transform_np(img[:16, :16], 16), img[:16, :16])  # no-op resize


def _space_cases(h, w):
    """(op, signed magnitude) for every op of RandAugment (bin 9 of 31) and AutoAugment (bins of 10) on h x w."""
    cases = set()
    space31 = A._space(31, h, w)
    for name in A.RANDAUGMENT_OPS:
        mags, signed = space31[name]
        cases |= {(name, float(mags[9])), (name, -float(mags[9]) if signed else float(mags[9]))}
    space10 = A._space(10, h, w)
    for pol in A.AUTOAUGMENT_IMAGENET:
        for name, _, b in pol:
            m = 0.0 if b is None else float(space10[name][0][b])
            cases |= {(name, m), (name, -m if space10[name][1] else m)}
    return sorted(cases)


@pytest.mark.ultralytics
def test_augment_ops_match_torchvision():
    """Each RandAugment/AutoAugment op (torchvision's _apply_op on PIL images, BILINEAR, as Ultralytics calls it)."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import autoaugment as AA
    from torchvision.transforms import functional as F

    imgs = [natural(64, 64, 1), natural(48, 80, 2), np.random.default_rng(3).integers(0, 256, (37, 53, 3), np.uint8)]
    for img in imgs:
        pil = Image.fromarray(img)
        for name, mag in _space_cases(*img.shape[:2]):
            ref = np.asarray(AA._apply_op(pil, name, mag, InterpolationMode.BILINEAR, None)).astype(int)
            ours = A.apply_op_named(img, name, mag).numpy().astype(int)
            d = np.abs(ref - ours)
            # exact, except the bilinear warps (TF's float32 kernel vs Pillow's float64): +-1 on a few % of pixels
            frac = 0.1 if name in ("ShearX", "ShearY", "Rotate") else 0.005
            assert d.max() <= 1 and (d > 0).mean() < frac, (name, mag, img.shape, d.max(), (d > 0).mean())
        for f in (0.015, -0.015, 0.3):  # ColorJitter hue (PIL HSV round trip)
            ref = np.asarray(F.adjust_hue(pil, f)).astype(int)
            ours = O.adjust_hue(tf.constant(img, tf.float32), f).numpy().astype(int)
            assert np.abs(ref - ours).max() <= 1
        for fn, ours_fn in ((F.adjust_brightness, O.adjust_brightness), (F.adjust_contrast, O.adjust_contrast),
                            (F.adjust_saturation, O.adjust_saturation)):
            for f in (0.6, 1.37):
                ref = np.asarray(fn(pil, f)).astype(int)
                ours = ours_fn(tf.constant(img, tf.float32), f).numpy().astype(int)
                assert np.abs(ref - ours).max() <= 1


WARPS = ("ShearX", "ShearY", "Rotate")  # with the opencv back-end, the only RandAugment ops that are not exact


@pytest.mark.ultralytics
@pytest.mark.parametrize("backend", ["pillow", "opencv"])
def test_host_randaugment_ops_are_exact(backend):
    """The host path that runs RandAugment in training: every op, bins 0/9/30, both signs, bit-exact with
    torchvision's _apply_op on PIL images (BILINEAR, fill None), as Ultralytics calls it; with aug_backend=opencv
    all but the three warps (bounded in test_opencv_backend_is_close_to_pillow), given a PIL image or an array."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import autoaugment as AA

    two_tone = np.zeros((20, 30, 3), np.uint8)
    two_tone[5:, :, 0], two_tone[:, 7:, 2] = 200, 9  # equalize/autocontrast edge cases: one or two levels per channel
    imgs = [natural(224, 224, 1), natural(48, 80, 2), np.random.default_rng(3).integers(0, 256, (37, 53, 3), np.uint8),
            np.full((16, 24, 3), 77, np.uint8), two_tone]
    checked = 0
    for img in imgs:
        pil = Image.fromarray(img)
        space = A._space(31, *img.shape[:2])
        for name in P.RANDAUGMENT_OPS + ["Invert"]:
            mags, signed = space[name]
            for b in (0, 9, 30):
                for sign in ((1.0, -1.0) if signed else (1.0,)):
                    mag = sign * float(mags[b])
                    ref = np.asarray(AA._apply_op(pil, name, mag, InterpolationMode.BILINEAR, None))
                    if backend == "opencv" and name in WARPS:
                        continue
                    for x in (pil, img):
                        np.testing.assert_array_equal(np.asarray(P.apply_op(x, name, mag, backend)), ref,
                                                      err_msg=f"{name} bin {b} sign {sign} on {img.shape}")
                    checked += 1
    n_warps = 5 * 3 * 2 * 3 if backend == "opencv" else 0  # 5 images x 3 bins x 2 signs x 3 warps
    assert checked == 5 * (3 * 15 + 3 * 9) - n_warps  # 15 ops x 3 bins, plus the negative sign of the 9 signed ops


def _diff_stats(pairs):
    d = np.concatenate([np.abs(a.astype(int) - np.asarray(b).astype(int)).ravel() for a, b in pairs])
    return d.mean(), np.percentile(d, 99), (d > 1).mean()


def test_opencv_backend_is_close_to_pillow():
    """aug_backend=opencv vs the exact Pillow back-end: the same random choices, pixels within a grey level or two.
    Resize: enlarging, and shrinking up to 12x (where _prefilter stands in for Pillow's antialiasing); warps: the
    RandAugment Rotate/ShearX/ShearY at bins 9 and 30; the whole augment_crop with RandAugment, flips and erasing."""
    sizes = np.random.default_rng(0).integers(60, 400, (12, 2))
    photos = [natural(int(h), int(w), i) for i, (h, w) in enumerate(sizes)]
    for th, tw in ((224, 224), (64, 48), (120, 160), (32, 32)):
        pairs = [(np.asarray(P.resize(a, th, tw, "pillow")), P.resize(a, th, tw, "opencv")) for a in photos]
        assert all(b.shape == (th, tw, 3) and b.dtype == np.uint8 for _, b in pairs)
        mean, p99, _ = _diff_stats(pairs)
        assert mean < 0.8 and p99 <= 3, (th, tw, mean, p99)
    a224 = [np.asarray(P.resize(a, 224, 224, "pillow")) for a in photos]
    for name in WARPS:
        for b in (9, 30):
            mag = float(A._space(31, 224, 224)[name][0][b])
            for sign in (1, -1):
                pairs = [(np.asarray(P.apply_op(a, name, sign * mag, "pillow")),
                          P.apply_op(a, name, sign * mag, "opencv")) for a in a224]
                mean, _, over1 = _diff_stats(pairs)
                # Pillow truncates, OpenCV rounds (+0.5 on average); larger only where the two disagree on whether
                # a sample point lies inside the image, on its outline
                assert mean < 0.7 and over1 < 0.002, (name, b, sign, mean, over1)
    pairs, same_erasing = [], 0
    for i, a in enumerate(photos * 4):
        args = ([i, 3], 224, 224, 0.5, 0.5, "randaugment", 0.5)
        ref, fast = P.augment_crop(a, *args, backend="pillow"), P.augment_crop(a, *args, backend="opencv")
        pairs.append((ref, fast))
        same_erasing += np.array_equal((ref == 0).all(-1), (fast == 0).all(-1)) or not (ref == 0).all(-1).any()
    mean, p99, _ = _diff_stats(pairs)
    assert mean < 1.0 and p99 <= 4, (mean, p99)
    assert same_erasing >= 0.9 * len(pairs)  # the same erasing boxes (the same draws)


@pytest.mark.ultralytics
def test_host_resize_flips_and_erasing_are_exact():
    """augment_crop = F.resize(BILINEAR) -> hflip -> vflip -> RandomErasing(value 0), pixel for pixel."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as F

    for crop, (th, tw) in ((natural(300, 200, 7), (224, 224)), (natural(20, 31, 8), (32, 32)),
                           (natural(90, 60, 9), (24, 40))):
        ref = F.resize(Image.fromarray(crop), [th, tw], InterpolationMode.BILINEAR)
        out = P.augment_crop(crop, [1, 2], th, tw, 0.0, 0.0, "", 0.0, "pillow")
        np.testing.assert_array_equal(out, np.asarray(ref))
        np.testing.assert_array_equal(P.augment_crop(crop, [1, 2], th, tw, 1.0, 1.0, "", 0.0, "pillow"),
                                      np.asarray(F.vflip(F.hflip(ref))))
        erased = P.augment_crop(crop, [3, 4], th, tw, 0.0, 0.0, "", 1.0, "pillow")
        diff = (erased != np.asarray(ref)).any(-1)
        rows, cols = np.nonzero((erased == 0).all(-1) & diff)
        assert diff.any() and (erased[diff] == 0).all()  # only zeros were written, in one rectangle:
        assert diff[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].mean() > 0.9
    np.testing.assert_array_equal(P.augment_crop(crop, [5, 6], 24, 40, 0.5, 0.0, "randaugment", 0.4),
                                  P.augment_crop(crop, [5, 6], 24, 40, 0.5, 0.0, "randaugment", 0.4))


@pytest.mark.ultralytics
def test_random_resized_crop_matches_torchvision_distribution():
    import torch
    from torchvision.transforms import RandomResizedCrop

    n = 2000
    torch.manual_seed(0)
    for h, w in ((100, 150), (40, 300), (224, 224)):
        theirs = np.array([RandomResizedCrop.get_params(torch.zeros(3, h, w), [0.5, 1.0], [3 / 4, 4 / 3])
                           for _ in range(n)], dtype=float)
        ours = sample_crop_boxes(h, w, n, seed=1, scale=(0.5, 1.0)).astype(float)
        for arr in (theirs, ours):
            assert (arr[:, 0] >= 0).all() and (arr[:, 0] + arr[:, 2] <= h).all()
            assert (arr[:, 1] >= 0).all() and (arr[:, 1] + arr[:, 3] <= w).all()
        feats = lambda a: (a[:, 2] * a[:, 3] / (h * w), np.log(a[:, 3] / a[:, 2]),  # noqa: E731
                           (a[:, 0] + a[:, 2] / 2) / h, (a[:, 1] + a[:, 3] / 2) / w)
        for f_t, f_o in zip(feats(theirs), feats(ours)):
            se = math.sqrt(f_t.var() / n + f_o.var() / n) + 1e-9
            assert abs(f_t.mean() - f_o.mean()) < 4.5 * se, (h, w, f_t.mean(), f_o.mean(), se)
            assert abs(f_t.std() - f_o.std()) < 0.1 * max(f_t.std(), 1e-3) + 0.01


def test_crop_box_statistics():
    h, w, n = 120, 160, 4000
    boxes = sample_crop_boxes(h, w, n, seed=0, scale=(0.5, 1.0))
    area = boxes[:, 2] * boxes[:, 3] / (h * w)
    aspect = boxes[:, 3] / boxes[:, 2]
    fallback = (boxes[:, 2] == h) & (boxes[:, 3] == w)  # 4:3 image: the centre-crop fallback is the whole image
    ok = ~fallback
    assert fallback.mean() < 0.05
    # area ~ U(0.5, 1) truncated where the box does not fit (rounding: a few % slack)
    assert area[ok].min() > 0.48 and area.max() <= 1.0
    assert aspect[ok].min() > 0.72 and aspect[ok].max() < 1.37
    # the spec (torchvision's get_params: 10 attempts of area ~ U(scale) * A, log-aspect ~ U(log ratio), keep the
    # first that fits) simulated in numpy gives the expected moments
    rng = np.random.default_rng(0)
    ref = []
    for _ in range(n):
        for _ in range(10):
            a = h * w * rng.uniform(0.5, 1.0)
            r = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
            cw, ch = round(math.sqrt(a * r)), round(math.sqrt(a / r))
            if 0 < cw <= w and 0 < ch <= h:
                ref.append((ch * cw / (h * w), math.log(cw / ch)))
                break
    ref = np.array(ref)
    for ours, theirs in ((area[ok], ref[:, 0]), (np.log(aspect[ok]), ref[:, 1])):
        se = math.sqrt(ours.var() / len(ours) + theirs.var() / len(theirs))
        assert abs(ours.mean() - theirs.mean()) < 4.5 * se, (ours.mean(), theirs.mean())
    # same seed/epoch -> same boxes; other epoch -> other boxes
    np.testing.assert_array_equal(sample_crop_boxes(h, w, 50, seed=0), boxes[:50])
    assert not np.array_equal(sample_crop_boxes(h, w, 50, seed=0, epoch=1), boxes[:50])


def _run_train_transform(img, aug, n, size=32, seed=0):
    img = tf.constant(img)
    h, w = int(img.shape[0]), int(img.shape[1])

    def one(i):
        k = T.example_seed(seed, 0, i)
        return T.train_transform(lambda t, l, ch, cw: img[t : t + ch, l : l + cw], h, w, k, size, aug)

    ds = tf.data.Dataset.range(n).map(one, num_parallel_calls=tf.data.AUTOTUNE).batch(n)
    return next(ds.as_numpy_iterator())


@pytest.mark.parametrize("path", ["host", "tf"])
def test_flip_and_erasing_rates(path):
    """Both implementations of flips + erasing: the host (Pillow) one, used with RandAugment or no policy, and the
    TF one, used with AutoAugment/AugMix/HSV jitter (a 1e-6 brightness/contrast jitter selects it here)."""
    # quadrants white/red/green/blue: (0, 0, 0) only ever comes from erasing; quadrant colours reveal the flips
    q = np.zeros((40, 40, 3), np.uint8)
    q[:20, :20] = (255, 255, 255)
    q[:20, 20:] = (255, 0, 0)
    q[20:, :20] = (0, 255, 0)
    q[20:, 20:] = (0, 0, 255)
    aug = dict(scale=0.0, fliplr=0.5, flipud=0.5, auto_augment="", hsv_h=0, hsv_s=0,
               hsv_v=0 if path == "host" else 1e-6, erasing=0.4)
    n = 800
    out = _run_train_transform(q, aug, n)  # scale=0 -> RandomResizedCrop(scale=(1, 1)): the whole image
    assert out.shape == (n, 32, 32, 3) and out.dtype == np.uint8
    erased = (out == 0).all(-1)
    rate = erased.any((1, 2)).mean()
    assert abs(rate - 0.4) < 3.5 * math.sqrt(0.24 / n), rate
    area = erased.sum((1, 2))[erased.any((1, 2))] / (32 * 32)
    assert area.min() >= 0.015 and area.max() <= 0.36  # RandomErasing scale (0.02, 0.33), sides rounded
    hflip, vflip, used = 0, 0, 0
    for img, er in zip(out, erased):
        tl = img[4:12, 4:12][~er[4:12, 4:12]]
        tr = img[4:12, 20:28][~er[4:12, 20:28]]
        if len(tl) == 0 or len(tr) == 0:
            continue
        used += 1
        tl, tr = tl.mean(0), tr.mean(0)
        top_white_or_red = tl[0] > 128 and tr[0] > 128
        vflip += not top_white_or_red
        white_left = (tl.min() > 128) if top_white_or_red else (tl[1] > 128)  # white/green are on the left
        hflip += not white_left
    assert used > 0.9 * n
    for k in (hflip, vflip):
        assert abs(k / used - 0.5) < 3.5 * math.sqrt(0.25 / used), (k, used)


def test_policies_run():
    img = natural(48, 64, 0)
    for policy in ("randaugment", "autoaugment", "augmix"):
        aug = dict(scale=0.5, fliplr=0.5, auto_augment=policy, erasing=0.0)
        out = _run_train_transform(img, aug, 24, size=24)
        assert out.shape == (24, 24, 24, 3) and out.dtype == np.uint8
        assert len({o.tobytes() for o in out}) == 24
    with pytest.raises(ValueError, match="auto_augment"):
        _run_train_transform(img, dict(auto_augment="bogus"), 2)
