// The matcher protocol in C++: what `fill_bitmasks` needs of any engine's matcher, plus writing a
// mask into a caller-owned bitmask row.  A matcher object belongs to one thread at a time; the
// grammar it points to is shared and thread-safe.
#pragma once

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

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

// A matcher over a grammar of configurations (the CFG and XML engines): its history holds the
// configuration after each consumed token, so a rollback is a resize; the current mask is looked
// up once per position.  `Grammar` provides initial(), words(c), cached_words(c), accepts_end(c),
// finished(c) (after end of sequence) and trie(); `Derived` adds advance and the rest.
template <typename Grammar, typename Conf, typename Derived>
class HistoryMatcher : public Matcher {
 public:
  explicit HistoryMatcher(std::shared_ptr<Grammar> g) : g_(std::move(g)) { history_.push_back(g_->initial()); }

  const Words& words() const override {
    if (current_at_ != history_.size()) {
      current_ = g_->words(history_.back());
      current_at_ = history_.size();
    }
    return *current_;
  }
  bool cached() const override {
    if (current_at_ == history_.size()) return true;
    WordsPtr found = g_->cached_words(history_.back());
    if (!found) return false;
    current_ = std::move(found);
    current_at_ = history_.size();
    return true;
  }
  size_t num_tokens() const override { return history_.size() - 1; }
  int32_t vocab_size() const override { return g_->trie().vocab_size(); }

  void rollback(int64_t n) override {
    if (n < 0 || static_cast<size_t>(n) > num_tokens())
      throw std::invalid_argument("cannot roll back " + std::to_string(n) + " tokens: only " +
                                  std::to_string(num_tokens()) + " consumed");
    history_.resize(history_.size() - static_cast<size_t>(n));
    current_at_ = 0;
  }

  bool accepts_eos() const override {
    const Conf& c = history_.back();
    return !g_->finished(c) && g_->accepts_end(c);
  }

  // Finished: after end of sequence, or where only end of sequence remains allowed.
  bool is_finished() const override {
    const Conf& c = history_.back();
    if (g_->finished(c)) return true;
    if (!g_->accepts_end(c)) return false;
    const Words& w = words();
    const Words& eos = g_->trie().eos_words();
    for (size_t k = 0; k < w.size(); ++k)
      if (w[k] & ~eos[k]) return false;
    return true;
  }

  std::string forced_bytes() const override { return g_->forced_bytes(history_.back()); }
  std::unique_ptr<Matcher> clone() const override {
    return std::make_unique<Derived>(static_cast<const Derived&>(*this));
  }

 protected:
  // `advance` of the grammars whose configurations walk a token's bytes (item counts, XML, unique
  // items): end of sequence where the grammar accepts it (`incomplete` says what is unfinished
  // otherwise), else the token's bytes walked from the last configuration (`leaves` says what
  // the token would leave).  `Grammar` provides walk(c, bytes) and after_end(c) besides.
  void advance_walking(int64_t token, const char* incomplete, const char* leaves) {
    const Conf& c = history_.back();
    const auto& trie = g_->trie();
    if (trie.is_eos(token)) {
      if (!g_->finished(c) && !g_->accepts_end(c))
        violation(std::string("end of sequence is not allowed here: ") + incomplete + " (after " +
                  std::to_string(num_tokens()) + " tokens)");
      push(g_->after_end(c));
      return;
    }
    if (g_->finished(c)) violation("token " + std::to_string(token) + " after end of sequence");
    Conf next = c;
    if (!g_->walk(next, trie.text(token, num_tokens())))
      violation("token " + std::to_string(token) + " " + leaves + " after " + std::to_string(num_tokens()) + " tokens");
    push(std::move(next));
  }

  void push(Conf c) {
    history_.push_back(std::move(c));
    current_at_ = 0;
  }

  std::shared_ptr<Grammar> g_;
  std::vector<Conf> history_;
  mutable WordsPtr current_;
  mutable size_t current_at_ = 0;
};

}  // namespace guided_native
