// Byte DFAs from byte NFAs: subset construction (`guided.ir.dfa.determinize`) and Moore partition
// refinement (`guided.ir.dfa.minimize`), numbering states exactly as the Python code does, so a
// compiled grammar's serialised IR does not depend on which ran.  The NFA comes from Python as
// lists; every state index and byte in it is checked before use.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "common.h"
#include "dfa_ops.h"

namespace guided_native {

// An NFA over byte ranges with epsilon moves, as guided.ir.dfa.ByteNFA holds it: per state, its
// (lo, hi, target) moves (lo > hi: a move on no byte) and its epsilon targets.
struct RangeNfa {
  std::vector<std::vector<std::tuple<int64_t, int64_t, int64_t>>> ranges;
  std::vector<std::vector<int64_t>> epsilons;
  std::vector<int64_t> accepting;
  int64_t start = 0;
};

inline void check_nfa(const RangeNfa& nfa, const std::string& what) {
  const auto n = static_cast<int64_t>(nfa.ranges.size());
  auto bad = [&](const std::string& m) { invalid(what + ": malformed automaton: " + m); };
  if (n < 1) bad("no states");
  if (n > INT32_MAX - 1) bad("too many states");
  if (static_cast<int64_t>(nfa.epsilons.size()) != n) bad("one epsilon list per state");
  if (nfa.start < 0 || nfa.start >= n) bad("start state out of range");
  for (int64_t s = 0; s < n; ++s) {
    for (const auto& [lo, hi, t] : nfa.ranges[s]) {
      if (lo < 0 || lo > 255 || hi < 0 || hi > 255)
        bad("byte range of state " + std::to_string(s) + " outside 0..255");
      if (t < 0 || t >= n) bad("move of state " + std::to_string(s) + " to a state out of range");
    }
    for (int64_t t : nfa.epsilons[s])
      if (t < 0 || t >= n) bad("epsilon of state " + std::to_string(s) + " to a state out of range");
  }
  for (int64_t s : nfa.accepting)
    if (s < 0 || s >= n) bad("accepting state out of range");
}

// "Past this instant, stop": a steady-clock deadline `seconds` from now (already passed when
// negative; none when infinite, NaN or past 1e9 s).
class Deadline {
 public:
  explicit Deadline(double seconds)
      : none_(!(seconds < 1e9)),
        at_(std::chrono::steady_clock::now() +
            std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                std::chrono::duration<double>(none_ ? 0.0 : std::max(seconds, -1e9)))) {}
  bool passed() const { return !none_ && std::chrono::steady_clock::now() > at_; }

 private:
  bool none_;
  std::chrono::steady_clock::time_point at_;
};

struct SubsetHash {
  size_t operator()(const std::vector<int32_t>& v) const noexcept {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ v.size();
    for (int32_t x : v) h = (h ^ static_cast<uint32_t>(x)) * 0x100000001B3ull + (h >> 29);
    return static_cast<size_t>(h);
  }
};

