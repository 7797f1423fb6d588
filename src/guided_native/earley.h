// Earley item sets as parser stacks: grammars whose LALR(1) tables have conflicts (guided.ir.cfg rule 10).
//
// The native twin of guided/engine/cfg/earley.py.  A `Column` is the Earley item set after the
// terminals fed so far; it stands where an LR stack node stands in the CFG engine (cfg_engine.h
// is generic over the two tables): it has a `uid` the mask and feed caches key on, and the
// terminals some item expects next, which with the ignored ones make its lexer context.  Items
// are (rule, dot, origin), the origin being the column the rule started in.  Columns are
// interned by their items (origins by identity), so equal item sets reached by different texts
// are the same column and share their masks.  Every expected terminal can be shifted by some
// parse, so a column never restricts its lexer the way LALR(1) lookaheads restrict a stack.
//
// Right recursion completes in one step per token (Leo's deterministic completion, `leo`).
//
// Thread safety: columns live in an arena for the grammar's lifetime and never move or change
// once published; feeds are memoised in a striped map read without the table's lock.  A column
// is built (closure, interning, Leo memos) under the table's mutex: that happens once per
// distinct (column, terminal), and the work of a mask runs on the memoised feeds.
#pragma once

#include <algorithm>
#include <atomic>
#include <deque>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "common.h"
#include "parser.h"

namespace guided_native {

// Rule r's right-hand side is symbols[offsets[r] : offsets[r + 1]]: terminal t as t, nonterminal A as ~A.
struct EarleyRules {
  std::vector<int64_t> offsets;
  std::vector<int32_t> symbols;
};

struct Column;

struct EarleyItem {
  int32_t rule;
  int32_t dot;
  const Column* origin;  // in a column's groups never null; while a column is built, null is that column
  bool operator==(const EarleyItem& o) const { return rule == o.rule && dot == o.dot && origin == o.origin; }
};

// Items grouped by a symbol (ascending), each group's items in a contiguous run.
struct ItemGroups {
  std::vector<int32_t> symbols;
  std::vector<uint32_t> offsets{0};
  std::vector<EarleyItem> items;

  // The items of `symbol` as [first, last) (empty if none).
  std::pair<const EarleyItem*, const EarleyItem*> of(int32_t symbol) const {
    auto it = std::lower_bound(symbols.begin(), symbols.end(), symbol);
    if (it == symbols.end() || *it != symbol) return {nullptr, nullptr};
    const size_t k = static_cast<size_t>(it - symbols.begin());
    return {items.data() + offsets[k], items.data() + offsets[k + 1]};
  }
};

// What completing a symbol in a column leads to by Leo's deterministic completion: the topmost
// item of the chain (found false: no chain, complete the waiting items one by one).
struct LeoStep {
  bool found = false;
  EarleyItem item{0, 0, nullptr};
  bool through_start = false;  // the chain skipped an item of the start symbol from the root
};

struct Column {
  uint64_t uid = 0;
  bool complete = false;  // an item of the start symbol spans the whole input
  ItemGroups waiting;  // nonterminal -> the items waiting for it, dot already past it
  ItemGroups scans;  // terminal -> the items expecting it, dot already past it (symbols: the expected terminals)
  // The lexer's start state at a boundary here (0: not made yet), plain and after an ignored
  // lexeme: set by the CFG engine, which owns the lexer (cfg_engine.h).
  mutable std::atomic<int32_t> lex_start[2] = {{0}, {0}};
  std::unordered_map<int32_t, LeoStep> leo;  // nonterminal -> `EarleyTable::leo` (memo; the table's mutex)
};

class EarleyTable {
 public:
  using Node = Column;

