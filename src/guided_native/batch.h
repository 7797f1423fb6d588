// Filling the rows of a batch bitmask in native threads.  Each distinct matcher is one task (a
// matcher object is not shared between threads); the grammars behind them are.  Also: a batch's
// masks computed in the background (`BackgroundFill`), for the decoders' overlap with the
// forward pass.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "matcher.h"

namespace guided_native {

inline void fill_rows(const std::vector<const Matcher*>& matchers, int32_t* data, int64_t rows, int64_t cols,
                      int threads) {
  if (static_cast<int64_t>(matchers.size()) > rows)
    throw std::out_of_range("bitmask has " + std::to_string(rows) + " rows for " + std::to_string(matchers.size()) +
                            " matchers");
  // Rows of one matcher object go to one task.
  std::vector<std::vector<int64_t>> tasks;
  std::unordered_map<const Matcher*, size_t> task_of;
  std::vector<const Matcher*> task_matcher;
  for (size_t r = 0; r < matchers.size(); ++r) {
    auto [it, fresh] = task_of.emplace(matchers[r], tasks.size());
    if (fresh) {
      tasks.emplace_back();
      task_matcher.push_back(matchers[r]);
    }
    tasks[it->second].push_back(static_cast<int64_t>(r));
  }
  // Cached masks are copies: a small batch of them is done here (a thread costs more to start than
  // a few copies); threads take the masks still to compute, and large batches whole.
  constexpr size_t kParallelCopies = 512;
  const bool copy_here = tasks.size() < kParallelCopies;
  std::vector<size_t> todo;
  for (size_t k = 0; k < tasks.size(); ++k) {
    if (copy_here && task_matcher[k]->cached()) {
      for (int64_t r : tasks[k]) task_matcher[k]->fill_row(data, rows, cols, r);
    } else {
      todo.push_back(k);
    }
  }
  std::atomic<size_t> next{0};
  std::exception_ptr error;
  std::mutex error_mu;
  if (!copy_here) {  // a large batch: every task goes to the threads
    todo.clear();
    for (size_t k = 0; k < tasks.size(); ++k) todo.push_back(k);
  }
  auto work = [&] {
    for (;;) {
      const size_t i = next.fetch_add(1, std::memory_order_relaxed);
      if (i >= todo.size()) return;
      const size_t k = todo[i];
      try {
        for (int64_t r : tasks[k]) task_matcher[k]->fill_row(data, rows, cols, r);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mu);
        if (!error) error = std::current_exception();
      }
    }
  };
  const int n = std::max(1, std::min<int>(threads, static_cast<int>(todo.size())));
  std::vector<std::thread> pool;
  pool.reserve(n - 1);
  for (int i = 1; i < n; ++i) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
}

// A batch's masks computed by background native threads while the caller does something else
// (the decoders run the model's forward pass): each matcher computes and keeps its current mask,
// so the caller's next fill finds it.  The threads never need the GIL, so the caller's Python
// thread is never interrupted by them.  The caller keeps the matchers alive and touches none of
// them until join(); an error computing a mask is dropped here (the caller's own fill computes
// that mask again and raises it).
class BackgroundFill {
 public:
  BackgroundFill(std::vector<const Matcher*> matchers, int threads) {
    // Masks already cached are looked up here: no thread is started for a batch of lookups.
    for (const Matcher* m : matchers)
      if (!m->cached()) matchers_.push_back(m);
    const int n = std::min<int>(std::max(1, threads), static_cast<int>(matchers_.size()));
    for (int i = 0; i < n; ++i) pool_.emplace_back([this] { work(); });
  }
  BackgroundFill(const BackgroundFill&) = delete;
  BackgroundFill& operator=(const BackgroundFill&) = delete;
  ~BackgroundFill() { join(); }

  // Wait for the threads; the seconds they worked (summed over threads, from each one's start).
  double join() {
    for (auto& t : pool_)
      if (t.joinable()) t.join();
    return static_cast<double>(busy_ns_.load()) * 1e-9;
  }

 private:
  void work() {
    const auto start = std::chrono::steady_clock::now();
    for (;;) {
      const size_t i = next_.fetch_add(1, std::memory_order_relaxed);
      if (i >= matchers_.size()) break;
      try {
        matchers_[i]->words();
      } catch (...) {
      }
    }
    busy_ns_ += std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start).count();
  }

  std::vector<const Matcher*> matchers_;
  std::atomic<size_t> next_{0};
  std::atomic<int64_t> busy_ns_{0};
  std::vector<std::thread> pool_;
};

}  // namespace guided_native