// The subset construction of guided.ir.dfa.determinize, untrimmed: subset 0 is the empty (dead)
// set, 1 the closure of the start state, the others numbered in the order the Python code meets
// them (subsets in order, each one's elementary byte intervals in increasing order).  More than
// `max_states` subsets: `LimitExceeded`; the deadline is looked at every 256 subsets, as there.
inline DenseDfa nfa_determinize(const RangeNfa& nfa, int64_t max_states, double seconds_left, const std::string& what,
                                const std::string& too_slow) {
  check_nfa(nfa, what);
  const auto n = static_cast<int32_t>(nfa.ranges.size());
  const Deadline deadline(seconds_left);
  std::vector<uint8_t> accepting(static_cast<size_t>(n), 0);
  for (int64_t s : nfa.accepting) accepting[s] = 1;

  std::vector<uint32_t> mark(static_cast<size_t>(n), 0);
  uint32_t stamp = 0;
  std::vector<int32_t> stack;
  // The epsilon closure of `from` (any order, repeats allowed), sorted.
  auto closure = [&](const int32_t* from, size_t count, std::vector<int32_t>& out) {
    if (++stamp == 0) {  // the stamps wrapped: forget them all
      std::fill(mark.begin(), mark.end(), 0);
      stamp = 1;
    }
    out.clear();
    stack.assign(from, from + count);
    while (!stack.empty()) {
      const int32_t s = stack.back();
      stack.pop_back();
      if (mark[s] == stamp) continue;
      mark[s] = stamp;
      out.push_back(s);
      for (int64_t t : nfa.epsilons[s])
        if (mark[t] != stamp) stack.push_back(static_cast<int32_t>(t));
    }
    std::sort(out.begin(), out.end());
  };
  std::vector<std::vector<int32_t>> single(static_cast<size_t>(n));  // closures of one state, memoised
  std::vector<uint8_t> have_single(static_cast<size_t>(n), 0);

  std::vector<std::vector<int32_t>> order;  // subset id -> members
  std::unordered_map<std::vector<int32_t>, int32_t, SubsetHash> index;
  order.emplace_back();
  index.emplace(order[0], 0);
  {
    const int32_t start = static_cast<int32_t>(nfa.start);
    std::vector<int32_t> first;
    closure(&start, 1, first);
    order.push_back(first);
    index.emplace(std::move(first), 1);
  }
  auto too_many = [&] {
    limit_exceeded(what + ": more than " + std::to_string(max_states) +
                   " automaton states (raise the limit with max_states=, or simplify the pattern)");
  };
  if (static_cast<int64_t>(order.size()) > max_states) too_many();

  DenseDfa out;
  out.table.assign(256, 0);
  std::vector<int32_t> points, interval_of(257), key;
  std::vector<std::vector<int32_t>> buckets(256);
  for (size_t pending = 1; pending < order.size(); ++pending) {
    if ((pending + 1) % 256 == 0 && deadline.passed()) limit_exceeded(too_slow);
    // Split the byte space at every range boundary of every member, then send each elementary
    // interval to the closure of the targets of the moves covering it.
    points.clear();
    for (int32_t s : order[pending])
      for (const auto& [lo, hi, t] : nfa.ranges[s]) {
        points.push_back(static_cast<int32_t>(lo));
        points.push_back(static_cast<int32_t>(hi) + 1);
      }
    out.table.resize(out.table.size() + 256, 0);
    if (points.empty()) continue;
    std::sort(points.begin(), points.end());
    points.erase(std::unique(points.begin(), points.end()), points.end());
    const size_t intervals = points.size() - 1;
    for (size_t i = 0; i < points.size(); ++i) interval_of[points[i]] = static_cast<int32_t>(i);
    for (size_t i = 0; i < intervals; ++i) buckets[i].clear();
    for (int32_t s : order[pending])
      for (const auto& [lo, hi, t] : nfa.ranges[s])
        for (int32_t i = interval_of[lo]; i < interval_of[hi + 1]; ++i) buckets[i].push_back(static_cast<int32_t>(t));
    for (size_t i = 0; i < intervals; ++i) {
      const std::vector<int32_t>& targets = buckets[i];
      if (targets.empty()) continue;
      const std::vector<int32_t>* members;
      if (targets.size() == 1) {
        const int32_t t = targets[0];
        if (!have_single[t]) {
          closure(&t, 1, single[t]);
          have_single[t] = 1;
        }
        members = &single[t];
      } else {
        closure(targets.data(), targets.size(), key);
        members = &key;
      }
      auto found = index.find(*members);
      int32_t state;
      if (found != index.end()) {
        state = found->second;
      } else {
        state = static_cast<int32_t>(order.size());
        order.push_back(*members);
        index.emplace(*members, state);
        if (static_cast<int64_t>(order.size()) > max_states) too_many();
      }
      // `order` may have grown: index the table afresh.
      int32_t* row = &out.table[pending * 256];
      std::fill(row + points[i], row + points[i + 1], state);
    }
  }
  out.accepting.assign(order.size(), 0);
  for (size_t i = 0; i < order.size(); ++i)
    for (int32_t s : order[i])
      if (accepting[s]) {
        out.accepting[i] = 1;
        break;
      }
  out.initial = 1;
  return out;
}

// The result of `dfa_minimize`: `changed` false when the automaton is returned as it was (already
// minimal, still refining after `max_rounds`, or past the deadline).
struct Minimized {
  bool changed = false;
  DenseDfa dfa;
};

