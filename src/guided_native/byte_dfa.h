// A byte DFA as the IR hands it over (`guided.fsm.ByteDFA`): a dense [states, 256] table, state 0
// dead.  Copied and validated once, so no later index read from it can leave the table.
#pragma once

#include <vector>

#include "common.h"

namespace guided_native {

class ByteDfa : public std::enable_shared_from_this<ByteDfa> {
 public:
  ByteDfa(const int32_t* transitions, size_t rows, size_t cols, const bool* accepting, size_t n_accepting,
          int64_t initial)
      : n_(static_cast<int32_t>(rows)) {
    if (rows == 0 || cols != 256) invalid("a byte DFA needs a [states, 256] transition table");
    if (rows > (1u << 28)) invalid("byte DFA too large");
    if (n_accepting != rows) invalid("byte DFA: accepting has " + std::to_string(n_accepting) + " entries for " +
                                     std::to_string(rows) + " states");
    if (initial < 0 || initial >= n_) invalid("byte DFA: initial state " + std::to_string(initial) + " out of range");
    initial_ = static_cast<int32_t>(initial);
    trans_.assign(transitions, transitions + rows * 256);
    // Checked branch-free (the loops vectorise: a grammar copies in every terminal's table per
    // compile); the offending entry is looked for only on failure.  As unsigned, a negative target
    // is at least 2^31: past the bound either way.
    const uint32_t bound = static_cast<uint32_t>(n_);
    uint32_t bad = 0;
    for (size_t i = 0; i < trans_.size(); ++i) bad |= static_cast<uint32_t>(static_cast<uint32_t>(trans_[i]) >= bound);
    for (size_t i = 0; i < 256; ++i) bad |= static_cast<uint32_t>(trans_[i] != 0);
    if (bad) {
      for (size_t i = 0; i < trans_.size(); ++i) {
        int32_t t = trans_[i];
        if (t < 0 || t >= n_)
          invalid("byte DFA: transition of state " + std::to_string(i / 256) + " on byte " + std::to_string(i % 256) +
                  " leads to state " + std::to_string(t) + ", out of range");
        if (i < 256 && t != 0) invalid("byte DFA: the dead state 0 must have no transitions");
      }
    }
    accepting_.resize(rows);
    for (size_t i = 0; i < rows; ++i) accepting_[i] = accepting[i] ? 1 : 0;
    if (accepting_[0]) invalid("byte DFA: the dead state 0 cannot accept");
    live_.resize(rows, 0);
    for (size_t s = 0; s < rows; ++s) {
      const int32_t* row = trans_.data() + s * 256;
      int live = 0;
      for (int b = 0; b < 256; ++b) live += row[b] != 0;
      live_[s] = static_cast<uint16_t>(live);
    }
  }

  int32_t num_states() const { return n_; }
  int32_t initial() const { return initial_; }
  const int32_t* row(int32_t s) const { return trans_.data() + static_cast<size_t>(s) * 256; }
  int32_t next(int32_t s, uint8_t b) const { return trans_[static_cast<size_t>(s) * 256 + b]; }
  // As a table of `TokenTrie::walk_marking`: every transition is known.
  const int32_t* rows() const { return trans_.data(); }
  int32_t resolve(int32_t s, uint8_t b) const { return next(s, b); }
  bool accepting(int32_t s) const { return accepting_[s] != 0; }
  int live_bytes(int32_t s) const { return live_[s]; }

 private:
  int32_t n_;
  int32_t initial_ = 0;
  std::vector<int32_t> trans_;
  std::vector<uint8_t> accepting_;
  std::vector<uint16_t> live_;
};

}  // namespace guided_native
