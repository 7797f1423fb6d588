// The contextual lexer: union automata of the terminal sets the parser accepts, built lazily.
//
// A lexer state is a set of live components (terminal, state of its DFA).  A component alone is
// the terminal's own DFA state, laid out as a block of ids (base + DFA state) whose rows are the
// DFA's rows read in place; a union of several gets its own row, filled the first time a walk
// reads it.  Start states (lexeme boundaries, one per terminal set) are never transition targets,
// so "at a boundary" stays distinct from "mid-lexeme".
//
// Thread safety: states live in fixed segments that never move; a row is published by a release
// store of its `filled` flag after everything it points to is written, so readers need no lock.
// Building (new states, filling rows) takes the lexer's mutex.
#pragma once

#include <algorithm>
#include <deque>
#include <map>
#include <utility>
#include <vector>

#include "byte_dfa.h"
#include "common.h"

namespace guided_native {

struct Terminal {
  std::shared_ptr<const ByteDfa> dfa;
  int32_t priority = 0;
  bool is_string = false;
  int32_t order = 0;
};

struct LexState {
  const int32_t* row = nullptr;  // targets relative to `base`; 0 is dead
  int32_t base = 0;
  int32_t chosen = -1;  // the terminal a lexeme ending here is, or -1
  const int32_t* terms = nullptr;  // live terminals, ascending
  int32_t n_terms = 0;
  std::atomic<uint8_t> filled{0};
  uint8_t is_start = 0;
  uint8_t is_block = 0;  // a state of one terminal's DFA
};

class Lexer {
 public:
  static constexpr int kSegmentBits = 12;
  static constexpr int32_t kSegment = 1 << kSegmentBits;
  using Components = std::vector<std::pair<int32_t, int32_t>>;  // (terminal, DFA state), by terminal

  // `members_of_state[lr]` / `members_after_ignore[lr]`: the terminals a lexeme may be in parser
  // state `lr` (after an ignored lexeme), ascending.
  Lexer(std::vector<Terminal> terminals, const std::vector<std::vector<int32_t>>& members_of_state,
        const std::vector<std::vector<int32_t>>& members_after_ignore, int32_t max_states)
      : terms_(std::move(terminals)), max_states_(std::max<int32_t>(max_states, 2)) {
    std::map<std::vector<int32_t>, int32_t> index;
    auto intern = [&](const std::vector<int32_t>& m) {
      auto it = index.find(m);
      if (it != index.end()) return it->second;
      int32_t id = static_cast<int32_t>(sets_.size());
      index.emplace(m, id);
      sets_.push_back(m);
      return id;
    };
    for (const auto& m : members_of_state) set_of_state_.push_back(intern(m));
    for (const auto& m : members_after_ignore) set_after_ignore_.push_back(intern(m));
    set_start_.reset(new std::atomic<int32_t>[sets_.size()]);
    for (size_t i = 0; i < sets_.size(); ++i) set_start_[i].store(0, std::memory_order_relaxed);
    dir_size_ = static_cast<size_t>(max_states_) / kSegment + 2;
    dir_.reset(new std::atomic<LexState*>[dir_size_]);
    for (size_t i = 0; i < dir_size_; ++i) dir_[i].store(nullptr, std::memory_order_relaxed);
    block_base_.assign(terms_.size(), -1);
    for (size_t t = 0; t < terms_.size(); ++t) single_term_.push_back(static_cast<int32_t>(t));
    std::lock_guard<std::mutex> lock(mu_);
    reserve(1);  // state 0: dead
    LexState& dead = at(0);
    dead.row = kDeadRow;
    dead.filled.store(1, std::memory_order_release);
  }

  int32_t num_terminals() const { return static_cast<int32_t>(terms_.size()); }
  const Terminal& terminal(int32_t t) const { return terms_[t]; }
  const std::vector<int32_t>& members(int32_t lr_state) const { return sets_[set_of_state_[lr_state]]; }
  int32_t size() const { return size_.load(std::memory_order_acquire); }

  const LexState& state(int32_t id) const {
    return dir_[id >> kSegmentBits].load(std::memory_order_acquire)[id & (kSegment - 1)];
  }
  int32_t chosen(int32_t id) const { return state(id).chosen; }
  bool is_start(int32_t id) const { return state(id).is_start != 0; }