// Moore's partition refinement as guided.ir.dfa.minimize runs it: start from {dead}, {other
// rejecting}, {other accepting}; each round splits blocks by their members' successors' blocks,
// until a round splits nothing.  Past `max_rounds` rounds or the deadline: unchanged (as exact).
// The minimal automaton numbers the dead state's block 0, the initial state's 1 and the others in
// the order of their lowest state; each block's row is its lowest state's.
inline Minimized dfa_minimize(const int32_t* table, const uint8_t* accepting, int64_t rows, int64_t initial,
                              int64_t max_rounds, double seconds_left) {
  check_dense(table, rows, initial, "minimize");
  const Deadline deadline(seconds_left);
  Minimized result;
  const size_t n = static_cast<size_t>(rows);
  // Bytes every state treats alike form one class; refinement needs one column per class.
  std::vector<int> classes;  // a representative byte per class
  {
    std::vector<uint64_t> column_hash(256, 0);
    for (size_t s = 0; s < n; ++s) {
      const uint64_t w = (static_cast<uint64_t>(s) + 1) * 0x9E3779B97F4A7C15ull;
      const int32_t* row = table + s * 256;
      for (int c = 0; c < 256; ++c) column_hash[c] += w * (static_cast<uint64_t>(row[c]) + 1);
    }
    for (int c = 0; c < 256; ++c) {
      bool seen = false;
      for (int r : classes) {
        if (column_hash[r] != column_hash[c]) continue;
        bool same = true;
        for (size_t s = 0; s < n && same; ++s) same = table[s * 256 + r] == table[s * 256 + c];
        if (same) {
          seen = true;
          break;
        }
      }
      if (!seen) classes.push_back(c);
    }
  }
  const size_t k = classes.size();
  std::vector<int32_t> columns(n * k);
  for (size_t s = 0; s < n; ++s)
    for (size_t j = 0; j < k; ++j) columns[s * k + j] = table[s * 256 + classes[j]];

  std::vector<int32_t> block(n), next(n);
  int32_t count = 0;
  {
    int32_t seen[3] = {-1, -1, -1};  // initial block by kind (0 dead, 1 rejecting, 2 accepting), first-seen order
    for (size_t s = 0; s < n; ++s) {
      const int kind = s == 0 ? 0 : accepting[s] ? 2 : 1;
      if (seen[kind] < 0) seen[kind] = count++;
      block[s] = seen[kind];
    }
  }
  // Open addressing over representative states, keyed by (block, successors' blocks).
  size_t capacity = 16;
  while (capacity < 2 * n) capacity <<= 1;
  std::vector<int32_t> slots(capacity);
  std::vector<int32_t> rep_of;  // new block -> its first state
  auto signature_hash = [&](size_t s) {
    uint64_t h = static_cast<uint64_t>(block[s]) * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
    const int32_t* col = &columns[s * k];
    for (size_t j = 0; j < k; ++j) {
      h ^= static_cast<uint64_t>(block[col[j]]) + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
      h *= 0xFF51AFD7ED558CCDull;
    }
    return h ^ (h >> 33);
  };
  auto same_signature = [&](size_t a, size_t b) {
    if (block[a] != block[b]) return false;
    const int32_t* ca = &columns[a * k];
    const int32_t* cb = &columns[b * k];
    for (size_t j = 0; j < k; ++j)
      if (block[ca[j]] != block[cb[j]]) return false;
    return true;
  };
  bool stable = false;
  for (int64_t round = 0; round < max_rounds; ++round) {
    if (deadline.passed()) return result;
    std::fill(slots.begin(), slots.end(), -1);
    rep_of.clear();
    for (size_t s = 0; s < n; ++s) {
      size_t at = signature_hash(s) & (capacity - 1);
      while (true) {
        const int32_t b = slots[at];
        if (b < 0) {
          slots[at] = static_cast<int32_t>(rep_of.size());
          next[s] = static_cast<int32_t>(rep_of.size());
          rep_of.push_back(static_cast<int32_t>(s));
          break;
        }
        if (same_signature(s, static_cast<size_t>(rep_of[b]))) {
          next[s] = b;
          break;
        }
        at = (at + 1) & (capacity - 1);
      }
    }
    const auto new_count = static_cast<int32_t>(rep_of.size());
    block.swap(next);
    if (new_count == count) {
      stable = true;
      break;
    }
    count = new_count;
  }
  if (!stable || count == static_cast<int32_t>(n)) return result;
  // Blocks are numbered in the order of their lowest state (the dead state's is 0); the initial
  // state's block moves to 1.  A block holding both is an untrimmed automaton: left as it is.
  const int32_t start_block = block[initial];
  if (start_block == block[0]) return result;
  std::vector<int32_t> rank(static_cast<size_t>(count));
  for (int32_t b = 0, next_rank = 2; b < count; ++b)
    rank[b] = b == block[0] ? 0 : b == start_block ? 1 : next_rank++;
  std::vector<int32_t> reps(static_cast<size_t>(count));
  for (int32_t b = 0; b < count; ++b) reps[rank[b]] = rep_of[b];
  result.changed = true;
  DenseDfa& out = result.dfa;
  out.table.resize(static_cast<size_t>(count) * 256);
  out.accepting.resize(static_cast<size_t>(count));
  for (int32_t r = 0; r < count; ++r) {
    const int32_t* row = table + static_cast<size_t>(reps[r]) * 256;
    int32_t* dst = &out.table[static_cast<size_t>(r) * 256];
    for (int c = 0; c < 256; ++c) dst[c] = rank[block[row[c]]];
    out.accepting[r] = accepting[reps[r]] ? 1 : 0;
  }
  out.initial = 1;
  return result;
}

}  // namespace guided_native
