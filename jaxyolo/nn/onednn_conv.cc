// oneDNN's float32 2-D convolution (forward), its input gradient and its kernel gradient as XLA:CPU FFI custom calls.
//
// Loaded by jaxyolo/nn/onednn.py with ctypes after libdnnl (the onednn-cpu-gomp wheel) is loaded with RTLD_GLOBAL,
// which resolves the dnnl_* symbols this library leaves undefined. Layouts are JAX's NHWC activations and HWIO
// kernels. A primitive is created once per shape/stride/padding/thread count (oneDNN picks its kernel there) and
// then run concurrently from XLA's threads with a scratchpad of the call's own.

#include <omp.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <utility>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"
#include "ffi_slices.h"

namespace ffi = xla::ffi;
using dnnl::memory;
using jaxyolo::Sliced;

namespace {

enum Kind : int64_t { kForward = 0, kKernelGrad = 1, kInputGrad = 2 };

struct Geometry {
  memory::dims x, w, y;  // oneDNN's logical dims: x/y {N, C, H, W}, w {O, I, KH, KW}
  memory::dims strides, pad_l, pad_r;
};

struct Plan {
  dnnl::primitive primitive;
  memory::desc x_md, w_md, y_md, scratch_md;
  bool reorder_w = false;  // weights in oneDNN's blocked format: reordered from HWIO before (forward, input
                           // gradient) or into HWIO after (kernel gradient) the primitive
  memory::desc w_user_md;
  dnnl::primitive reorder;
};

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

memory::desc Desc(const memory::dims& dims, memory::format_tag tag) {
  return memory::desc(dims, memory::data_type::f32, tag);
}

std::unique_ptr<Plan> MakePlan(Kind kind, const Geometry& g) {
  auto& eng = Engine();
  auto plan = std::make_unique<Plan>();
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  auto x_md = Desc(g.x, memory::format_tag::nhwc);
  auto y_md = Desc(g.y, memory::format_tag::nhwc);
  auto w_md = Desc(g.w, memory::format_tag::hwio);
  auto algo = dnnl::algorithm::convolution_direct;
  auto w_any = Desc(g.w, memory::format_tag::any);
  // Weights read in HWIO as given, unless oneDNN then falls back to its im2col GEMM kernel ("gemm" in the
  // implementation's name: on AVX2-only CPUs, whose direct kernels want blocked weights); then the direct kernel with
  // its own weight format, the weights reordered into a per-call buffer before the primitive (a 3x3x64x128 kernel:
  // ~74k floats, microseconds, against a convolution of milliseconds). ``make``: weights desc -> primitive_desc.
  auto is_gemm = [](const auto& pd) { return std::string(pd.impl_info_str()).find("gemm") != std::string::npos; };
  auto prefer_direct = [&](auto make) {
    auto pd = make(w_md);
    if (is_gemm(pd)) {
      auto direct = make(w_any);
      if (!is_gemm(direct)) {
        if (direct.weights_desc() != w_md) {
          plan->reorder_w = true;
          plan->w_user_md = w_md;
          plan->reorder = dnnl::reorder(dnnl::reorder::primitive_desc(eng, w_md, eng, direct.weights_desc()));
          w_md = direct.weights_desc();
        }
        return direct;
      }
    }
    return pd;
  };
  if (kind == kForward) {
    auto pd = prefer_direct([&](const memory::desc& w) {
      return dnnl::convolution_forward::primitive_desc(eng, dnnl::prop_kind::forward_inference, algo, x_md, w, y_md,
                                                       g.strides, g.pad_l, g.pad_r, attr);
    });
    plan->primitive = dnnl::convolution_forward(pd);
    plan->scratch_md = pd.scratchpad_desc();
  } else if (kind == kInputGrad) {
    auto pd = prefer_direct([&](const memory::desc& w) {
      dnnl::convolution_forward::primitive_desc hint(eng, dnnl::prop_kind::forward_training, algo, x_md, w, y_md,
                                                     g.strides, g.pad_l, g.pad_r);
      return dnnl::convolution_backward_data::primitive_desc(eng, algo, x_md, w, y_md, g.strides, g.pad_l, g.pad_r,
                                                             hint, attr);
    });
    plan->primitive = dnnl::convolution_backward_data(pd);
    plan->scratch_md = pd.scratchpad_desc();
  } else {
    // A fixed HWIO kernel gradient makes oneDNN fall back to a slow GEMM kernel; its own format, then a reorder.
    dnnl::convolution_forward::primitive_desc hint(eng, dnnl::prop_kind::forward_training, algo, x_md, w_any, y_md,
                                                   g.strides, g.pad_l, g.pad_r);
    dnnl::convolution_backward_weights::primitive_desc pd(eng, algo, x_md, w_any, y_md, g.strides, g.pad_l, g.pad_r,
                                                          hint, attr);
    plan->primitive = dnnl::convolution_backward_weights(pd);
    plan->scratch_md = pd.scratchpad_desc();
    if (pd.diff_weights_desc() != w_md) {
      plan->reorder_w = true;
      plan->w_user_md = w_md;
      w_md = pd.diff_weights_desc();
      plan->reorder = dnnl::reorder(dnnl::reorder::primitive_desc(eng, w_md, eng, plan->w_user_md));
    }
  }
  plan->x_md = x_md;
  plan->w_md = w_md;
  plan->y_md = y_md;
  return plan;
}

using Key = std::tuple<int64_t, memory::dims, memory::dims, memory::dims, memory::dims, memory::dims, memory::dims,
                       int64_t>;

const Plan& GetPlan(Kind kind, const Geometry& g, int64_t threads) {
  static std::mutex mu;
  static std::map<Key, std::unique_ptr<Plan>> plans;
  Key key{kind, g.x, g.w, g.y, g.strides, g.pad_l, g.pad_r, threads};
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = plans[key];
  if (!slot) slot = MakePlan(kind, g);
  return *slot;
}

memory::dims Nchw(ffi::Span<const int64_t> nhwc) { return {nhwc[0], nhwc[3], nhwc[1], nhwc[2]}; }
memory::dims Oihw(ffi::Span<const int64_t> hwio) { return {hwio[3], hwio[2], hwio[0], hwio[1]}; }

ffi::Error Run(Kind kind, ffi::Span<const int64_t> x_dims, ffi::Span<const int64_t> w_dims,
               ffi::Span<const int64_t> y_dims, float* x, float* w, float* y, int64_t sh, int64_t sw, int64_t pt,
               int64_t pb, int64_t pl, int64_t pr, int64_t threads) {
  Geometry g{Nchw(x_dims), Oihw(w_dims), Nchw(y_dims), {sh, sw}, {pt, pl}, {pb, pr}};
  try {
    // OpenMP's team size is a per-thread setting, and XLA's threads run calls with different counts: set it always.
    static const int default_threads = omp_get_max_threads();  // OMP_NUM_THREADS, else the cores
    if (threads <= 0) threads = default_threads;
    omp_set_num_threads(static_cast<int>(threads));
    const Plan& plan = GetPlan(kind, g, threads);
    auto& eng = Engine();
    thread_local dnnl::stream stream(eng);
    std::unique_ptr<char[]> scratch(new char[plan.scratch_md.get_size() + 1]);  // uninitialised: no zero fill
    memory scratch_mem(plan.scratch_md, eng, scratch.get());
    memory x_mem(plan.x_md, eng, x), y_mem(plan.y_md, eng, y);
    // forward and input gradient with blocked weights: the HWIO weights reordered into a buffer of this call's
    memory w_in(plan.reorder_w ? plan.w_user_md : plan.w_md, eng, w);
    memory w_mem = w_in;
    if (kind != kKernelGrad && plan.reorder_w) {
      w_mem = memory(plan.w_md, eng);
      plan.reorder.execute(stream, {{DNNL_ARG_FROM, w_in}, {DNNL_ARG_TO, w_mem}});
    }
    if (kind == kForward) {
      plan.primitive.execute(stream, {{DNNL_ARG_SRC, x_mem}, {DNNL_ARG_WEIGHTS, w_mem}, {DNNL_ARG_DST, y_mem},
                                      {DNNL_ARG_SCRATCHPAD, scratch_mem}});
    } else if (kind == kInputGrad) {  // x: the input's gradient (written), y: the output's (read)
      plan.primitive.execute(stream, {{DNNL_ARG_DIFF_SRC, x_mem}, {DNNL_ARG_WEIGHTS, w_mem},
                                      {DNNL_ARG_DIFF_DST, y_mem}, {DNNL_ARG_SCRATCHPAD, scratch_mem}});
    } else {
      memory w_out(plan.reorder_w ? plan.w_user_md : plan.w_md, eng, w);
      memory w_mem = plan.reorder_w ? memory(plan.w_md, eng) : w_out;
      plan.primitive.execute(stream, {{DNNL_ARG_SRC, x_mem}, {DNNL_ARG_DIFF_WEIGHTS, w_mem},
                                      {DNNL_ARG_DIFF_DST, y_mem}, {DNNL_ARG_SCRATCHPAD, scratch_mem}});
      if (plan.reorder_w) plan.reorder.execute(stream, {{DNNL_ARG_FROM, w_mem}, {DNNL_ARG_TO, w_out}});
    }
    stream.wait();
  } catch (const dnnl::error& e) {
    return ffi::Error::Internal(std::string("jaxyolo oneDNN convolution: ") + e.what());
  }
  return ffi::Error::Success();
}

using F32 = ffi::Buffer<ffi::F32>;
using F32Out = ffi::ResultBuffer<ffi::F32>;

bool Nhwc(ffi::Span<const int64_t> d) { return d.size() == 4; }

// Run on `parts` batch slices, each slice its own rows of x and y (Run's x and y: for the input gradient x is
// written, y read) and the weights at w_of(slice): the same w for the forward pass and the input gradient, a buffer
// per slice for the kernel gradient.
template <typename WeightsOf>
ffi::Error RowSliced(Kind kind, ffi::ThreadPool& pool, ffi::Span<const int64_t> xd, float* xp,
                     ffi::Span<const int64_t> wd, WeightsOf w_of, ffi::Span<const int64_t> yd, float* yp, int64_t sh,
                     int64_t sw, int64_t pt, int64_t pb, int64_t pl, int64_t pr, int64_t threads, int64_t parts,
                     int64_t helpers = 1) {
  if (!Nhwc(xd) || !Nhwc(wd) || !Nhwc(yd) || xd[0] != yd[0]) {
    return ffi::Error::InvalidArgument("jaxyolo oneDNN convolution: operands must be NHWC/HWIO (rank 4)");
  }
  std::array<int64_t, 4> xa{xd[0], xd[1], xd[2], xd[3]}, ya{yd[0], yd[1], yd[2], yd[3]};
  std::vector<int64_t> wv(wd.begin(), wd.end());
  return Sliced(pool, xa[0], parts, [=](int64_t i, int64_t lo, int64_t rows) {
    const int64_t xs[4] = {rows, xa[1], xa[2], xa[3]}, ys[4] = {rows, ya[1], ya[2], ya[3]};
    return Run(kind, ffi::Span<const int64_t>(xs, 4), ffi::Span<const int64_t>(wv.data(), 4),
               ffi::Span<const int64_t>(ys, 4), xp + lo * xa[1] * xa[2] * xa[3], w_of(i),
               yp + lo * ya[1] * ya[2] * ya[3], sh, sw, pt, pb, pl, pr, threads);
  }, helpers);
}

// Inference (parts == 0): one single-thread slice per thread of XLA's pool, every pool thread taking slices, so no
// OpenMP team spins beside XLA's threads, which run the ops around the call. A batch with an image per pool thread is
// cut into batch slices, a smaller one into bands of output rows per image (each band reads its input rows and pads
// only at the image's edges).
ffi::Error Bands(ffi::ThreadPool& pool, F32& x, F32& w, F32Out& y, int64_t sh, int64_t sw, int64_t pt, int64_t pl,
                 int64_t pr, int64_t team) {
  auto xd = x.dimensions(), wd = w.dimensions(), yd = y->dimensions();
  if (!Nhwc(xd) || !Nhwc(wd) || !Nhwc(yd) || xd[0] != yd[0]) {
    return ffi::Error::InvalidArgument("jaxyolo oneDNN convolution: operands must be NHWC/HWIO (rank 4)");
  }
  const int64_t n = xd[0], h = xd[1], ho = yd[1], kh = wd[0];
  const int64_t bands = std::min(ho, (team + n - 1) / n);
  const int64_t x_row = xd[2] * xd[3], y_row = yd[2] * yd[3];
  const std::array<int64_t, 4> xa{1, 0, xd[2], xd[3]}, ya{1, 0, yd[2], yd[3]}, wa{wd[0], wd[1], wd[2], wd[3]};
  float *xp = x.typed_data(), *wp = w.typed_data(), *yp = y->typed_data();
  return Sliced(pool, n * bands, n * bands, [=](int64_t i, int64_t, int64_t) {
    const int64_t img = i / bands, b = i % bands, r0 = ho * b / bands, r1 = ho * (b + 1) / bands;
    const int64_t top = r0 * sh - pt, bottom = (r1 - 1) * sh - pt + kh - 1;  // input rows the band reads
    const int64_t lo = std::max<int64_t>(0, top), hi = std::min(h - 1, bottom);
    std::array<int64_t, 4> xs = xa, ys = ya;
    xs[1] = hi - lo + 1;
    ys[1] = r1 - r0;
    return Run(kForward, ffi::Span<const int64_t>(xs.data(), 4), ffi::Span<const int64_t>(wa.data(), 4),
               ffi::Span<const int64_t>(ys.data(), 4), xp + (img * h + lo) * x_row, wp, yp + (img * ho + r0) * y_row,
               sh, sw, lo - top, bottom - hi, pl, pr, 1);
  }, team - 1);
}

ffi::Error Forward(ffi::ThreadPool pool, F32 x, F32 w, F32Out y, int64_t sh, int64_t sw, int64_t pt, int64_t pb,
                   int64_t pl, int64_t pr, int64_t threads, int64_t parts) {
  float* wp = w.typed_data();
  int64_t helpers = 1;
  if (parts == 0) {
    const int64_t team = pool.num_threads(), n = x.dimensions().size() == 4 ? x.dimensions()[0] : 0;
    if (team > 1 && n > 0 && n < team) return Bands(pool, x, w, y, sh, sw, pt, pl, pr, team);
    parts = team > 1 ? team : 1;
    if (parts > 1) threads = 1, helpers = parts - 1;
  }
  return RowSliced(kForward, pool, x.dimensions(), x.typed_data(), w.dimensions(), [wp](int64_t) { return wp; },
                   y->dimensions(), y->typed_data(), sh, sw, pt, pb, pl, pr, threads, parts, helpers);
}

ffi::Error InputGrad(ffi::ThreadPool pool, F32 gy, F32 w, F32Out dx, int64_t sh, int64_t sw, int64_t pt, int64_t pb,
                     int64_t pl, int64_t pr, int64_t threads, int64_t parts) {
  float* wp = w.typed_data();
  return RowSliced(kInputGrad, pool, dx->dimensions(), dx->typed_data(), w.dimensions(), [wp](int64_t) { return wp; },
                   gy.dimensions(), gy.typed_data(), sh, sw, pt, pb, pl, pr, threads, parts);
}

// Kernel gradient: the sum of the slices' kernel gradients (the first written to dw, the others to buffers of their
// own, added at the end).
ffi::Error KernelGrad(ffi::ThreadPool pool, F32 x, F32 gy, F32Out dw, int64_t sh, int64_t sw, int64_t pt,
                      int64_t pb, int64_t pl, int64_t pr, int64_t threads, int64_t parts) {
  auto wd = dw->dimensions();
  if (!Nhwc(wd)) return ffi::Error::InvalidArgument("jaxyolo oneDNN convolution: operands must be NHWC/HWIO (rank 4)");
  const int64_t w_size = wd[0] * wd[1] * wd[2] * wd[3];
  if (x.dimensions().size() == 4) parts = jaxyolo::SliceCount(pool, x.dimensions()[0], parts);  // RowSliced checks x
  auto partial = std::make_shared<std::vector<std::vector<float>>>(parts - 1);
  float* out = dw->typed_data();
  auto w_of = [partial, out, w_size](int64_t i) {
    if (i == 0) return out;
    (*partial)[i - 1].resize(w_size);
    return (*partial)[i - 1].data();
  };
  ffi::Error e = RowSliced(kKernelGrad, pool, x.dimensions(), x.typed_data(), wd, w_of, gy.dimensions(),
                           gy.typed_data(), sh, sw, pt, pb, pl, pr, threads, parts);
  if (e.failure()) return e;
  for (const auto& p : *partial) {
    for (int64_t k = 0; k < w_size; ++k) out[k] += p[k];
  }
  return ffi::Error::Success();
}

template <typename B>
auto WithAttrs(B&& binding) {
  return std::move(binding)
      .template Attr<int64_t>("sh")
      .template Attr<int64_t>("sw")
      .template Attr<int64_t>("pt")
      .template Attr<int64_t>("pb")
      .template Attr<int64_t>("pl")
      .template Attr<int64_t>("pr")
      .template Attr<int64_t>("threads");
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxyoloConvFwd, Forward,
                              WithAttrs(ffi::Ffi::Bind().Ctx<ffi::ThreadPool>().Arg<F32>().Arg<F32>().Ret<F32>())
                                  .Attr<int64_t>("parts"));
XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxyoloConvBwdData, InputGrad,
                              WithAttrs(ffi::Ffi::Bind().Ctx<ffi::ThreadPool>().Arg<F32>().Arg<F32>().Ret<F32>())
                                  .Attr<int64_t>("parts"));
XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxyoloConvBwdWeights, KernelGrad,
                              WithAttrs(ffi::Ffi::Bind().Ctx<ffi::ThreadPool>().Arg<F32>().Arg<F32>().Ret<F32>())
                                  .Attr<int64_t>("parts"));