  // `tables`: the IR's LALR tables (valid, conflicts resolved; only their rules are read here);
  // `rules`: the right-hand sides.  Everything is checked; malformed IR is refused.
  EarleyTable(ParseTables tables, EarleyRules rules) : t_(std::move(tables)), rhs_(std::move(rules)) {
    t_.validate();
    if (t_.max_nesting != 0 || std::any_of(t_.nesting.begin(), t_.nesting.end(), [](uint8_t f) { return f != 0; }))
      invalid("malformed IR: an Earley grammar (rule 10) takes no nesting bound");
    const size_t n_rules = t_.rules.size();
    const std::vector<int64_t>& off = rhs_.offsets;
    if (off.size() != n_rules + 1 || off[0] != 0 || static_cast<size_t>(off.back()) != rhs_.symbols.size())
      invalid("malformed IR: Earley right-hand sides do not match the " + std::to_string(n_rules) + " rules");
    for (size_t r = 0; r < n_rules; ++r)
      if (off[r + 1] < off[r] || off[r + 1] > off.back() || off[r + 1] - off[r] != t_.rules[r].second)
        invalid("malformed IR: Earley right-hand side of rule " + std::to_string(r) + " is not of the rule's length");
    for (size_t k = 0; k < rhs_.symbols.size(); ++k) {
      const int32_t s = rhs_.symbols[k];
      if (s >= 0 ? s >= t_.n_terminals : ~s >= t_.n_nonterminals)
        invalid("malformed IR: Earley right-hand side names symbol " + std::to_string(s) + ", out of range");
    }
    by_lhs_.assign(static_cast<size_t>(t_.n_nonterminals), {});
    for (size_t r = 0; r < n_rules; ++r) by_lhs_[static_cast<size_t>(t_.rules[r].first)].push_back(static_cast<int32_t>(r));
    if (t_.n_nonterminals == 0 || by_lhs_[0].empty())
      invalid("malformed IR: an Earley grammar needs a rule for the start symbol (nonterminal 0)");
    // Every rule must be able to finish, or masks would allow texts with no completion.
    std::vector<uint8_t> productive(static_cast<size_t>(t_.n_nonterminals), 0);
    nullable_.assign(static_cast<size_t>(t_.n_nonterminals), 0);
    for (bool changed = true; changed;) {
      changed = false;
      for (size_t r = 0; r < n_rules; ++r) {
        const size_t lhs = static_cast<size_t>(t_.rules[r].first);
        bool prod = true, null = true;
        for (int64_t k = off[r]; k < off[r + 1]; ++k) {
          const int32_t s = rhs_.symbols[k];
          prod = prod && (s >= 0 || productive[~s]);
          null = null && s < 0 && nullable_[~s];
        }
        if (prod && !productive[lhs]) productive[lhs] = changed = true;
        if (null && !nullable_[lhs]) nullable_[lhs] = changed = true;
      }
    }
    for (size_t r = 0; r < n_rules; ++r)
      for (int64_t k = off[r]; k < off[r + 1]; ++k)
        if (rhs_.symbols[k] < 0 && !productive[~rhs_.symbols[k]])
          invalid("malformed IR: Earley rule " + std::to_string(r) +
                  " can never finish (a nonterminal of it derives no text)");
    std::vector<EarleyItem> seeds;
    for (int32_t r : by_lhs_[0]) seeds.push_back(EarleyItem{r, 0, nullptr});
    std::lock_guard<std::mutex> lock(mu_);
    root_ = column(seeds, /*root=*/true);
  }

  EarleyTable(const EarleyTable&) = delete;
  EarleyTable& operator=(const EarleyTable&) = delete;

  const ParseTables& tables() const { return t_; }
  const Column* root() const { return root_; }
  size_t num_nodes() const {
    std::lock_guard<std::mutex> lock(mu_);
    return arena_.size();
  }

  // The column after `terminal` (Earley's scan, prediction, completion), nullptr if no item expects it.
  const Column* feed(const Column* c, int32_t terminal) {
    const std::pair<uint64_t, int32_t> key{c->uid, terminal};
    const Column* cached;
    if (feeds_.find(key, cached)) return cached;
    auto [first, last] = c->scans.of(terminal);
    const Column* result = nullptr;
    if (first != last) {
      std::vector<EarleyItem> seeds(first, last);
      std::lock_guard<std::mutex> lock(mu_);
      result = column(seeds, false);
    }
    return feeds_.insert(key, result);
  }

  // Does an item of the start symbol span the whole input?
  static bool can_end(const Column* c) { return c->complete; }

