// The matcher protocol in C++: what `fill_bitmasks` needs of any engine's matcher, plus writing a
// mask into a caller-owned bitmask row.  A matcher object belongs to one thread at a time; the
// grammar it points to is shared and thread-safe.
#pragma once

#include <memory>
#include <string>

#include "common.h"

namespace guided_native {

class Matcher {
 public:
  virtual ~Matcher() = default;
  virtual const Words& words() const = 0;  // may compute and cache; safe off the GIL
  virtual bool cached() const = 0;  // is words() a lookup (no mask to compute)?
  virtual size_t num_tokens() const = 0;
  virtual int32_t vocab_size() const = 0;
  virtual void advance(int64_t token) = 0;
  virtual void rollback(int64_t n) = 0;
  virtual bool accepts_eos() const = 0;
  virtual bool is_finished() const = 0;
  virtual std::string forced_bytes() const = 0;
  virtual Words budget_words(int64_t remaining) const = 0;
  virtual std::unique_ptr<Matcher> clone() const = 0;

  // Write this matcher's mask into `row` of a [rows, cols] int32 bitmask, zeroing words past it.
  void fill_row(int32_t* data, int64_t rows, int64_t cols, int64_t row) const {
    if (row < 0 || row >= rows)
      throw std::out_of_range("bitmask row " + std::to_string(row) + " out of range for " + std::to_string(rows) +
                              " rows");
    const int64_t need = (vocab_size() + 31) / 32;
    if (cols < need)
      mismatch("bitmask has " + std::to_string(cols) + " words per row; the vocabulary needs " + std::to_string(need));
    const Words& w = words();
    int32_t* out = data + row * cols;
    std::memcpy(out, w.data(), static_cast<size_t>(need) * sizeof(uint32_t));
    if (cols > need) std::memset(out + need, 0, static_cast<size_t>(cols - need) * sizeof(uint32_t));
  }
};

}  // namespace guided_native
