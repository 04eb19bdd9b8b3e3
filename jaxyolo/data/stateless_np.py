"""TensorFlow's stateless Philox random ops in numpy, vectorised over many seeds: the same bits as
``tf.random.experimental.stateless_fold_in`` / ``stateless_split`` / ``stateless_uniform(alg='philox')`` on CPU.

The host train route (``host_train.py``) draws every example's RandomResizedCrop box and RandAugment key with these,
so a batch made on the host is the batch the tf.data graph (``transforms.example_seed`` -> ``rrc_params``) makes,
without one TF function call per example. The algorithm, as TF implements it:

* Philox-4x32-10 (Salmon et al. 2011): a 128-bit counter, a 64-bit key, ten rounds;
* a seed (s0, s1) (int32 or int64, widened to int64) becomes key/counter by one Philox call on the counter
  ``(lo(s0), hi(s0), lo(s1), hi(s1))`` with TF's fixed key: key = out[0:2], counter = (0, 0, out[2], out[3]);
* successive Philox calls increment the counter; int32 samples are the words in order, int64 samples
  ``lo | hi << 32`` of consecutive words, float32 ``(w & 0x7fffff | 0x3f800000) - 1``, float64 the 52 mantissa bits
  of ``(w0 & 0xfffff) << 32 | w1``, minus 1; uniform(lo, hi) is ``u * (hi - lo) + lo`` in the sample dtype.
``tests/test_host_train.py`` checks these against TF for hundreds of seeds.
"""

from __future__ import annotations

import numpy as np

_M0, _M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
_W0, _W1 = np.uint64(0x9E3779B9), np.uint64(0xBB67AE85)
_LO = np.uint64(0xFFFFFFFF)
_32 = np.uint64(32)
_SEED_KEY = (0x3EC8F720, 0x02461E29)  # TF's key for turning a seed into key/counter


def _philox(c0, c1, c2, c3, k0, k1):
    """Philox-4x32-10 on uint64 arrays holding 32-bit words."""
    for _ in range(10):
        p0, p1 = _M0 * c0, _M1 * c2
        c0, c1, c2, c3 = (p1 >> _32) ^ c1 ^ k0, p1 & _LO, (p0 >> _32) ^ c3 ^ k1, p0 & _LO
        k0, k1 = (k0 + _W0) & _LO, (k1 + _W1) & _LO
    return c0, c1, c2, c3


def words(seed, n: int) -> np.ndarray:
    """[..., n] uint32: the first ``n`` Philox words of each seed ([..., 2] integers) in TF's order."""
    s = np.asarray(seed).astype(np.int64).view(np.uint64)
    s0, s1 = s[..., 0], s[..., 1]
    k = tuple(np.full(s0.shape, v, np.uint64) for v in _SEED_KEY)
    m = _philox(s0 & _LO, s0 >> _32, s1 & _LO, s1 >> _32, *k)
    key, c2, c3 = (m[0], m[1]), m[2], m[3]
    out = []
    for j in range((n + 3) // 4):  # counter (j, 0, c2, c3): the low word never carries for n < 2**34
        out.append(np.stack(_philox(np.full(s0.shape, j, np.uint64), np.zeros_like(s0), c2, c3, *key), -1))
    return np.concatenate(out, -1)[..., :n].astype(np.uint32)


def full_int64(seed, n: int) -> np.ndarray:
    """[..., n] int64: ``stateless_uniform(dtype=int64, minval=None, maxval=None)``."""
    w = words(seed, 2 * n).astype(np.uint64)
    return (w[..., 0::2] | (w[..., 1::2] << _32)).view(np.int64)


def fold_in(seed, data) -> np.ndarray:
    """[..., 2] int64: ``stateless_fold_in(seed, data)`` with int64 ``data`` (broadcast against the seeds)."""
    first = full_int64(seed, 1)[..., 0]
    data = np.broadcast_to(np.asarray(data, np.int64), first.shape)
    return np.stack([first, data], -1)


def split(seed, num: int) -> np.ndarray:
    """[..., num, 2] int64: ``stateless_split(seed, num)`` of int64 seeds."""
    v = full_int64(seed, 2 * num)
    return v.reshape(v.shape[:-1] + (num, 2))


def uniform_f32(seed, n: int, lo: float, hi: float) -> np.ndarray:
    """[..., n] float32: ``stateless_uniform([n], seed, lo, hi, float32, alg='philox')``."""
    w = words(seed, n)
    u = ((w & np.uint32(0x7FFFFF)) | np.uint32(0x3F800000)).view(np.float32) - np.float32(1.0)
    lo32, hi32 = np.float32(lo), np.float32(hi)
    return u * (hi32 - lo32) + lo32


def uniform_f64(seed, n: int, lo: float, hi: float) -> np.ndarray:
    """[..., n] float64: ``stateless_uniform([n], seed, lo, hi, float64, alg='philox')``."""
    w = words(seed, 2 * n).astype(np.uint64)
    bits = (((w[..., 0::2] & np.uint64(0xFFFFF)) << _32) | w[..., 1::2]) | np.uint64(1023 << 52)
    return (bits.view(np.float64) - 1.0) * (float(hi) - float(lo)) + float(lo)
