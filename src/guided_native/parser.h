// The LALR(1) parser: validated tables and interned persistent stacks.
//
// A stack is a node (LR state, parent); equal stacks are the same node, so everything memoised
// per node (shifting a terminal, whether the input may end, which terminals are viable) is shared
// by every matcher of the grammar.  Nodes live in an arena for the grammar's lifetime and never
// move; memo tables are striped maps (see common.h).
#pragma once

#include <algorithm>
#include <deque>
#include <vector>

#include "common.h"

namespace guided_native {

struct StackNode {
  int32_t state;
  int32_t depth;  // nodes of the nesting states in the stack
  const StackNode* parent;
  uint64_t uid;
};

struct ParseTables {
  int32_t n_states = 0;
  int32_t n_terminals = 0;  // terminal ids 0..n-1; n_terminals stands for END
  int32_t n_nonterminals = 0;
  // Per state, sorted (symbol, value) rows: actions (shift >= 0, reduce by rule -a-1) and gotos.
  std::vector<int64_t> action_offsets, goto_offsets;
  std::vector<int32_t> action_symbols, action_values, goto_symbols, goto_values;
  std::vector<std::pair<int32_t, int32_t>> rules;  // (lhs nonterminal, length)
  int32_t start_state = 0, end_state = 0;
  std::vector<uint8_t> nesting;  // per state
  int32_t max_nesting = 0;

  // Check every index the parser will follow; malformed tables are refused here.
  void validate() const {
    auto check_rows = [&](const std::vector<int64_t>& off, const std::vector<int32_t>& sym,
                          const std::vector<int32_t>& val, const char* what, int32_t n_symbols) {
      if (off.size() != static_cast<size_t>(n_states) + 1 || off[0] != 0 || sym.size() != val.size() ||
          static_cast<size_t>(off.back()) != sym.size())
        invalid(std::string("malformed IR: ") + what + " rows do not match the number of states");
      for (int32_t s = 0; s < n_states; ++s)  // every offset first, so the loop below stays inside
        if (off[s + 1] < off[s] || off[s + 1] > off.back())
          invalid(std::string("malformed IR: ") + what + " rows out of order");
      for (int32_t s = 0; s < n_states; ++s) {
        for (int64_t k = off[s]; k < off[s + 1]; ++k) {
          if (sym[k] < 0 || sym[k] >= n_symbols)
            invalid(std::string("malformed IR: ") + what + " of state " + std::to_string(s) + " names symbol " +
                    std::to_string(sym[k]) + ", out of range");
          if (k > off[s] && sym[k] <= sym[k - 1])
            invalid(std::string("malformed IR: ") + what + " of state " + std::to_string(s) + " not sorted");
        }
      }
    };
    if (n_states <= 0) invalid("malformed IR: no parser states");
    check_rows(action_offsets, action_symbols, action_values, "actions", n_terminals + 1);
    check_rows(goto_offsets, goto_symbols, goto_values, "gotos", n_nonterminals);
    for (size_t k = 0; k < action_values.size(); ++k) {
      const int32_t a = action_values[k];
      if (a >= 0 ? a >= n_states : static_cast<int64_t>(-static_cast<int64_t>(a) - 1) >= static_cast<int64_t>(rules.size()))
        invalid("malformed IR: action " + std::to_string(a) + " out of range");
    }
    for (int32_t g : goto_values)
      if (g < 0 || g >= n_states) invalid("malformed IR: goto target " + std::to_string(g) + " out of range");
    for (const auto& [lhs, len] : rules)
      if (lhs < 0 || lhs >= n_nonterminals || len < 0)
        invalid("malformed IR: rule (" + std::to_string(lhs) + ", " + std::to_string(len) + ") out of range");
    if (start_state < 0 || start_state >= n_states || end_state < 0 || end_state >= n_states)
      invalid("malformed IR: start or end state out of range");
    if (nesting.size() != static_cast<size_t>(n_states)) invalid("malformed IR: nesting flags do not match states");
  }

  // The action of `state` on `symbol`; false if none.
  bool action(int32_t state, int32_t symbol, int32_t& out) const {
    return lookup(action_offsets, action_symbols, action_values, state, symbol, out);
  }
  bool go(int32_t state, int32_t nonterminal, int32_t& out) const {
    return lookup(goto_offsets, goto_symbols, goto_values, state, nonterminal, out);
  }

