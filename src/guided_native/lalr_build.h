// LALR(1) parse tables of a grammar given as integer rules: guided.ir.lalr.lalr_tables' construction
// (LR(0) automaton, DeRemer and Pennello's lookaheads, Lark's conflict resolution), state for
// state and in the same dict orders, so the IR it yields serialises the same whichever ran.
// Every rule and symbol index from Python is checked before use.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common.h"

namespace guided_native {

// Rules as lalr_tables numbers them: symbol s < bias - 1 is terminal s, bias + A is nonterminal A
// (0 <= A < n_nt); bit bias - 1 of a lookahead set is the end of input.
struct LalrGrammar {
  std::vector<int64_t> lhs;                // per rule
  std::vector<std::vector<int64_t>> rhs;   // per rule
  int64_t n_nt = 0;
  int64_t bias = 1;
  int64_t start = 0;                       // the start nonterminal
  std::vector<int64_t> priority;           // empty, or one per rule
};

struct LalrTables {
  std::vector<std::vector<std::pair<int32_t, int32_t>>> kernels;  // state -> (rule, dot) items
  // state -> (terminal or -1 for the end, action) in the order lalr_tables inserts them
  std::vector<std::vector<std::pair<int64_t, int64_t>>> actions;
  std::vector<std::vector<std::pair<int64_t, int32_t>>> gotos;    // state -> (nonterminal, target)
  std::vector<std::pair<int32_t, int64_t>> collisions;            // (state, lookahead)
  std::vector<std::tuple<int32_t, int64_t, std::vector<int32_t>>> conflicts;
  int32_t end_state = 0;
};

constexpr int64_t kLalrCheckWork = 4000;  // guided.ir.lalr.CHECK_WORK
// Terminal ids up to this (per-state scratch arrays are as wide as the terminal ids; the Python
// code, which takes any, runs where ids are larger: guided.ir.lalr.lalr_tables).
constexpr int64_t kLalrMaxBias = int64_t{1} << 20;

inline void check_lalr_grammar(const LalrGrammar& g) {
  auto bad = [](const std::string& m) { invalid("LALR(1) tables: malformed rules: " + m); };
  const auto n = static_cast<int64_t>(g.lhs.size());
  if (static_cast<int64_t>(g.rhs.size()) != n) bad("one right-hand side per rule");
  if (n > INT32_MAX - 2) bad("too many rules");
  // Nonterminals are the start symbol and the rules' left-hand sides: no more than the rules + 1.
  if (g.n_nt < 1 || g.n_nt > n + 1) bad("nonterminal count out of range");
  if (g.bias < 1 || g.bias > kLalrMaxBias) bad("terminal bias out of range");
  if (g.start < 0 || g.start >= g.n_nt) bad("start nonterminal out of range");
  if (!g.priority.empty() && static_cast<int64_t>(g.priority.size()) != n) bad("one priority per rule");
  for (int64_t r = 0; r < n; ++r) {
    if (g.lhs[r] < 0 || g.lhs[r] >= g.n_nt) bad("rule " + std::to_string(r) + ": left-hand side out of range");
    if (static_cast<int64_t>(g.rhs[r].size()) > INT32_MAX - 2) bad("rule " + std::to_string(r) + " too long");
    for (int64_t s : g.rhs[r])
      if (s < 0 || s == g.bias - 1 || s >= g.bias + g.n_nt)
        bad("rule " + std::to_string(r) + ": symbol " + std::to_string(s) + " out of range");
  }
}

namespace lalr_detail {

// Fixed-width bitsets, one row per node.
struct Bitsets {
  int64_t words = 1;
  std::vector<uint64_t> bits;
  uint64_t* row(int64_t x) { return bits.data() + x * words; }
};

// F(x) = base(x) | F(y) for every edge x -> y, a strongly connected part sharing one set (the
// iterative Tarjan traversal of lalr.py's _digraph).
inline void digraph(Bitsets& result, const std::vector<std::vector<int32_t>>& edges, int64_t& work,
                    const std::function<void()>& check) {
  const auto n = static_cast<int64_t>(edges.size());
  const int64_t w = result.words;
  std::vector<int64_t> mark(n, 0);
  const int64_t done = n + 1;
  std::vector<int32_t> stack;
  struct Frame { int32_t x; int64_t height; size_t k; };
  std::vector<Frame> frames;
  auto join = [&](int64_t into, int64_t from) {
    uint64_t* a = result.row(into);
    const uint64_t* b = result.row(from);
    for (int64_t i = 0; i < w; ++i) a[i] |= b[i];
  };
  for (int64_t root = 0; root < n; ++root) {
    if (work > kLalrCheckWork) { check(); work = 0; }
    if (mark[root]) continue;
    stack.push_back(static_cast<int32_t>(root));
    mark[root] = static_cast<int64_t>(stack.size());
    frames.push_back({static_cast<int32_t>(root), mark[root], 0});
    while (!frames.empty()) {
      ++work;
      Frame& f = frames.back();
      const int32_t x = f.x;
      const auto& out = edges[x];
      if (f.k < out.size()) {
        const int32_t y = out[f.k++];
        if (!mark[y]) {
          stack.push_back(y);
          mark[y] = static_cast<int64_t>(stack.size());
          frames.push_back({y, mark[y], 0});
          continue;
        }
        if (mark[y] < mark[x]) mark[x] = mark[y];
        join(x, y);
        continue;
      }
      const int64_t height = f.height;
      frames.pop_back();
      if (mark[x] == height) {
        while (true) {
          const int32_t z = stack.back();
          stack.pop_back();
          mark[z] = done;
          if (z != x) std::copy(result.row(x), result.row(x) + w, result.row(z));
          if (z == x) break;
        }
      }
      if (!frames.empty()) {
        const int32_t parent = frames.back().x;
        if (mark[x] < mark[parent]) mark[parent] = mark[x];
        join(parent, x);
      }
    }
  }
}

struct VecHash {
  size_t operator()(const std::vector<uint64_t>& v) const noexcept {
    uint64_t h = 1469598103934665603ull;
    for (uint64_t x : v) h = (h ^ x) * 1099511628211ull ^ (x >> 29);
    return static_cast<size_t>(h);
  }
};

}  // namespace lalr_detail

// lalr_tables' construction; ``check`` is called once per kLalrCheckWork units of work (it throws
// to stop).
inline LalrTables lalr_build(const LalrGrammar& g, const std::function<void()>& check) {
  using namespace lalr_detail;
  check_lalr_grammar(g);
  const int64_t bias = g.bias, end_bit = bias - 1, n_nt = g.n_nt;
  const auto n_rules = static_cast<int64_t>(g.lhs.size());
  const int64_t aug = n_rules;
  std::vector<int64_t> lhs_of(g.lhs);
  lhs_of.push_back(n_nt);
  std::vector<std::vector<int64_t>> rhs(g.rhs);
  rhs.push_back({bias + g.start});
  const int64_t n_all = n_rules + 1;
  std::vector<std::vector<int32_t>> by_lhs(n_nt + 1);
  for (int64_t r = 0; r < n_all; ++r) by_lhs[lhs_of[r]].push_back(static_cast<int32_t>(r));
  auto is_nt = [&](int64_t s) { return s >= bias; };
  int64_t work = 0;

  std::vector<char> nullable(n_nt + 1, 0);
  for (bool changed = true; changed;) {
    changed = false;
    for (int64_t r = 0; r < n_all; ++r) {
      if (nullable[lhs_of[r]]) continue;
      bool all = true;
      for (int64_t s : rhs[r])
        if (!is_nt(s) || !nullable[s - bias]) { all = false; break; }
      if (all) nullable[lhs_of[r]] = changed = true;
    }
  }

  // Rules whose start items join a closure when a nonterminal is next (transitively).
  std::vector<std::vector<int32_t>> closure_of(n_nt + 1);
  {
    std::vector<int64_t> seen(n_nt + 1, -1);
    std::vector<int64_t> todo;
    for (int64_t a = 0; a <= n_nt; ++a) {
      if (work > kLalrCheckWork) { check(); work = 0; }
      seen[a] = a;
      todo.assign(1, a);
      auto& found = closure_of[a];
      while (!todo.empty()) {
        const int64_t x = todo.back();
        todo.pop_back();
        for (int32_t r : by_lhs[x]) {
          found.push_back(r);
          const auto& syms = rhs[r];
          if (!syms.empty() && is_nt(syms[0]) && seen[syms[0] - bias] != a) {
            seen[syms[0] - bias] = a;
            todo.push_back(syms[0] - bias);
          }
        }
      }
      work += static_cast<int64_t>(found.size());
    }
  }

  // -- the LR(0) automaton --------------------------------------------------------------------
  LalrTables out;
  auto& kernels = out.kernels;
  std::unordered_map<std::vector<uint64_t>, int32_t, VecHash> state_of;
  auto encode = [](int64_t r, int64_t dot) { return (static_cast<uint64_t>(r) << 32) | static_cast<uint64_t>(dot); };
  kernels.push_back({{static_cast<int32_t>(aug), 0}});
  state_of.emplace(std::vector<uint64_t>{encode(aug, 0)}, 0);
  std::vector<std::vector<std::pair<int64_t, int32_t>>> transitions;  // insertion order
  std::vector<std::vector<int32_t>> completed;
  const int64_t n_syms = bias + n_nt;
  std::vector<int64_t> added(n_all, -1), expanded(n_nt + 1, -1), move_slot(n_syms, -1), move_stamp(n_syms, -1);
  std::vector<std::pair<int32_t, int32_t>> items;
  std::vector<int64_t> move_syms;
  std::vector<std::vector<uint64_t>> moves;
  for (int64_t i = 0; i < static_cast<int64_t>(kernels.size()); ++i) {
    if (work > kLalrCheckWork) { check(); work = 0; }
    items.assign(kernels[i].begin(), kernels[i].end());
    for (const auto& [r, dot] : kernels[i]) {
      const auto& syms = rhs[r];
      if (dot < static_cast<int64_t>(syms.size()) && is_nt(syms[dot]) && expanded[syms[dot] - bias] != i) {
        expanded[syms[dot] - bias] = i;
        const auto& closure = closure_of[syms[dot] - bias];
        work += static_cast<int64_t>(closure.size());
        for (int32_t r2 : closure)
          if (added[r2] != i) {
            added[r2] = i;
            items.emplace_back(r2, 0);
          }
      }
    }
    move_syms.clear();
    std::vector<int32_t> done;
    for (const auto& [r, dot] : items) {
      const auto& syms = rhs[r];
      if (dot < static_cast<int64_t>(syms.size())) {
        const int64_t s = syms[dot];
        if (move_stamp[s] != i) {
          move_stamp[s] = i;
          move_slot[s] = static_cast<int64_t>(move_syms.size());
          move_syms.push_back(s);
          if (moves.size() < move_syms.size()) moves.emplace_back();
          moves[move_slot[s]].clear();
        }
        moves[move_slot[s]].push_back(encode(r, dot + 1));
      } else {
        done.push_back(r);
      }
    }
    std::vector<std::pair<int64_t, int32_t>> row;
    row.reserve(move_syms.size());
    for (size_t k = 0; k < move_syms.size(); ++k) {
      auto& key = moves[k];
      std::sort(key.begin(), key.end());
      auto [it, fresh] = state_of.emplace(key, static_cast<int32_t>(kernels.size()));
      if (fresh) {
        if (kernels.size() >= static_cast<size_t>(INT32_MAX - 1)) limit_exceeded("LALR(1) tables: too many states");
        std::vector<std::pair<int32_t, int32_t>> kernel;
        kernel.reserve(key.size());
        for (uint64_t e : key) kernel.emplace_back(static_cast<int32_t>(e >> 32), static_cast<int32_t>(e & 0xffffffffu));
        kernels.push_back(std::move(kernel));
      }
      row.emplace_back(move_syms[k], it->second);
    }
    work += static_cast<int64_t>(items.size());
    transitions.push_back(std::move(row));
    completed.push_back(std::move(done));
  }
  state_of.clear();
  const auto n_states = static_cast<int64_t>(kernels.size());

  // -- lookaheads (DeRemer & Pennello) --------------------------------------------------------
  // Per state, its transitions sorted by symbol with their nonterminal transition's number (or -1).
  struct Edge { int64_t sym; int32_t target; int32_t x; };
  std::vector<std::vector<Edge>> sorted_tr(n_states);
  check();
  std::vector<std::pair<int32_t, int64_t>> pairs;
  for (int64_t p = 0; p < n_states; ++p) {
    auto& st = sorted_tr[p];
    for (const auto& [sym, target] : transitions[p]) {
      int32_t x = -1;
      if (is_nt(sym)) {
        x = static_cast<int32_t>(pairs.size());
        pairs.emplace_back(static_cast<int32_t>(p), sym);
      }
      st.push_back({sym, target, x});
    }
    std::sort(st.begin(), st.end(), [](const Edge& a, const Edge& b) { return a.sym < b.sym; });
  }
  auto edge = [&](int64_t q, int64_t s) -> const Edge& {
    const auto& st = sorted_tr[q];
    auto it = std::lower_bound(st.begin(), st.end(), s, [](const Edge& e, int64_t v) { return e.sym < v; });
    // Always present (a state predicting a rule shifts each of its symbols in turn); checked all
    // the same, so that a slip here is an error rather than a read out of bounds.
    if (it == st.end() || it->sym != s) invalid("LALR(1) tables: internal error: missing transition");
    return *it;
  };
  const auto n_pairs = static_cast<int64_t>(pairs.size());
  Bitsets sets;
  sets.words = (bias + 63) / 64;
  sets.bits.assign(static_cast<size_t>(n_pairs * sets.words), 0);
  std::vector<std::vector<int32_t>> reads(n_pairs);
  for (int64_t x = 0; x < n_pairs; ++x) {
    if (work > kLalrCheckWork) { check(); work = 0; }
    const auto [p, sym] = pairs[x];
    const int32_t r = edge(p, sym).target;
    work += static_cast<int64_t>(transitions[r].size());
    uint64_t* bits = sets.row(x);
    for (const auto& [s2, t2] : transitions[r]) {
      (void)t2;
      if (!is_nt(s2)) bits[s2 >> 6] |= uint64_t{1} << (s2 & 63);
      else if (nullable[s2 - bias]) reads[x].push_back(edge(r, s2).x);
    }
  }
  {
    const int32_t x0 = edge(0, bias + g.start).x;
    sets.row(x0)[end_bit >> 6] |= uint64_t{1} << (end_bit & 63);
  }
  digraph(sets, reads, work, check);  // Read sets
  reads.clear();
  reads.shrink_to_fit();

  std::vector<std::vector<int32_t>> includes(n_pairs);
  std::vector<std::vector<std::pair<int32_t, int32_t>>> lookback(n_states);  // q -> (rule, x)
  for (int64_t x = 0; x < n_pairs; ++x) {
    if (work > kLalrCheckWork) { check(); work = 0; }
    const auto [p, sym] = pairs[x];
    for (int32_t r : by_lhs[sym - bias]) {
      const auto& syms = rhs[r];
      const auto len = static_cast<int64_t>(syms.size());
      work += len + 1;
      int64_t empty_from = len;
      while (empty_from && is_nt(syms[empty_from - 1]) && nullable[syms[empty_from - 1] - bias]) --empty_from;
      int64_t q = p;
      for (int64_t k = 0; k < len; ++k) {
        const Edge& e = edge(q, syms[k]);
        if (is_nt(syms[k]) && k + 1 >= empty_from) includes[e.x].push_back(static_cast<int32_t>(x));
        q = e.target;
      }
      lookback[q].emplace_back(r, static_cast<int32_t>(x));
    }
  }
  digraph(sets, includes, work, check);  // Follow sets
  includes.clear();
  includes.shrink_to_fit();

  // -- the action table -----------------------------------------------------------------------
  out.actions.resize(n_states);
  out.gotos.resize(n_states);
  std::vector<int64_t> shifted(bias, -1), seen_la(bias, -1);
  std::vector<std::vector<int32_t>> candidates(bias);
  std::vector<int64_t> order;  // lookahead bits in the order lalr_tables meets them
  std::vector<uint64_t> bits(sets.words);
  for (int64_t p = 0; p < n_states; ++p) {
    if (work > kLalrCheckWork) { check(); work = 0; }
    work += static_cast<int64_t>(transitions[p].size() + completed[p].size());
    auto& acts = out.actions[p];
    for (const auto& [sym, target] : transitions[p]) {
      if (is_nt(sym)) {
        out.gotos[p].emplace_back(sym - bias, target);
      } else {
        acts.emplace_back(sym, target);
        shifted[sym] = p;
      }
    }
    auto& lb = lookback[p];
    std::sort(lb.begin(), lb.end());
    auto& comp = completed[p];
    std::sort(comp.begin(), comp.end());
    order.clear();
    size_t j = 0;
    for (int32_t r : comp) {
      if (r == aug) continue;
      std::fill(bits.begin(), bits.end(), 0);
      while (j < lb.size() && lb[j].first < r) ++j;
      for (; j < lb.size() && lb[j].first == r; ++j) {
        const uint64_t* f = sets.row(lb[j].second);
        for (int64_t w = 0; w < sets.words; ++w) bits[w] |= f[w];
      }
      for (int64_t w = 0; w < sets.words; ++w) {
        for (uint64_t word = bits[w]; word; word &= word - 1) {
          const int64_t t = w * 64 + __builtin_ctzll(word);
          if (seen_la[t] != p) {
            seen_la[t] = p;
            candidates[t].clear();
            order.push_back(t);
          }
          candidates[t].push_back(r);
        }
      }
    }
    for (int64_t t : order) {
      const int64_t lookahead = t == end_bit ? -1 : t;
      const bool shift = t != end_bit && shifted[t] == p;
      const auto& cand = candidates[t];
      if (cand.size() > 1 || shift) out.collisions.emplace_back(static_cast<int32_t>(p), lookahead);
      int32_t chosen = cand[0];
      if (!g.priority.empty() && cand.size() > 1) {
        int64_t best = g.priority[cand[0]];
        for (int32_t r : cand) best = std::max(best, g.priority[r]);
        std::vector<int32_t> top;
        for (int32_t r : cand)
          if (g.priority[r] == best) top.push_back(r);
        chosen = top[0];
        if (top.size() > 1) out.conflicts.emplace_back(static_cast<int32_t>(p), lookahead, std::move(top));
      }
      if (!shift) acts.emplace_back(lookahead, -static_cast<int64_t>(chosen) - 1);
    }
  }
  out.end_state = edge(0, bias + g.start).target;
  return out;
}

}  // namespace guided_native