 private:
  int32_t lhs(int32_t rule) const { return t_.rules[static_cast<size_t>(rule)].first; }
  int32_t length(int32_t rule) const { return t_.rules[static_cast<size_t>(rule)].second; }
  int32_t symbol(int32_t rule, int32_t dot) const { return rhs_.symbols[static_cast<size_t>(rhs_.offsets[rule] + dot)]; }

  struct ItemHash {
    size_t operator()(const EarleyItem& i) const {
      uint64_t h = (static_cast<uint64_t>(static_cast<uint32_t>(i.rule)) << 32 | static_cast<uint32_t>(i.dot)) *
                   0x9E3779B97F4A7C15ULL;
      h ^= reinterpret_cast<uintptr_t>(i.origin) + 0x7F4A7C15ULL + (h << 6) + (h >> 2);
      return static_cast<size_t>(h);
    }
  };
  struct KeyHash {
    size_t operator()(const std::vector<uint64_t>& k) const {
      uint64_t h = 0x9E3779B97F4A7C15ULL ^ k.size();
      for (uint64_t x : k) {
        h ^= x;
        h *= 0xff51afd7ed558ccdULL;
        h ^= h >> 32;
      }
      return static_cast<size_t>(h);
    }
  };

  // Leo's deterministic completion (lock held): where `c` has exactly one item waiting for
  // `symbol`, as its last symbol, completing `symbol` completes that item; if that one's
  // left-hand side is again the last symbol of the one item waiting for it, and so on, only the
  // topmost item of the chain matters (the items below complete nothing else).  Right recursion
  // then costs a constant per token instead of the depth of the recursion.  Iterative (a chain
  // may be as long as the input), memoised per (column, symbol); a chain that comes back to a
  // pair on it stops there, as the recursive definition of the Python engine does.
  LeoStep leo(const Column* c, int32_t symbol) {
    struct Link {
      Column* column;
      int32_t symbol;
      EarleyItem item;
    };
    std::vector<Link> chain;
    Column* cur = const_cast<Column*>(c);  // the memo is the only part written after publication
    int32_t sym = symbol;
    LeoStep above;
    for (;;) {
      auto it = cur->leo.find(sym);
      if (it != cur->leo.end()) {
        above = it->second;
        break;
      }
      cur->leo.emplace(sym, LeoStep{});  // a chain coming back here stops here
      auto [first, last] = cur->waiting.of(sym);
      if (last - first != 1 || first->dot != length(first->rule)) break;  // above stays "none"
      chain.push_back(Link{cur, sym, *first});
      sym = lhs(first->rule);
      cur = const_cast<Column*>(first->origin);
    }
    for (auto link = chain.rbegin(); link != chain.rend(); ++link) {
      LeoStep found;
      found.found = true;
      if (!above.found) {
        found.item = link->item;
      } else {
        found.item = above.item;
        found.through_start = above.through_start || (lhs(link->item.rule) == 0 && link->item.origin == root_);
      }
      link->column->leo[link->symbol] = found;
      above = found;
    }
    return above;
  }

