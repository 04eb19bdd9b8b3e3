// A float32 matmul on oneDNN's sgemm as an XLA:CPU FFI custom call, for inference executables (jaxyolo/nn/onednn.py):
// single-thread sgemm calls on slices that every thread of XLA's pool takes (ffi_slices.h), rows of x where there
// are enough, else columns of w (a batch-1 head: each thread reads its part of the weights).

#include <cstdint>

#include "ffi_slices.h"
#include "oneapi/dnnl/dnnl.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr int64_t kRowsPerThread = 8;  // fewer rows of x per pool thread: the call is cut into column slices
constexpr int64_t kColumnAlign = 16;   // column slices start at multiples of this (whole vectors of y's rows)

ffi::Error Sgemm(int64_t m, int64_t n, int64_t k, const float* x, const float* w, int64_t ldw, float* y, int64_t ldy) {
  jaxyolo::OneThreadTeam one;
  if (dnnl_sgemm('N', 'N', m, n, k, 1.f, x, k, w, ldw, 0.f, y, ldy) != dnnl_success) {
    return ffi::Error::Internal("jaxyolo matmul: oneDNN's sgemm failed");
  }
  return ffi::Error::Success();
}

// y [M, N] = x [M, K] w [K, N], all row-major.
ffi::Error Matmul(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> w,
                  ffi::ResultBuffer<ffi::F32> y) {
  auto xd = x.dimensions(), wd = w.dimensions(), yd = y->dimensions();
  if (xd.size() != 2 || wd.size() != 2 || yd.size() != 2 || xd[1] != wd[0] || yd[0] != xd[0] || yd[1] != wd[1]) {
    return ffi::Error::InvalidArgument("jaxyolo matmul: operands must be x [M, K], w [K, N] -> [M, N]");
  }
  const int64_t m = xd[0], k = xd[1], n = wd[1], team = pool.num_threads();
  const float *xp = x.typed_data(), *wp = w.typed_data();
  float* yp = y->typed_data();
  if (m == 0 || n == 0) return ffi::Error::Success();
  if (m >= kRowsPerThread * team || n < 2 * kColumnAlign) {
    return jaxyolo::Sliced(pool, m, team, [=](int64_t, int64_t lo, int64_t rows) {
      return Sgemm(rows, n, k, xp + lo * k, wp, n, yp + lo * n, n);
    }, team - 1);
  }
  const int64_t parts = std::min(team, n / kColumnAlign);
  return jaxyolo::Sliced(pool, parts, parts, [=](int64_t i, int64_t, int64_t) {
    const int64_t c0 = n * i / parts / kColumnAlign * kColumnAlign;
    const int64_t c1 = i + 1 == parts ? n : n * (i + 1) / parts / kColumnAlign * kColumnAlign;
    return Sgemm(m, c1 - c0, k, xp, wp + c0, n, yp + c0, n);
  }, team - 1);
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxyoloMatmul, Matmul,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());
