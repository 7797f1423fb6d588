// Regex constraints: a byte DFA against the vocabulary trie, one cached mask per DFA state.
#pragma once

#include <deque>
#include <limits>
#include <memory>
#include <string>

#include "byte_dfa.h"
#include "matcher.h"
#include "token_trie.h"

namespace guided_native {

class RegexGrammar : public std::enable_shared_from_this<RegexGrammar> {
 public:
  static constexpr int32_t kFinished = -1;  // pseudo-state after EOS
  static constexpr int64_t kUnreachable = std::numeric_limits<int64_t>::max() / 2;

  RegexGrammar(std::shared_ptr<const TokenTrie> trie, std::shared_ptr<const ByteDfa> dfa)
      : trie_(std::move(trie)), dfa_(std::move(dfa)), masks_(new std::atomic<const Words*>[dfa_->num_states()]) {
    for (int32_t s = 0; s < dfa_->num_states(); ++s) masks_[s].store(nullptr, std::memory_order_relaxed);
  }

  const TokenTrie& trie() const { return *trie_; }
  const ByteDfa& dfa() const { return *dfa_; }

  // The packed mask of a state, computed on first use.  Lock-free for readers: a computed mask is
  // published once with a compare-exchange and never changes.
  const Words& words(int32_t state) const {
    if (state == kFinished) return trie_->eos_words();
    const Words* w = masks_[state].load(std::memory_order_acquire);
    if (w != nullptr) return *w;
    auto fresh = std::make_unique<Words>(compute(state));
    const Words* expected = nullptr;
    if (masks_[state].compare_exchange_strong(expected, fresh.get(), std::memory_order_acq_rel)) {
      std::lock_guard<std::mutex> lock(owned_mu_);
      owned_.push_back(std::move(fresh));
      return *owned_.back();
    }
    return *expected;
  }

  bool cached(int32_t state) const {
    return state == kFinished || masks_[state].load(std::memory_order_acquire) != nullptr;
  }

  // Tokens enough to reach an accepting state from each state over single-byte tokens.
  const std::vector<int64_t>& closing_distance() const {
    std::call_once(closing_once_, [this] {
      const int32_t n = dfa_->num_states();
      std::vector<std::vector<int32_t>> back(n);
      const auto& single = trie_->single_byte();
      for (int32_t s = 1; s < n; ++s)
        for (int b = 0; b < 256; ++b)
          if (single[b]) {
            int32_t t = dfa_->next(s, static_cast<uint8_t>(b));
            if (t != 0) back[t].push_back(s);
          }
      closing_.assign(n, kUnreachable);
      std::deque<int32_t> queue;
      for (int32_t s = 1; s < n; ++s)
        if (dfa_->accepting(s)) {
          closing_[s] = 0;
          queue.push_back(s);
        }
      while (!queue.empty()) {
        int32_t t = queue.front();
        queue.pop_front();
        for (int32_t s : back[t])
          if (closing_[s] == kUnreachable) {
            closing_[s] = closing_[t] + 1;
            queue.push_back(s);
          }
      }
    });
    return closing_;
  }

  Words budget_words(int32_t state, int64_t remaining) const {
    Words out(trie_->n_words(), 0);
    if (state == kFinished || dfa_->accepting(state)) or_into(out, trie_->eos_words());
    if (state == kFinished || remaining < 1) return out;
    const auto& dist = closing_distance();
    std::vector<int32_t> scratch;
    trie_->walk(
        state, [&](int32_t s, uint8_t b) { return dfa_->next(s, b); },
        [&](const TrieNode& n, int32_t end) {
          if (dist[end] <= remaining - 1) trie_->mark(out.data(), n);
        },
        scratch);
    trie_->add_duplicates(out.data());
    return out;
  }