  // The state after byte `b` in state `id` (0: the lexeme cannot extend).
  int32_t next(int32_t id, uint8_t b) {
    const LexState& s = state(id);
    if (!s.filled.load(std::memory_order_acquire)) fill(id);
    const int32_t t = s.row[b];
    return t ? t + s.base : 0;
  }

  // A row to read directly: (row, base) with targets t + base where t != 0.
  const LexState& ready(int32_t id) {
    const LexState& s = state(id);
    if (!s.filled.load(std::memory_order_acquire)) fill(id);
    return s;
  }

  // The lexer state at a lexeme boundary in parser state `lr_state`.
  int32_t start(int32_t lr_state, bool after_ignore) {
    const int32_t set = (after_ignore ? set_after_ignore_ : set_of_state_)[lr_state];
    int32_t id = set_start_[set].load(std::memory_order_acquire);
    if (id) return id;
    std::lock_guard<std::mutex> lock(mu_);
    id = set_start_[set].load(std::memory_order_relaxed);
    if (id) return id;
    id = new_start(sets_[set]);
    set_start_[set].store(id, std::memory_order_release);
    return id;
  }

  // The lexer state at a lexeme boundary where the candidates are `members` (ascending, in
  // range): a parser context beyond the tables' states (an Earley column, guided.ir.cfg rule 10).
  // One start state per distinct set; the caller keeps the id.
  int32_t context_start(const std::vector<int32_t>& members) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = context_starts_.find(members);
    if (it != context_starts_.end()) return it->second;
    const int32_t id = new_start(members);
    context_starts_.emplace(members, id);
    return id;
  }

  // The live (terminal, DFA state) pairs of state `id` (counted terminals re-place them).
  Components components(int32_t id) {
    if (id == 0) return {};
    const LexState& s = state(id);
    if (s.is_block) return Components{{s.terms[0], id - s.base}};
    std::lock_guard<std::mutex> lock(mu_);
    auto it = comps_of_.find(id);
    return it == comps_of_.end() ? Components{} : it->second;
  }

  // The (non-start) state of the live pairs `comps`, made if need be.
  int32_t state_of(const Components& comps) {
    std::lock_guard<std::mutex> lock(mu_);
    if (comps.empty()) return 0;
    if (comps.size() == 1) return block_state(comps[0].first, comps[0].second);
    auto known = unions_.find(comps);
    return known != unions_.end() ? known->second : (unions_[comps] = new_union(comps, false));
  }

  // Does any terminal in `accepted` (a bitset over terminals) live in state `id`?
  bool any_alive(int32_t id, const std::vector<uint64_t>& accepted) const {
    const LexState& s = state(id);
    for (int32_t k = 0; k < s.n_terms; ++k) {
      const int32_t t = s.terms[k];
      if ((accepted[t >> 6] >> (t & 63)) & 1u) return true;
    }
    return false;
  }

 private:
  static constexpr int32_t kDeadRow[256] = {};

  LexState& at(int32_t id) { return dir_[id >> kSegmentBits].load(std::memory_order_relaxed)[id & (kSegment - 1)]; }

  // Room for `n` more states (lock held); their first id.
  int32_t reserve(int32_t n) {
    const int32_t first = size_.load(std::memory_order_relaxed);
    if (static_cast<int64_t>(first) + n > max_states_)
      limit_exceeded("grammar lexer: more than " + std::to_string(max_states_) + " states");
    const int32_t last = first + n;  // exclusive
    for (int32_t seg = first >> kSegmentBits; seg <= (last - 1) >> kSegmentBits && n > 0; ++seg) {
      if (dir_[seg].load(std::memory_order_relaxed) == nullptr) {
        segments_.emplace_back(new LexState[kSegment]);
        dir_[seg].store(segments_.back().get(), std::memory_order_release);
      }
    }
    size_.store(last, std::memory_order_release);
    return first;
  }

