// Byte-automaton operations of the compile path (`guided.ir.dfa.trim`, `guided.ir.dfa_ops`'s
// products): the same results as the numpy reference, state for state (same numbering), so a
// compiled grammar does not depend on which ran.  Tables are dense: 256 targets per state, state
// 0 the dead sink.  Every index read from the caller's tables is checked first.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "common.h"

namespace guided_native {

struct DenseDfa {
  std::vector<int32_t> table;  // rows * 256
  std::vector<uint8_t> accepting;  // rows
  int32_t initial = 0;
  int64_t rows() const { return static_cast<int64_t>(accepting.size()); }
};

inline void check_dense(const int32_t* table, int64_t rows, int64_t initial, const char* what) {
  if (rows < 1) invalid(std::string(what) + ": an automaton needs at least the dead state");
  if (initial < 0 || initial >= rows) invalid(std::string(what) + ": initial state out of range");
  // Branch-free over the table (it vectorises); the offending entry is looked for only on failure.
  // As unsigned, a negative target is at least 2^31: past the bound either way.
  const uint32_t bound = static_cast<uint32_t>(std::min<int64_t>(rows, int64_t{1} << 31));
  uint32_t bad = 0;
  for (int64_t i = 0; i < rows * 256; ++i) bad |= static_cast<uint32_t>(static_cast<uint32_t>(table[i]) >= bound);
  if (!bad) return;
  for (int64_t i = 0; i < rows * 256; ++i)
    if (table[i] < 0 || table[i] >= rows)
      invalid(std::string(what) + ": transition of state " + std::to_string(i / 256) + " on byte " +
              std::to_string(i % 256) + " out of range");
}

// The bytes of `row` that start a run of equal targets (byte 0, and each byte whose target differs
// from the previous byte's) as 256 bits: a row has a few runs, so products go by runs, not bytes.
inline void run_starts(const int32_t* row, uint64_t out[4]) {
  for (int w = 0; w < 4; ++w) {
    uint64_t bits = 0;
    for (int i = 0; i < 64; ++i) {
      const int c = w * 64 + i;
      bits |= static_cast<uint64_t>(c == 0 || row[c] != row[c - 1]) << i;
    }
    out[w] = bits;
  }
}

// Drop the states that are unreachable from `initial` or cannot reach an accepting state; the
// initial state becomes 1, the others keep their order.  No accepting state reachable: the empty
// automaton (one dead row, initial 0).
inline DenseDfa dfa_trim(const int32_t* table, const uint8_t* accepting, int64_t rows, int64_t initial) {
  check_dense(table, rows, initial, "trim");
  DenseDfa empty;
  empty.table.assign(256, 0);
  empty.accepting.assign(1, 0);
  if (initial == 0) return empty;
  // Forward search from the initial state, noting an edge per run of equal targets on the way.
  std::vector<uint8_t> reach(static_cast<size_t>(rows), 0);
  std::vector<int32_t> stack{static_cast<int32_t>(initial)};
  std::vector<int32_t> edge_src, edge_dst;
  reach[initial] = 1;
  while (!stack.empty()) {
    const int32_t s = stack.back();
    stack.pop_back();
    const int32_t* row = table + static_cast<size_t>(s) * 256;
    int32_t prev = -1;
    for (int c = 0; c < 256; ++c) {
      const int32_t t = row[c];
      if (t == prev) continue;
      prev = t;
      if (t == 0) continue;
      edge_src.push_back(s);
      edge_dst.push_back(t);
      if (!reach[t]) {
        reach[t] = 1;
        stack.push_back(t);
      }
    }
  }
  // Backward search from the reachable accepting states over those edges, grouped by target.
  std::vector<int64_t> offsets(static_cast<size_t>(rows) + 1, 0);
  for (int32_t t : edge_dst) ++offsets[t + 1];
  for (int64_t s = 0; s < rows; ++s) offsets[s + 1] += offsets[s];
  std::vector<int32_t> sources(edge_src.size());
  {
    std::vector<int64_t> fill(offsets.begin(), offsets.end() - 1);
    for (size_t k = 0; k < edge_src.size(); ++k) sources[fill[edge_dst[k]]++] = edge_src[k];
  }
  std::vector<uint8_t> live(static_cast<size_t>(rows), 0);
  for (int64_t s = 1; s < rows; ++s)
    if (reach[s] && accepting[s]) {
      live[s] = 1;
      stack.push_back(static_cast<int32_t>(s));
    }
  if (stack.empty()) return empty;
  while (!stack.empty()) {
    const int32_t t = stack.back();
    stack.pop_back();
    for (int64_t k = offsets[t]; k < offsets[t + 1]; ++k) {
      const int32_t s = sources[k];
      if (!live[s]) {
        live[s] = 1;
        stack.push_back(s);
      }
    }
  }
  std::vector<int32_t> order{static_cast<int32_t>(initial)};
  for (int64_t s = 1; s < rows; ++s)
    if (s != initial && reach[s] && live[s]) order.push_back(static_cast<int32_t>(s));
  std::vector<int32_t> new_id(static_cast<size_t>(rows), 0);
  for (size_t i = 0; i < order.size(); ++i) new_id[order[i]] = static_cast<int32_t>(i + 1);
  DenseDfa out;
  out.table.assign((order.size() + 1) * 256, 0);
  out.accepting.assign(order.size() + 1, 0);
  out.initial = 1;
  for (size_t i = 0; i < order.size(); ++i) {
    const int32_t* row = table + static_cast<size_t>(order[i]) * 256;
    int32_t* dst = &out.table[(i + 1) * 256];
    for (int c = 0; c < 256; ++c) dst[c] = new_id[row[c]];
    out.accepting[i + 1] = accepting[order[i]] ? 1 : 0;
  }
  return out;
}

enum class ProductAccept : int { Both = 0, FirstNotSecond = 1 };

// Per row of a dense table, its `run_starts`, computed on first use.
class RunStarts {
 public:
  RunStarts(const int32_t* table, int64_t rows)
      : table_(table), bits_(static_cast<size_t>(rows) * 4, 0), have_(static_cast<size_t>(rows), 0) {}
  const uint64_t* get(int64_t row) {
    uint64_t* out = &bits_[static_cast<size_t>(row) * 4];
    if (!have_[row]) {
      run_starts(table_ + static_cast<size_t>(row) * 256, out);
      have_[row] = 1;
    }
    return out;
  }

