// A 3x3, stride-1, 1-padded float32 convolution and its kernel gradient by Winograd's minimal filtering F(2x2, 3x3)
// as XLA:CPU FFI custom calls (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2015).
//
// Each 2x2 block of output pixels ("tile") is A^T [U (.) (B^T d B)] A, where d is the tile's 4x4 input window (zero
// outside the map) and U = G g G^T the 3x3 kernel g transformed to 4x4. Over all tiles that is 16 matmuls
// [tiles, C] x [C, O] (one per position of the 4x4 window): 16 multiply-adds per 4 output pixels and channel pair
// where the direct convolution takes 36, so 2.25x fewer. The transforms are additions. Each call first transforms
// the kernel (into [16, C, O], the 4x4 positions row by row), then the tiles in blocks (TilesPerBlock), each
// block's transformed inputs and products in thread-local buffers that stay in cache and its 16 matmuls on oneDNN's
// single-threaded sgemm. Both steps' slices are claimed by the calling thread and tasks on XLA's thread pool
// (ffi_slices.h). The kernel gradient is the transpose: dU = sum over tiles of (B^T d B) (.) (A g A^T) for the output
// gradient g, 16 matmuls [C, tiles] x [tiles, O], then dw = G^T dU G.
//
// Layouts: x NHWC, w HWIO, y NHWC.

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ffi_slices.h"
#include "oneapi/dnnl/dnnl.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using jaxyolo::OneThreadTeam;