  // The id of a terminal's DFA state `s` (> 0), allocating its block on first use (lock held).
  int32_t block_state(int32_t term, int32_t s) {
    int32_t base = block_base_[term];
    if (base < 0) {
      const ByteDfa& dfa = *terms_[term].dfa;
      const int32_t n = dfa.num_states() - 1;
      base = reserve(n) - 1;
      for (int32_t k = 1; k <= n; ++k) {
        LexState& st = at(base + k);
        st.row = dfa.row(k);
        st.base = base;
        st.chosen = dfa.accepting(k) ? term : -1;
        st.terms = &single_term_[term];
        st.n_terms = 1;
        st.is_block = 1;
        st.filled.store(1, std::memory_order_relaxed);
      }
      block_base_[term] = base;
    }
    return base + s;
  }

  // A start state over the terminals `set` (lock held).
  int32_t new_start(const std::vector<int32_t>& set) {
    Components comps;
    for (int32_t t : set) comps.emplace_back(t, terms_[t].dfa->initial());
    return new_union(comps, /*is_start=*/true);
  }

  int32_t new_union(const Components& comps, bool is_start) {
    const int32_t id = reserve(1);
    LexState& st = at(id);
    rows_.emplace_back(new int32_t[256]());
    st.row = rows_.back().get();
    term_lists_.emplace_back();
    std::vector<int32_t>& list = term_lists_.back();
    int32_t best = -1;
    for (const auto& [t, s] : comps) {
      list.push_back(t);
      if (!terms_[t].dfa->accepting(s)) continue;
      if (best < 0 || better(t, best)) best = t;
    }
    st.chosen = best;
    st.terms = list.data();
    st.n_terms = static_cast<int32_t>(list.size());
    st.is_start = is_start ? 1 : 0;
    if (keep_components_) comps_of_.emplace(id, comps);
    if (comps.empty()) {
      st.filled.store(1, std::memory_order_relaxed);
    } else {
      pending_.emplace(id, comps);
    }
    return id;
  }

  // Lark's tie-break between terminals accepting the same text: priority, strings first, order.
  bool better(int32_t a, int32_t b) const {
    const Terminal& x = terms_[a];
    const Terminal& y = terms_[b];
    if (x.priority != y.priority) return x.priority > y.priority;
    if (x.is_string != y.is_string) return x.is_string;
    return x.order < y.order;
  }

  // Fill a union state's row (lock held).  Each component's row is scanned once into per-byte
  // buckets, so the work follows the live bytes: a byte only one component survives leads into
  // that terminal's block; the component lists of the others are interned as union states.
  void fill(int32_t id) {
    std::lock_guard<std::mutex> lock(mu_);
    LexState& st = at(id);
    if (st.filled.load(std::memory_order_relaxed)) return;
    auto it = pending_.find(id);
    if (it == pending_.end()) invalid("lexer state " + std::to_string(id) + " has no row");  // not reachable
    const Components comps = it->second;  // erased only once the row is complete: a limit hit
                                          // half-way leaves the state pending, not broken
    int32_t* row = const_cast<int32_t*>(st.row);
    uint16_t count[256] = {};
    std::vector<std::pair<int32_t, int32_t>> live;  // (byte, index into comps) in component order
    std::vector<int32_t> target;
    for (size_t c = 0; c < comps.size(); ++c) {
      const int32_t* r = terms_[comps[c].first].dfa->row(comps[c].second);
      for (int b = 0; b < 256; ++b)
        if (r[b]) {
          live.emplace_back(b, static_cast<int32_t>(c));
          target.push_back(r[b]);
          ++count[b];
        }
    }
    // Counting sort by byte (stable: components stay in terminal order within a byte).
    uint32_t start[257];
    start[0] = 0;
    for (int b = 0; b < 256; ++b) start[b + 1] = start[b] + count[b];
    std::vector<std::pair<int32_t, int32_t>> by_byte(live.size());  // (terminal, DFA state)
    uint32_t cursor[256];
    std::memcpy(cursor, start, sizeof(cursor));
    for (size_t k = 0; k < live.size(); ++k)
      by_byte[cursor[live[k].first]++] = {comps[live[k].second].first, target[k]};
    std::unordered_map<Components, int32_t, ComponentsHash> local;
    Components key;
    for (int b = 0; b < 256; ++b) {
      if (count[b] == 0) {
        row[b] = 0;
      } else if (count[b] == 1) {
        row[b] = block_state(by_byte[start[b]].first, by_byte[start[b]].second);
      } else {
        key.assign(by_byte.begin() + start[b], by_byte.begin() + start[b + 1]);
        auto found = local.find(key);
        if (found != local.end()) {
          row[b] = found->second;
          continue;
        }
        auto known = unions_.find(key);
        const int32_t t = known != unions_.end() ? known->second : (unions_[key] = new_union(key, false));
        local.emplace(key, t);
        row[b] = t;
      }
    }
    pending_.erase(id);
    st.filled.store(1, std::memory_order_release);
  }