 private:
  static bool lookup(const std::vector<int64_t>& off, const std::vector<int32_t>& sym,
                     const std::vector<int32_t>& val, int32_t state, int32_t symbol, int32_t& out) {
    const int32_t* first = sym.data() + off[state];
    const int32_t* last = sym.data() + off[state + 1];
    const int32_t* it = std::lower_bound(first, last, symbol);
    if (it == last || *it != symbol) return false;
    out = val[it - sym.data()];
    return true;
  }
};

class Parser {
 public:
  static constexpr size_t kMaxSteps = 100000;  // reductions in one shift before the IR is deemed cyclic

  explicit Parser(ParseTables tables) : t_(std::move(tables)) {
    t_.validate();
    root_ = node(t_.start_state, nullptr);
  }

  const ParseTables& tables() const { return t_; }
  const StackNode* root() const { return root_; }
  int32_t end_symbol() const { return t_.n_terminals; }

  // The interned stack (state, parent).
  const StackNode* node(int32_t state, const StackNode* parent) {
    const uint64_t key = (parent ? parent->uid : 0) * static_cast<uint64_t>(t_.n_states) + static_cast<uint64_t>(state);
    std::lock_guard<std::mutex> lock(intern_mu_);
    auto it = interned_.find(key);
    if (it != interned_.end()) return it->second;
    arena_.push_back(StackNode{state, (parent ? parent->depth : 0) + (t_.nesting[state] ? 1 : 0), parent, next_uid_++});
    const StackNode* n = &arena_.back();
    interned_.emplace(key, n);
    return n;
  }

  size_t num_nodes() const {
    std::lock_guard<std::mutex> lock(intern_mu_);
    return arena_.size();
  }

  // The stack after shifting `terminal` (reductions first), or nullptr on a syntax error.
  const StackNode* feed(const StackNode* stack, int32_t terminal) {
    const std::pair<uint64_t, int32_t> key{stack->uid, terminal};
    const StackNode* cached;
    if (feeds_.find(key, cached)) return cached;
    const StackNode* n = stack;
    const StackNode* result = nullptr;
    for (size_t steps = 0;; ++steps) {
      if (steps > kMaxSteps) invalid("malformed IR: reductions do not terminate");
      int32_t a;
      if (!t_.action(n->state, terminal, a)) break;
      if (a >= 0) {
        result = node(a, n);
        if (t_.max_nesting && result->depth > t_.max_nesting) result = nullptr;
        break;
      }
      n = reduce(n, a);
    }
    return feeds_.insert(key, result);
  }

  // Does the input so far form a complete sentence?
  bool can_end(const StackNode* stack) {
    const std::pair<uint64_t, int32_t> key{stack->uid, end_symbol()};
    const StackNode* cached;
    if (feeds_.find(key, cached)) return cached != nullptr;
    const StackNode* n = stack;
    bool ok = false;
    for (size_t steps = 0;; ++steps) {
      if (steps > kMaxSteps) invalid("malformed IR: reductions do not terminate");
      if (n->state == t_.end_state) {
        ok = true;
        break;
      }
      int32_t a;
      if (!t_.action(n->state, end_symbol(), a) || a >= 0) break;
      n = reduce(n, a);
    }
    feeds_.insert(key, ok ? stack : nullptr);
    return ok;
  }

  // The stack after reducing `n` by `action` (a reduce action: rule -action-1).
  const StackNode* reduce(const StackNode* n, int32_t action) {
    const auto& [lhs, length] = t_.rules[static_cast<size_t>(-static_cast<int64_t>(action) - 1)];
    for (int32_t k = 0; k < length; ++k) {
      n = n->parent;
      if (n == nullptr) invalid("malformed IR: a reduction pops past the bottom of the stack");
    }
    int32_t target;
    if (!t_.go(n->state, lhs, target))
      invalid("malformed IR: no goto from state " + std::to_string(n->state) + " on nonterminal " + std::to_string(lhs));
    return node(target, n);
  }

 private:
  ParseTables t_;
  mutable std::mutex intern_mu_;
  std::unordered_map<uint64_t, const StackNode*> interned_;
  std::deque<StackNode> arena_;
  uint64_t next_uid_ = 1;
  const StackNode* root_ = nullptr;
  StripedMap<std::pair<uint64_t, int32_t>, const StackNode*, PairHash> feeds_;
};

}  // namespace guided_native