namespace {

// Tiles per block: as many as keep a block's buffers in a core's L2 cache (16 x tiles x channels floats each),
// within [64, 256]: narrow layers' matmuls are short, and sgemm's per-call cost shows below ~256 rows (one core,
// 28x28 32->32, batch 32: 3.2 ms with 64-tile blocks, 2.9 with 256).
int64_t TilesPerBlock(int64_t c, int64_t o) { return std::clamp<int64_t>(16384 / std::max(c, o), 64, 256); }
constexpr int64_t kMinTiles = 16;  // the fewest tiles per block when a call has fewer blocks than threads to run them
// Floats between the 16 planes of a block's buffers: planes a power-of-two apart would share L1 cache sets (the
// transforms read or write all 16 at once).
constexpr int64_t kPlanePad = 48;

// B^T d B for one tile and `c` channels: d[k] points at the channels of window pixel k (row-major 4x4), v[k * ld].
__attribute__((target_clones("avx512f", "avx2", "default")))
void InputTile(const float* const* d, int64_t c, float* __restrict v, int64_t ld) {
  const float *__restrict d0 = d[0], *__restrict d1 = d[1], *__restrict d2 = d[2], *__restrict d3 = d[3];
  const float *__restrict d4 = d[4], *__restrict d5 = d[5], *__restrict d6 = d[6], *__restrict d7 = d[7];
  const float *__restrict d8 = d[8], *__restrict d9 = d[9], *__restrict d10 = d[10], *__restrict d11 = d[11];
  const float *__restrict d12 = d[12], *__restrict d13 = d[13], *__restrict d14 = d[14], *__restrict d15 = d[15];
#pragma omp simd
  for (int64_t i = 0; i < c; ++i) {
    // rows: B^T d (B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]), column by column
    const float r00 = d0[i] - d8[i], r01 = d1[i] - d9[i], r02 = d2[i] - d10[i], r03 = d3[i] - d11[i];
    const float r10 = d4[i] + d8[i], r11 = d5[i] + d9[i], r12 = d6[i] + d10[i], r13 = d7[i] + d11[i];
    const float r20 = d8[i] - d4[i], r21 = d9[i] - d5[i], r22 = d10[i] - d6[i], r23 = d11[i] - d7[i];
    const float r30 = d4[i] - d12[i], r31 = d5[i] - d13[i], r32 = d6[i] - d14[i], r33 = d7[i] - d15[i];
    // columns: (B^T d) B
    v[0 * ld + i] = r00 - r02, v[1 * ld + i] = r01 + r02, v[2 * ld + i] = r02 - r01, v[3 * ld + i] = r01 - r03;
    v[4 * ld + i] = r10 - r12, v[5 * ld + i] = r11 + r12, v[6 * ld + i] = r12 - r11, v[7 * ld + i] = r11 - r13;
    v[8 * ld + i] = r20 - r22, v[9 * ld + i] = r21 + r22, v[10 * ld + i] = r22 - r21, v[11 * ld + i] = r21 - r23;
    v[12 * ld + i] = r30 - r32, v[13 * ld + i] = r31 + r32, v[14 * ld + i] = r32 - r31, v[15 * ld + i] = r31 - r33;
  }
}

// A^T m A for one tile and `o` channels (A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]): m[k * ld], the 2x2 outputs y[0..3].
__attribute__((target_clones("avx512f", "avx2", "default")))
void OutputTile(const float* __restrict m, int64_t ld, int64_t o, float* const* y) {
  float *__restrict y0 = y[0], *__restrict y1 = y[1], *__restrict y2 = y[2], *__restrict y3 = y[3];
#pragma omp simd
  for (int64_t i = 0; i < o; ++i) {
    const float s00 = m[0 * ld + i] + m[4 * ld + i] + m[8 * ld + i];
    const float s01 = m[1 * ld + i] + m[5 * ld + i] + m[9 * ld + i];
    const float s02 = m[2 * ld + i] + m[6 * ld + i] + m[10 * ld + i];
    const float s03 = m[3 * ld + i] + m[7 * ld + i] + m[11 * ld + i];
    const float s10 = m[4 * ld + i] - m[8 * ld + i] - m[12 * ld + i];
    const float s11 = m[5 * ld + i] - m[9 * ld + i] - m[13 * ld + i];
    const float s12 = m[6 * ld + i] - m[10 * ld + i] - m[14 * ld + i];
    const float s13 = m[7 * ld + i] - m[11 * ld + i] - m[15 * ld + i];
    y0[i] = s00 + s01 + s02, y1[i] = s01 - s02 - s03, y2[i] = s10 + s11 + s12, y3[i] = s11 - s12 - s13;
  }
}

// G g G^T for one input channel of the kernel and all `o` output channels (G = [[1, 0, 0], [1/2, 1/2, 1/2],
// [1/2, -1/2, 1/2], [0, 0, 1]]): g[(3 * i + j) * ld] are tap (i, j)'s weights, u[k * ld_u] position k's.
__attribute__((target_clones("avx512f", "avx2", "default")))
void KernelRow(const float* __restrict g, int64_t ld, int64_t o, float* __restrict u, int64_t ld_u) {
#pragma omp simd
  for (int64_t i = 0; i < o; ++i) {
    const float g00 = g[0 * ld + i], g01 = g[1 * ld + i], g02 = g[2 * ld + i];
    const float g10 = g[3 * ld + i], g11 = g[4 * ld + i], g12 = g[5 * ld + i];
    const float g20 = g[6 * ld + i], g21 = g[7 * ld + i], g22 = g[8 * ld + i];
    // G g: rows
    const float t00 = g00, t01 = g01, t02 = g02, t30 = g20, t31 = g21, t32 = g22;
    const float t10 = 0.5f * (g00 + g10 + g20), t11 = 0.5f * (g01 + g11 + g21), t12 = 0.5f * (g02 + g12 + g22);
    const float t20 = 0.5f * (g00 - g10 + g20), t21 = 0.5f * (g01 - g11 + g21), t22 = 0.5f * (g02 - g12 + g22);
    // (G g) G^T: columns
    u[0 * ld_u + i] = t00, u[1 * ld_u + i] = 0.5f * (t00 + t01 + t02), u[2 * ld_u + i] = 0.5f * (t00 - t01 + t02);
    u[3 * ld_u + i] = t02, u[4 * ld_u + i] = t10, u[5 * ld_u + i] = 0.5f * (t10 + t11 + t12);
    u[6 * ld_u + i] = 0.5f * (t10 - t11 + t12), u[7 * ld_u + i] = t12, u[8 * ld_u + i] = t20;
    u[9 * ld_u + i] = 0.5f * (t20 + t21 + t22), u[10 * ld_u + i] = 0.5f * (t20 - t21 + t22), u[11 * ld_u + i] = t22;
    u[12 * ld_u + i] = t30, u[13 * ld_u + i] = 0.5f * (t30 + t31 + t32), u[14 * ld_u + i] = 0.5f * (t30 - t31 + t32);
    u[15 * ld_u + i] = t32;
  }
}

// A g A^T of one output-gradient tile for `o` channels (A = [[1, 0], [1, 1], [1, -1], [0, -1]]): g[0..3] point at the
// tile's 2x2 gradient pixels (row-major; zeros outside the map), m[k * ld] position k's.
__attribute__((target_clones("avx512f", "avx2", "default")))
void GradTile(const float* const* g, int64_t o, float* __restrict m, int64_t ld) {
  const float *__restrict g0 = g[0], *__restrict g1 = g[1], *__restrict g2 = g[2], *__restrict g3 = g[3];
#pragma omp simd
  for (int64_t i = 0; i < o; ++i) {
    // rows: A g
    const float r00 = g0[i], r01 = g1[i], r10 = g0[i] + g2[i], r11 = g1[i] + g3[i];
    const float r20 = g0[i] - g2[i], r21 = g1[i] - g3[i], r30 = -g2[i], r31 = -g3[i];
    // columns: (A g) A^T
    m[0 * ld + i] = r00, m[1 * ld + i] = r00 + r01, m[2 * ld + i] = r00 - r01, m[3 * ld + i] = -r01;
    m[4 * ld + i] = r10, m[5 * ld + i] = r10 + r11, m[6 * ld + i] = r10 - r11, m[7 * ld + i] = -r11;
    m[8 * ld + i] = r20, m[9 * ld + i] = r20 + r21, m[10 * ld + i] = r20 - r21, m[11 * ld + i] = -r21;
    m[12 * ld + i] = r30, m[13 * ld + i] = r30 + r31, m[14 * ld + i] = r30 - r31, m[15 * ld + i] = -r31;
  }
}

// G^T d G for one input channel of the kernel gradient and all `o` output channels (KernelRow's transpose):
// du[k * ld_u] position k's gradient, dw[(3 * i + j) * ld] tap (i, j)'s.
__attribute__((target_clones("avx512f", "avx2", "default")))
void KernelGradRow(const float* __restrict du, int64_t ld_u, int64_t o, float* __restrict dw, int64_t ld) {
#pragma omp simd
  for (int64_t i = 0; i < o; ++i) {
    const float *__restrict d = du + i;
    // G^T d: rows (t_al for a = 0..2, l = 0..3)
    const float t00 = d[0] + 0.5f * (d[4 * ld_u] + d[8 * ld_u]), t10 = 0.5f * (d[4 * ld_u] - d[8 * ld_u]);
    const float t20 = 0.5f * (d[4 * ld_u] + d[8 * ld_u]) + d[12 * ld_u];
    const float t01 = d[ld_u] + 0.5f * (d[5 * ld_u] + d[9 * ld_u]), t11 = 0.5f * (d[5 * ld_u] - d[9 * ld_u]);
    const float t21 = 0.5f * (d[5 * ld_u] + d[9 * ld_u]) + d[13 * ld_u];
    const float t02 = d[2 * ld_u] + 0.5f * (d[6 * ld_u] + d[10 * ld_u]), t12 = 0.5f * (d[6 * ld_u] - d[10 * ld_u]);
    const float t22 = 0.5f * (d[6 * ld_u] + d[10 * ld_u]) + d[14 * ld_u];
    const float t03 = d[3 * ld_u] + 0.5f * (d[7 * ld_u] + d[11 * ld_u]), t13 = 0.5f * (d[7 * ld_u] - d[11 * ld_u]);
    const float t23 = 0.5f * (d[7 * ld_u] + d[11 * ld_u]) + d[15 * ld_u];
    // (G^T d) G: columns
    dw[0 * ld + i] = t00 + 0.5f * (t01 + t02), dw[1 * ld + i] = 0.5f * (t01 - t02);
    dw[2 * ld + i] = 0.5f * (t01 + t02) + t03, dw[3 * ld + i] = t10 + 0.5f * (t11 + t12);
    dw[4 * ld + i] = 0.5f * (t11 - t12), dw[5 * ld + i] = 0.5f * (t11 + t12) + t13;
    dw[6 * ld + i] = t20 + 0.5f * (t21 + t22), dw[7 * ld + i] = 0.5f * (t21 - t22);
    dw[8 * ld + i] = 0.5f * (t21 + t22) + t23;
  }
}

struct Shape {
  int64_t n, h, w, c, o;
  int64_t th, tw;  // tiles down and across: ceil(h / 2), ceil(w / 2)
};

// Whether x [N, H, W, C], a 3x3 kernel [3, 3, C, O] and a map [N, H, W, O] (the output or its gradient) fit.
bool Fits(ffi::Span<const int64_t> xd, ffi::Span<const int64_t> wd, ffi::Span<const int64_t> yd) {
  return xd.size() == 4 && wd.size() == 4 && yd.size() == 4 && wd[0] == 3 && wd[1] == 3 && wd[2] == xd[3] &&
         yd[0] == xd[0] && yd[1] == xd[1] && yd[2] == xd[2] && yd[3] == wd[3];
}

Shape ShapeOf(ffi::Span<const int64_t> xd, ffi::Span<const int64_t> wd) {
  return Shape{xd[0], xd[1], xd[2], xd[3], wd[3], (xd[1] + 1) / 2, (xd[2] + 1) / 2};
}

// Tile t's 4x4 input window, row-major (tiles numbered image by image, row by row): pointers to its pixels' channels
// in x, `outside` for the pixels off the map.
void Window(const Shape& s, const float* x, int64_t t, const float* outside, const float** d) {
  const int64_t img = t / (s.th * s.tw), ti = t / s.tw % s.th, tj = t % s.tw;
  for (int64_t a = 0; a < 4; ++a) {
    for (int64_t e = 0; e < 4; ++e) {
      const int64_t r = 2 * ti + a - 1, q = 2 * tj + e - 1;
      d[4 * a + e] = (r >= 0 && r < s.h && q >= 0 && q < s.w) ? x + ((img * s.h + r) * s.w + q) * s.c : outside;
    }
  }
}

// Tile t's 2x2 output pixels, row-major: pointers to their `ch` channels in y, `outside` for those past an odd map's
// edge.
template <typename T>
void Pixels(const Shape& s, T* y, int64_t ch, int64_t t, T* outside, T** p) {
  const int64_t img = t / (s.th * s.tw), ti = t / s.tw % s.th, tj = t % s.tw;
  for (int64_t a = 0; a < 2; ++a) {
    for (int64_t e = 0; e < 2; ++e) {
      const int64_t r = 2 * ti + a, q = 2 * tj + e;
      p[2 * a + e] = (r < s.h && q < s.w) ? y + ((img * s.h + r) * s.w + q) * ch : outside;
    }
  }
}

// buffer's data, grown to at least n floats (`fill`: new ones set to 0, for the zeros outside a map).
float* Grow(std::vector<float>& buffer, int64_t n, bool fill = false) {
  if (static_cast<int64_t>(buffer.size()) < n) {
    if (fill) buffer.assign(n, 0.f);
    else buffer.resize(n);
  }
  return buffer.data();
}

// Output tiles [t0, t0 + count); u: the transformed kernel, planes lu apart.
ffi::Error Block(const Shape& s, const float* x, const float* u, int64_t lu, float* y, int64_t t0, int64_t count) {
  thread_local std::vector<float> v_buf, m_buf, zero_buf, sink_buf;
  const int64_t lv = count * s.c + kPlanePad, lm = count * s.o + kPlanePad;
  float *v = Grow(v_buf, 16 * lv), *m = Grow(m_buf, 16 * lm), *sink = Grow(sink_buf, s.o);
  const float* zero = Grow(zero_buf, s.c, true);
  for (int64_t b = 0; b < count; ++b) {
    const float* d[16];
    Window(s, x, t0 + b, zero, d);
    InputTile(d, s.c, v + b * s.c, lv);
  }
  dnnl_status_t status = dnnl_success;
  {
    OneThreadTeam one;
    for (int64_t k = 0; k < 16 && status == dnnl_success; ++k) {
      status = dnnl_sgemm('N', 'N', count, s.o, s.c, 1.f, v + k * lv, s.c, u + k * lu, s.o, 0.f, m + k * lm, s.o);
    }
  }
  if (status != dnnl_success) return ffi::Error::Internal("jaxyolo Winograd convolution: oneDNN's sgemm failed");
  for (int64_t b = 0; b < count; ++b) {
    float* out[4];
    Pixels(s, y, s.o, t0 + b, sink, out);
    OutputTile(m + b * s.o, lm, s.o, out);
  }
  return ffi::Error::Success();
}

// The kernel gradient's sums over output tiles [t0, t0 + count), in blocks: du[k] (planes lu apart) += V_k^T M_k,
// where V_k are the blocks' transformed inputs and M_k their transformed output gradients g (beta 0 on the first
// block: du is written, not read, there).
ffi::Error GradSums(const Shape& s, const float* x, const float* g, float* du, int64_t lu, int64_t t0, int64_t count) {
  thread_local std::vector<float> v_buf, m_buf, zero_buf;
  const int64_t per_block = TilesPerBlock(s.c, s.o), most = std::min(per_block, count);
  const int64_t lv = most * s.c + kPlanePad, lm = most * s.o + kPlanePad;
  float *v = Grow(v_buf, 16 * lv), *m = Grow(m_buf, 16 * lm);
  const float* zero = Grow(zero_buf, std::max(s.c, s.o), true);
  dnnl_status_t status = dnnl_success;
  for (int64_t b0 = 0; b0 < count && status == dnnl_success; b0 += per_block) {
    const int64_t nb = std::min(per_block, count - b0);
    for (int64_t b = 0; b < nb; ++b) {
      const float *d[16], *gp[4];
      Window(s, x, t0 + b0 + b, zero, d);
      InputTile(d, s.c, v + b * s.c, lv);
      Pixels(s, g, s.o, t0 + b0 + b, zero, gp);
      GradTile(gp, s.o, m + b * s.o, lm);
    }
    OneThreadTeam one;
    for (int64_t k = 0; k < 16 && status == dnnl_success; ++k) {
      status = dnnl_sgemm('T', 'N', s.c, s.o, nb, 1.f, v + k * lv, s.c, m + k * lm, s.o, b0 == 0 ? 0.f : 1.f,
                          du + k * lu, s.o);
    }
  }
  if (status != dnnl_success) return ffi::Error::Internal("jaxyolo Winograd convolution: oneDNN's sgemm failed");
  return ffi::Error::Success();
}

using F32 = ffi::Buffer<ffi::F32>;
using F32Out = ffi::ResultBuffer<ffi::F32>;

// helpers: pool tasks that take blocks beside the calling thread (< 0: one per other thread of XLA's pool; 0: none).
ffi::Error Forward(ffi::ThreadPool pool, F32 x, F32 w, F32Out y, int64_t helpers) {
  if (!Fits(x.dimensions(), w.dimensions(), y->dimensions())) {
    return ffi::Error::InvalidArgument(
        "jaxyolo Winograd convolution: expected x [N, H, W, C], w [3, 3, C, O] and y [N, H, W, O]");
  }
  const Shape s = ShapeOf(x.dimensions(), w.dimensions());
  const int64_t tiles = s.n * s.th * s.tw;
  if (tiles == 0) return ffi::Error::Success();
  if (helpers < 0) helpers = pool.num_threads() - 1;  // the calling thread is one of them
  // The transformed kernel, its 16 planes kPlanePad apart: this thread's buffer, written and then read by all
  // workers (each Sliced call returns when its slices are done).
  thread_local std::vector<float> u;
  const int64_t lu = s.c * s.o + kPlanePad;
  u.resize(16 * lu);
  const float* wp = w.typed_data();
  float* up = u.data();
  ffi::Error e = jaxyolo::Sliced(
      pool, s.c, helpers + 1,
      [s, wp, up, lu](int64_t, int64_t lo, int64_t count) {
        for (int64_t c = lo; c < lo + count; ++c) KernelRow(wp + c * s.o, s.c * s.o, s.o, up + c * s.o, lu);
        return ffi::Error::Success();
      },
      helpers);
  if (e.failure()) return e;
  const int64_t per_block = TilesPerBlock(s.c, s.o);
  int64_t blocks = (tiles + per_block - 1) / per_block;
  if (blocks <= helpers) blocks = std::max(blocks, std::min(helpers + 1, tiles / kMinTiles));
  const float* xp = x.typed_data();
  float* yp = y->typed_data();
  return jaxyolo::Sliced(
      pool, tiles, blocks,
      [s, xp, up, lu, yp](int64_t, int64_t lo, int64_t count) { return Block(s, xp, up, lu, yp, lo, count); },
      helpers);
}

// The kernel gradient [3, 3, C, O] of the convolution of x [N, H, W, C] for the output gradient g [N, H, W, O]:
// G^T (sum over tiles of V (.) (A g A^T)) G, the sums over `parts` slices of the tiles, each into a buffer of its
// own (claimed like Forward's blocks), then added and transformed back by channel rows.
ffi::Error KernelGrad(ffi::ThreadPool pool, F32 x, F32 g, F32Out dw, int64_t parts, int64_t helpers) {
  if (!Fits(x.dimensions(), dw->dimensions(), g.dimensions())) {
    return ffi::Error::InvalidArgument(
        "jaxyolo Winograd kernel gradient: expected x [N, H, W, C], g [N, H, W, O] and dw [3, 3, C, O]");
  }
  const Shape s = ShapeOf(x.dimensions(), dw->dimensions());
  const int64_t tiles = s.n * s.th * s.tw, lu = s.c * s.o + kPlanePad;
  float* dwp = dw->typed_data();
  if (tiles == 0) {
    std::fill(dwp, dwp + 9 * s.c * s.o, 0.f);
    return ffi::Error::Success();
  }
  if (helpers < 0) helpers = pool.num_threads() - 1;
  parts = jaxyolo::SliceCount(pool, tiles, parts, helpers);
  std::unique_ptr<float[]> sums(new float[parts * 16 * lu]);  // each slice's, written by its first block
  const float *xp = x.typed_data(), *gp = g.typed_data();
  float* du = sums.get();
  ffi::Error e = jaxyolo::Sliced(
      pool, tiles, parts,
      [s, xp, gp, du, lu](int64_t i, int64_t lo, int64_t count) {
        return GradSums(s, xp, gp, du + i * 16 * lu, lu, lo, count);
      },
      helpers);
  if (e.failure()) return e;
  return jaxyolo::Sliced(
      pool, s.c, helpers + 1,
      [s, du, lu, parts, dwp](int64_t, int64_t lo, int64_t count) {
        for (int64_t c = lo; c < lo + count; ++c) {
          for (int64_t p = 1; p < parts; ++p) {
            for (int64_t k = 0; k < 16; ++k) {
              float* acc = du + k * lu + c * s.o;
              const float* add = du + p * 16 * lu + k * lu + c * s.o;
              for (int64_t i = 0; i < s.o; ++i) acc[i] += add[i];
            }
          }
          KernelGradRow(du + c * s.o, lu, s.o, dwp + c * s.o, s.c * s.o);
        }
        return ffi::Error::Success();
      },
      helpers);
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxyoloWinogradKernelGrad, KernelGrad,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<F32>()
                                  .Arg<F32>()
                                  .Ret<F32>()
                                  .Attr<int64_t>("parts")
                                  .Attr<int64_t>("helpers"));
XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxyoloWinogradFwd, Forward,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<F32>()
                                  .Arg<F32>()
                                  .Ret<F32>()
                                  .Attr<int64_t>("helpers"));