  // The interned column holding the closure of `seeds` (lock held).
  const Column* column(const std::vector<EarleyItem>& seeds, bool root) {
    std::unordered_set<EarleyItem, ItemHash> found;
    std::unordered_map<int32_t, std::vector<EarleyItem>> waiting_here;  // nonterminal -> items here waiting for it
    std::vector<EarleyItem> todo;
    bool through_start = false;
    auto add = [&](const EarleyItem& item) {
      if (!found.insert(item).second) return;
      todo.push_back(item);
      if (item.dot < length(item.rule)) {
        const int32_t s = symbol(item.rule, item.dot);
        if (s < 0) waiting_here[~s].push_back(item);
      }
    };
    for (const EarleyItem& item : seeds) add(item);
    while (!todo.empty()) {
      const EarleyItem item = todo.back();
      todo.pop_back();
      const int32_t len = length(item.rule);
      if (item.dot == len) {  // completion
        const int32_t left = lhs(item.rule);
        if (item.origin == nullptr) {  // an empty derivation here: nullable, stepped over at prediction too
          auto w = waiting_here.find(left);
          if (w == waiting_here.end()) continue;
          const size_t n = w->second.size();  // those waiting now (later ones step over at prediction)
          for (size_t k = 0; k < n; ++k) {
            const EarleyItem& wi = waiting_here[left][k];  // re-read: `add` may grow the vector
            add(EarleyItem{wi.rule, wi.dot + 1, wi.origin});
          }
        } else {
          const LeoStep step = leo(item.origin, left);
          if (step.found) {  // a chain of right recursion, completed in one step
            add(step.item);
            through_start = through_start || step.through_start;
          } else {
            auto [first, last] = item.origin->waiting.of(left);
            for (const EarleyItem* p = first; p != last; ++p) add(*p);
          }
        }
      } else if (symbol(item.rule, item.dot) < 0) {  // prediction (Aycock and Horspool: a nullable symbol is also stepped over)
        const int32_t b = ~symbol(item.rule, item.dot);
        for (int32_t r : by_lhs_[static_cast<size_t>(b)]) add(EarleyItem{r, 0, nullptr});
        if (nullable_[static_cast<size_t>(b)]) add(EarleyItem{item.rule, item.dot + 1, item.origin});
      }
    }
    std::vector<EarleyItem> items(found.begin(), found.end());
    auto uid_of = [](const Column* o) { return o == nullptr ? uint64_t{0} : o->uid; };
    std::sort(items.begin(), items.end(), [&](const EarleyItem& a, const EarleyItem& b) {
      if (a.rule != b.rule) return a.rule < b.rule;
      if (a.dot != b.dot) return a.dot < b.dot;
      return uid_of(a.origin) < uid_of(b.origin);
    });
    std::vector<uint64_t> key;
    key.reserve(items.size() * 2);
    for (const EarleyItem& i : items) {
      key.push_back(static_cast<uint64_t>(static_cast<uint32_t>(i.rule)) << 32 | static_cast<uint32_t>(i.dot));
      key.push_back(uid_of(i.origin));
    }
    auto known = interned_.find(key);
    if (known != interned_.end()) return known->second;
    arena_.emplace_back();
    Column* col = &arena_.back();
    col->uid = next_uid_++;
    const Column* root_column = root ? col : root_;
    std::vector<std::pair<int32_t, EarleyItem>> waits, scans;
    bool complete = through_start;
    for (const EarleyItem& i : items) {
      const Column* origin = i.origin == nullptr ? col : i.origin;
      if (i.dot < length(i.rule)) {
        const int32_t s = symbol(i.rule, i.dot);
        (s < 0 ? waits : scans).emplace_back(s < 0 ? ~s : s, EarleyItem{i.rule, i.dot + 1, origin});
      } else if (lhs(i.rule) == 0 && origin == root_column) {
        complete = true;
      }
    }
    col->complete = complete;
    group(waits, col->waiting);
    group(scans, col->scans);
    interned_.emplace(std::move(key), col);
    return col;
  }

  // `pairs` (symbol, item), in item order, as groups by symbol (the order within a group kept).
  static void group(std::vector<std::pair<int32_t, EarleyItem>>& pairs, ItemGroups& out) {
    std::stable_sort(pairs.begin(), pairs.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    for (const auto& [s, item] : pairs) {
      if (out.symbols.empty() || out.symbols.back() != s) {
        if (!out.symbols.empty()) out.offsets.push_back(static_cast<uint32_t>(out.items.size()));
        out.symbols.push_back(s);
      }
      out.items.push_back(item);
    }
    if (!out.symbols.empty()) out.offsets.push_back(static_cast<uint32_t>(out.items.size()));
  }

  ParseTables t_;
  EarleyRules rhs_;
  std::vector<std::vector<int32_t>> by_lhs_;
  std::vector<uint8_t> nullable_;
  mutable std::mutex mu_;
  std::deque<Column> arena_;
  std::unordered_map<std::vector<uint64_t>, const Column*, KeyHash> interned_;
  uint64_t next_uid_ = 1;
  const Column* root_ = nullptr;
  StripedMap<std::pair<uint64_t, int32_t>, const Column*, PairHash> feeds_;
};

}  // namespace guided_native