  std::string forced_bytes(int32_t state) const {
    std::string out;
    if (state == kFinished) return out;
    std::vector<uint8_t> seen(dfa_->num_states(), 0);
    int32_t s = state;
    while (!dfa_->accepting(s) && !seen[s]) {
      seen[s] = 1;
      if (dfa_->live_bytes(s) != 1) break;
      const int32_t* row = dfa_->row(s);
      int b = 0;
      while (row[b] == 0) ++b;
      out.push_back(static_cast<char>(b));
      s = row[b];
    }
    return out;
  }

 private:
  Words compute(int32_t state) const {
    Words out(static_cast<size_t>(trie_->n_words()) + TokenTrie::kSpareWords, 0);
    std::vector<int32_t> scratch;
    const ByteDfa& dfa = *dfa_;
    trie_->walk_marking(state, dfa, out.data(), [](uint32_t, int32_t) {}, scratch);
    out.resize(trie_->n_words());
    trie_->add_duplicates(out.data());
    if (dfa.accepting(state)) or_into(out, trie_->eos_words());
    return out;
  }

  std::shared_ptr<const TokenTrie> trie_;
  std::shared_ptr<const ByteDfa> dfa_;
  std::unique_ptr<std::atomic<const Words*>[]> masks_;
  mutable std::mutex owned_mu_;
  mutable std::vector<std::unique_ptr<Words>> owned_;
  mutable std::once_flag closing_once_;
  mutable std::vector<int64_t> closing_;
};

// One sequence's position in a regex: the DFA state after each consumed token.
class RegexMatcher : public Matcher {
 public:
  explicit RegexMatcher(std::shared_ptr<const RegexGrammar> g) : g_(std::move(g)) {
    history_.push_back(g_->dfa().initial());
  }

  const Words& words() const override { return g_->words(history_.back()); }
  bool cached() const override { return g_->cached(history_.back()); }
  size_t num_tokens() const override { return history_.size() - 1; }
  int32_t vocab_size() const override { return g_->trie().vocab_size(); }

  void advance(int64_t token) override {
    const int32_t state = history_.back();
    const TokenTrie& trie = g_->trie();
    if (trie.is_eos(token)) {
      if (state != RegexGrammar::kFinished && !g_->dfa().accepting(state))
        violation("end of sequence is not allowed here: the text is incomplete (after " +
                  std::to_string(num_tokens()) + " tokens)");
      history_.push_back(RegexGrammar::kFinished);
      return;
    }
    if (state == RegexGrammar::kFinished) violation("token " + std::to_string(token) + " after end of sequence");
    const std::string& text = trie.text(token, num_tokens());
    int32_t s = state;
    for (unsigned char b : text) {
      s = g_->dfa().next(s, b);
      if (s == 0)
        violation("token " + std::to_string(token) + " leaves the language after " + std::to_string(num_tokens()) +
                  " tokens");
    }
    history_.push_back(s);
  }

  void rollback(int64_t n) override {
    if (n < 0 || static_cast<size_t>(n) > num_tokens())
      throw std::invalid_argument("cannot roll back " + std::to_string(n) + " tokens: only " +
                                  std::to_string(num_tokens()) + " consumed");
    history_.resize(history_.size() - static_cast<size_t>(n));
  }

  bool accepts_eos() const override {
    int32_t s = history_.back();
    return s != RegexGrammar::kFinished && g_->dfa().accepting(s);
  }

  bool is_finished() const override {
    int32_t s = history_.back();
    if (s == RegexGrammar::kFinished) return true;
    return g_->dfa().accepting(s) && g_->dfa().live_bytes(s) == 0;
  }

  std::string forced_bytes() const override { return g_->forced_bytes(history_.back()); }
  Words budget_words(int64_t remaining) const override { return g_->budget_words(history_.back(), remaining); }
  std::unique_ptr<Matcher> clone() const override { return std::make_unique<RegexMatcher>(*this); }
  int32_t state() const { return history_.back(); }

 private:
  std::shared_ptr<const RegexGrammar> g_;
  std::vector<int32_t> history_;
};

}  // namespace guided_native