 private:
  const int32_t* table_;
  std::vector<uint64_t> bits_;
  std::vector<uint8_t> have_;
};

// The reachable pairs of a x b, numbered breadth-first one whole level at a time, each level's new
// pairs in increasing order of `pa * rows_b + pb` (pair 1 the initial pair; 0 dead); untrimmed.
// `keep_dead_b`: a pair (pa, dead) stays alive (b has rejected).  Past `max_states` pairs:
// `LimitExceeded` naming `what`.
inline DenseDfa dfa_product(const int32_t* ta, const uint8_t* acc_a, int64_t rows_a, int64_t init_a,
                            const int32_t* tb, const uint8_t* acc_b, int64_t rows_b, int64_t init_b,
                            ProductAccept accept, bool keep_dead_b, int64_t max_states, const std::string& what) {
  check_dense(ta, rows_a, init_a, "product");
  check_dense(tb, rows_b, init_b, "product");
  DenseDfa out;
  out.table.assign(256, 0);  // the dead row
  std::vector<int64_t> pairs;  // pair id - 1 -> key
  std::unordered_map<int64_t, int32_t> ids;
  const int64_t start = init_a * rows_b + init_b;
  ids.emplace(start, 1);
  pairs.push_back(start);
  std::vector<int64_t> frontier{start}, targets, fresh;
  RunStarts runs_a(ta, rows_a), runs_b(tb, rows_b);
  // Calls `f(first byte, end byte, target key or -1)` once per run of bytes on which the pair
  // `key` moves to the same pair: a row has a few runs, so the work goes by runs, not bytes.
  auto for_runs = [&](int64_t key, auto&& f) {
    const int64_t pa = key / rows_b, pb = key % rows_b;
    const int32_t* ra = ta + static_cast<size_t>(pa) * 256;
    const int32_t* rb = tb + static_cast<size_t>(pb) * 256;
    const uint64_t* ma = runs_a.get(pa);
    const uint64_t* mb = runs_b.get(pb);
    int c = 0;
    for (int w = 0; w < 4; ++w) {
      uint64_t bits = ma[w] | mb[w];
      if (w == 0) bits &= ~uint64_t{1};  // byte 0 starts the first run
      while (bits) {
        const int e = w * 64 + __builtin_ctzll(bits);
        bits &= bits - 1;
        f(c, e, ra[c] != 0 && (keep_dead_b || rb[c] != 0) ? ra[c] * rows_b + rb[c] : -1);
        c = e;
      }
    }
    f(c, 256, ra[c] != 0 && (keep_dead_b || rb[c] != 0) ? ra[c] * rows_b + rb[c] : -1);
  };
  while (!frontier.empty()) {
    targets.clear();
    for (int64_t key : frontier)
      for_runs(key, [&](int, int, int64_t target) {
        if (target >= 0) targets.push_back(target);
      });
    std::sort(targets.begin(), targets.end());
    targets.erase(std::unique(targets.begin(), targets.end()), targets.end());
    fresh.clear();
    for (int64_t key : targets) {
      auto [it, is_new] = ids.emplace(key, static_cast<int32_t>(pairs.size() + 1));
      if (is_new) {
        pairs.push_back(key);
        fresh.push_back(key);
      }
    }
    if (static_cast<int64_t>(pairs.size()) > max_states)
      limit_exceeded(what + ": more than " + std::to_string(max_states) + " automaton states");
    size_t row = out.table.size();
    out.table.resize(row + frontier.size() * 256, 0);
    for (int64_t key : frontier) {
      int32_t* dst = &out.table[row];
      for_runs(key, [&](int c, int e, int64_t target) {
        if (target >= 0) std::fill(dst + c, dst + e, ids.find(target)->second);
      });
      row += 256;
    }
    frontier.swap(fresh);
  }
  out.accepting.assign(pairs.size() + 1, 0);
  for (size_t i = 0; i < pairs.size(); ++i) {
    const int64_t pa = pairs[i] / rows_b, pb = pairs[i] % rows_b;
    const bool x = acc_a[pa] != 0, y = pb != 0 && acc_b[pb] != 0;
    out.accepting[i + 1] = (accept == ProductAccept::Both ? (x && y) : (x && !y)) ? 1 : 0;
  }
  out.initial = 1;
  return out;
}

}  // namespace guided_native
