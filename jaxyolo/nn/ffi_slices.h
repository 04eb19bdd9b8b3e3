// Work split into slices that the calling thread and tasks on XLA's intra-op thread pool claim one at a time, for
// jaxyolo's XLA:CPU FFI custom calls (onednn_conv.cc, winograd_conv.cc).

#ifndef JAXYOLO_NN_FFI_SLICES_H_
#define JAXYOLO_NN_FFI_SLICES_H_

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>
#include <utility>

#include "xla/ffi/api/ffi.h"

namespace jaxyolo {

struct Claims {
  std::atomic<int64_t> next{0}, finished{0};
  std::atomic<bool> failed{false};
};

// How many slices Sliced(pool, n, parts, slice, helpers) runs: `parts` (at most n), or 1, all n rows, where no pool
// task can help (a one-thread pool, no helpers, one part). Calls that keep a buffer per slice size them by it.
inline int64_t UsableHelpers(xla::ffi::ThreadPool& pool, int64_t parts, int64_t helpers) {
  return std::min<int64_t>(helpers, std::min<int64_t>(parts, pool.num_threads()) - 1);  // the caller takes one part
}

inline int64_t SliceCount(xla::ffi::ThreadPool& pool, int64_t n, int64_t parts, int64_t helpers = 1) {
  parts = std::max<int64_t>(1, std::min(parts, n));
  return UsableHelpers(pool, parts, helpers) < 1 ? 1 : parts;
}

// A call's work as `parts` slices of `n` rows that the calling thread and `helpers` tasks on XLA's intra-op thread
// pool claim one at a time: while XLA's other threads are busy the calling thread does every slice itself (the pool's
// tasks find none left), and when one is idle it takes slices too. More OpenMP threads in one call would take cores
// the rest of the step needs (and spin beside XLA's threads); separate calls per slice would run one after another
// (XLA:CPU hands ready thunks to other threads only past 8 of them). slice(i, lo, rows) -> ffi::Error.
template <typename Slice>
xla::ffi::Error Sliced(xla::ffi::ThreadPool& pool, int64_t n, int64_t parts, Slice slice, int64_t helpers = 1) {
  parts = SliceCount(pool, n, parts, helpers);
  if (parts == 1) return slice(0, 0, n);
  helpers = UsableHelpers(pool, parts, helpers);
  auto state = std::make_shared<Claims>();
  // A pool task may start after this call has returned (every slice taken): it then touches `state` alone.
  auto work = [state, n, parts, slice] {
    for (int64_t i; (i = state->next.fetch_add(1)) < parts;) {
      const int64_t lo = n * i / parts;
      if (slice(i, lo, n * (i + 1) / parts - lo).failure()) state->failed = true;
      state->finished.fetch_add(1, std::memory_order_acq_rel);
    }
  };
  for (int64_t k = 0; k < helpers; ++k) {
    auto task = work;
    pool.Schedule(std::move(task));
  }
  work();
  while (state->finished.load(std::memory_order_acquire) < parts) std::this_thread::yield();  // a slice in flight
  return state->failed ? xla::ffi::Error::Internal("jaxyolo convolution: a slice failed") : xla::ffi::Error::Success();
}

// oneDNN's OpenMP team for a scope: this thread alone (the other cores take other slices). OpenMP's team size is a
// per-thread setting that oneDNN's calls on this thread read too: restored when the scope ends.
class OneThreadTeam {
 public:
  OneThreadTeam() : team_(omp_get_max_threads()) { omp_set_num_threads(1); }
  ~OneThreadTeam() { omp_set_num_threads(team_); }

 private:
  int team_;
};

}  // namespace jaxyolo

#endif  // JAXYOLO_NN_FFI_SLICES_H_