  struct ComponentsHash {
    size_t operator()(const Components& c) const {
      uint64_t h = 0x9E3779B97F4A7C15ULL;
      for (const auto& [t, s] : c) {
        h ^= (static_cast<uint64_t>(static_cast<uint32_t>(t)) << 32) | static_cast<uint32_t>(s);
        h *= 0xff51afd7ed558ccdULL;
        h ^= h >> 32;
      }
      return static_cast<size_t>(h);
    }
  };

  std::vector<Terminal> terms_;
  int32_t max_states_;
  std::vector<std::vector<int32_t>> sets_;
  std::vector<int32_t> set_of_state_, set_after_ignore_;
  std::unique_ptr<std::atomic<int32_t>[]> set_start_;
  size_t dir_size_ = 0;
  std::unique_ptr<std::atomic<LexState*>[]> dir_;
  std::vector<std::unique_ptr<LexState[]>> segments_;
  std::atomic<int32_t> size_{0};
  std::mutex mu_;
  std::vector<int32_t> block_base_;
  std::vector<int32_t> single_term_;
  std::deque<std::unique_ptr<int32_t[]>> rows_;
  std::deque<std::vector<int32_t>> term_lists_;
  std::unordered_map<Components, int32_t, ComponentsHash> unions_;
  std::unordered_map<int32_t, Components> pending_;
  std::unordered_map<int32_t, Components> comps_of_;  // union and start states, where kept
  std::map<std::vector<int32_t>, int32_t> context_starts_;  // `context_start`'s states

 public:
  bool keep_components_ = false;  // set before any state is built (counted terminals need them)
};

// A walk's private dense copy of the lexer rows it reads: states renumbered locally (0 dead),
// each row of 256 local targets resolved on first read (-1: not yet).  A trie walk's inner loop
// is then one load from a small table per node, instead of a directory lookup, a fill check and a
// base offset in the shared lexer.
class LexTable {
 public:
  explicit LexTable(Lexer& lexer) : lexer_(lexer) {
    next_.assign(256, 0);  // the dead state's row
    global_.push_back(0);
    chosen_.push_back(-1);
  }

  // The local number of lexer state `id` (0 for dead).
  int32_t local(int32_t id) {
    if (id == 0) return 0;
    auto [it, fresh] = index_.emplace(id, static_cast<int32_t>(global_.size()));
    if (fresh) {
      next_.resize(next_.size() + 256, -1);
      global_.push_back(id);
      chosen_.push_back(lexer_.chosen(id));
    }
    return it->second;
  }
  int32_t global(int32_t local) const { return global_[local]; }
  int32_t chosen(int32_t local) const { return chosen_[local]; }

  GUIDED_INLINE int32_t step(int32_t local, uint8_t b) {
    const int32_t t = next_[static_cast<size_t>(local) * 256 + b];
    return t >= 0 ? t : resolve(local, b);
  }

  // For `TokenTrie::walk_marking`: the rows (negative: not resolved yet), valid until `resolve`.
  const int32_t* rows() const { return next_.data(); }
  GUIDED_NOINLINE int32_t resolve(int32_t from, uint8_t b) {
    const int32_t t = local(lexer_.next(global_[from], b));
    next_[static_cast<size_t>(from) * 256 + b] = t;
    return t;
  }

 private:
  Lexer& lexer_;
  std::vector<int32_t> next_;
  std::vector<int32_t> global_;
  std::vector<int32_t> chosen_;
  std::unordered_map<int32_t, int32_t> index_;
};

}  // namespace guided_native
