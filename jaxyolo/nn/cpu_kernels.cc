// jaxyolo's own XLA:CPU kernel, as an XLA FFI custom call: per-channel sums for train-mode BatchNorm.
//
// JaxyoloChannelSums(a, b) -> (sum(a), sum(a * b)) over every axis but the last (channels) of two float32 arrays
// of one shape: BatchNorm's statistics (a = b = x: sum(x), sum(x^2)) and its gradient's (sum(g), sum(g * x)),
// each in one pass over its inputs where XLA:CPU runs two single-output reductions (jaxyolo/nn/cpu_kernels.py).
// Rows (all axes but the last) are cut into fixed chunks of ~128 KiB; each chunk is summed in float32 blocks of 64
// rows (four rows at a time) added up in float64, and the chunks in float64 in chunk order, so the result does not
// depend on which thread ran which chunk.
// The calling thread and up to (XLA's intra-op thread pool - 1) helpers take chunks from a shared counter; the
// caller never waits on a helper that has not started (it takes the remaining chunks itself).
// Loaded by jaxyolo/nn/cpu_kernels.py with ctypes; needs only jaxlib's FFI headers.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr int64_t kChunkBytes = 128 << 10;

#if defined(__x86_64__)
#define JAXYOLO_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define JAXYOLO_CLONES
#endif

// s1[j] = sum_r a[r, j], s2[j] = sum_r a[r, j] * b[r, j] over `rows` rows of `c` channels, in float32 (four rows per
// update: a quarter of the loop-carried additions).
JAXYOLO_CLONES void BlockSums(const float* __restrict a, const float* __restrict b, int64_t rows, int64_t c,
                              float* __restrict s1, float* __restrict s2) {
  for (int64_t j = 0; j < c; ++j) {
    s1[j] = 0.f;
    s2[j] = 0.f;
  }
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4) {
    const float *a0 = a + r * c, *a1 = a0 + c, *a2 = a1 + c, *a3 = a2 + c;
    const float *b0 = b + r * c, *b1 = b0 + c, *b2 = b1 + c, *b3 = b2 + c;
    for (int64_t j = 0; j < c; ++j) {
      s1[j] += (a0[j] + a1[j]) + (a2[j] + a3[j]);
      s2[j] += (a0[j] * b0[j] + a1[j] * b1[j]) + (a2[j] * b2[j] + a3[j] * b3[j]);
    }
  }
  for (; r < rows; ++r) {
    for (int64_t j = 0; j < c; ++j) {
      s1[j] += a[r * c + j];
      s2[j] += a[r * c + j] * b[r * c + j];
    }
  }
}

constexpr int64_t kBlockRows = 64;  // float32 runs of 16 four-row updates, then float64: ~XLA's accuracy or better

struct Job {
  const float *a, *b;
  int64_t rows, c, chunk_rows, chunks;
  double* partial;  // chunks x {sum a, sum a*b} x c; owned by the caller, which outlives every chunk taken
  std::atomic<int64_t> next{0}, done{0};

  void Work() {
    std::vector<float> block(2 * c);
    for (;;) {
      int64_t k = next.fetch_add(1, std::memory_order_relaxed);
      if (k >= chunks) return;
      double *d1 = partial + k * 2 * c, *d2 = d1 + c;
      for (int64_t r0 = k * chunk_rows, end = std::min(rows, r0 + chunk_rows); r0 < end; r0 += kBlockRows) {
        BlockSums(a + r0 * c, b + r0 * c, std::min(kBlockRows, end - r0), c, block.data(), block.data() + c);
        for (int64_t j = 0; j < c; ++j) {
          d1[j] += block[j];
          d2[j] += block[c + j];
        }
      }
      done.fetch_add(1, std::memory_order_release);
    }
  }
};

ffi::Error ChannelSums(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> a, ffi::Buffer<ffi::F32> b,
                       ffi::ResultBuffer<ffi::F32> sum_a, ffi::ResultBuffer<ffi::F32> sum_ab) {
  auto dims = a.dimensions();
  if (dims.size() == 0 || b.element_count() != a.element_count())
    return ffi::Error::InvalidArgument("JaxyoloChannelSums: a and b must have one shape of rank >= 1");
  int64_t c = dims.back();
  float *o1 = sum_a->typed_data(), *o2 = sum_ab->typed_data();
  if (c == 0) return ffi::Error::Success();
  auto job = std::make_shared<Job>();  // shared: a helper that starts after the caller returned only reads it
  job->a = a.typed_data();
  job->b = b.typed_data();
  job->c = c;
  job->rows = a.element_count() / c;
  job->chunk_rows = std::max<int64_t>(4, (kChunkBytes / int64_t(sizeof(float)) / c) & ~int64_t{3});
  job->chunks = (job->rows + job->chunk_rows - 1) / job->chunk_rows;
  std::vector<double> partial(job->chunks * 2 * c, 0.0);
  job->partial = partial.data();
  int64_t helpers = std::min<int64_t>(pool.num_threads(), job->chunks) - 1;
  for (int64_t i = 0; i < helpers; ++i) pool.Schedule([job] { job->Work(); });
  job->Work();
  while (job->done.load(std::memory_order_acquire) < job->chunks) std::this_thread::yield();
  for (int64_t j = 0; j < c; ++j) {
    double t1 = 0, t2 = 0;
    for (int64_t k = 0; k < job->chunks; ++k) {
      t1 += partial[k * 2 * c + j];
      t2 += partial[k * 2 * c + c + j];
    }
    o1[j] = float(t1);
    o2[j] = float(t2);
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxyoloChannelSums, ChannelSums,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());
