// Context-free constraints: the greedy contextual lexer over the parser, as token masks.
//
// The parser is the LALR(1) parser (parser.h) or, for grammars whose tables have conflicts, the
// Earley table (earley.h): a template parameter, whose nodes (stacks or columns) are interned
// alike.  A configuration is (interned parser stack, lexer state).  A mask is assembled from parts:
// - what the lexer state alone decides (`LexemeInfo`, per lexer state, shared by every stack):
//   the tokens whose bytes all extend the current lexeme ("inside"), the tokens whose first byte
//   ends it ("after end", then allowed exactly where the next configuration allows them), and the
//   trie nodes deeper down where the lexeme ends ("seeds");
// - what depends on the stack: the terminal fed at each boundary (once per distinct terminal),
//   the walks below the seeds, and LALR(1) lookaheads that make some terminals not viable.
// Masks are cached per (stack, lexer state).  Semantics are those of `guided.engine.cfg` exactly:
// a token is allowed iff every byte steps (extend the lexeme, or end it as its chosen terminal,
// feed that to the parser and start the next lexeme) and the final configuration is viable.
#pragma once

#include <algorithm>
#include <atomic>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

#include "lexeme_walks.h"
#include "counting.h"
#include "earley.h"
#include "lexer.h"
#include "matcher.h"
#include "parser.h"
#include "shared_lexemes.h"
#include "token_trie.h"

namespace guided_native {

class CfgCloser;  // closing.h: lower bounds and budget masks of LALR grammars

// The parser tables the engine runs on: the LALR(1) parser's interned stacks (parser.h) or, for
// grammars whose tables have conflicts, the Earley table's interned columns (earley.h).  Both
// give a node with a `uid`, `root()`, `feed(node, terminal)` (null: a syntax error) and
// `can_end(node)`; they differ in how a node names its lexer context and whether the parser can
// refuse a terminal its lexer context holds (LALR(1) lookaheads can; an Earley column cannot).
// A template parameter, so the LALR path compiles exactly as before.
template <typename Table>
struct StackTableTraits;
template <>
struct StackTableTraits<Parser> {
  using Node = StackNode;
  static constexpr bool kEarley = false;
};
template <>
struct StackTableTraits<EarleyTable> {
  using Node = Column;
  static constexpr bool kEarley = true;
};

template <typename Node>
struct ConfigT {
  const Node* stack = nullptr;  // nullptr: finished (after EOS)
  int32_t lex = 0;  // 0: dead
  int32_t count = -1;  // counted terminals: the pending lexeme's exact count (-1: none kept)
  explicit operator bool() const { return lex != 0; }
};
using Config = ConfigT<StackNode>;

template <typename Table>
class CfgGrammarT : public std::enable_shared_from_this<CfgGrammarT<Table>> {
 public:
  using Node = typename StackTableTraits<Table>::Node;
  using Config = ConfigT<Node>;
  static constexpr bool kEarley = StackTableTraits<Table>::kEarley;
  static constexpr size_t kMaskCacheSize = 4096;
  static constexpr int kMaxNestedMasks = 256;

  // `table_args`: what the table takes beside `tables` (the Earley table: its right-hand sides).
  template <typename... TableArgs>
  CfgGrammarT(std::shared_ptr<const TokenTrie> trie, std::shared_ptr<SharedLexemes> shared,
              std::vector<Terminal> terminals, std::vector<int32_t> ignore,
              bool ignore_repeats, const std::vector<int32_t>& no_ignore_states, ParseTables tables,
              int32_t max_lexer_states, TableArgs&&... table_args)
      : trie_(std::move(trie)),
        shared_(std::move(shared)),
        parser_(std::move(tables), std::forward<TableArgs>(table_args)...),
        lexer_(terminals, members(parser_.tables(), terminals.size(), ignore, no_ignore_states, false, ignore_repeats),
               members(parser_.tables(), terminals.size(), ignore, no_ignore_states, true, ignore_repeats),
               max_lexer_states),
        walks_(*trie_, lexer_),
        masks_(kMaskCacheSize / decltype(masks_)::kStripes) {
    ignored_.assign(terminals.size(), 0);
    for (int32_t t : ignore) ignored_[t] = 1;  // range checked by members()
    ignore_ = ignore;
    std::sort(ignore_.begin(), ignore_.end());
    ignore_.erase(std::unique(ignore_.begin(), ignore_.end()), ignore_.end());
    ignore_repeats_ = ignore_repeats;
    all_accepted_ = std::make_unique<std::vector<uint64_t>>();
  }

  const TokenTrie& trie() const { return *trie_; }
  CfgCloser& closer();  // made on first use (closing.h)
  bool is_ignored(int32_t terminal) const { return ignored_[terminal] != 0; }
  bool counting() const { return counting_; }
  bool is_counted(int32_t terminal) const { return counting_ && counted_[terminal] != nullptr; }
  Table& parser() { return parser_; }
  Lexer& lexer() { return lexer_; }

  Config initial() {
    const Node* root = parser_.root();
    return Config{root, boundary(root, false), 0};
  }

  // The lexer state at a lexeme boundary on `stack` (`after_ignore`: the lexeme just ended was
  // an ignored one).  An Earley column's context is the terminals some item expects next plus
  // the ignored ones (guided.ir.cfg rule 10: no_ignore_states does not apply), made on first use
  // and kept in the column.
  int32_t boundary(const Node* stack, bool after_ignore) {
    if constexpr (kEarley) {
      std::atomic<int32_t>& slot = stack->lex_start[after_ignore ? 1 : 0];
      int32_t id = slot.load(std::memory_order_acquire);
      if (id) return id;
      const std::vector<int32_t>& expected = stack->scans.symbols;
      std::vector<int32_t> members;
      if (after_ignore && !ignore_repeats_) {
        members = expected;
      } else {
        std::set_union(expected.begin(), expected.end(), ignore_.begin(), ignore_.end(), std::back_inserter(members));
      }
      id = lexer_.context_start(members);
      slot.store(id, std::memory_order_release);
      return id;
    } else {
      return lexer_.start(stack->state, after_ignore);
    }
  }

  // Counted terminals (counting.h), indexed by terminal (null: not counted); before any state.
  void set_counting(std::vector<std::shared_ptr<const CountedTerm>> counted) {
    for (size_t t = 0; t < counted.size(); ++t)
      if (counted[t]) {
        if (t >= static_cast<size_t>(lexer_.num_terminals())) invalid("malformed counted terminal: index");
        counted[t]->check(lexer_.terminal(static_cast<int32_t>(t)).dfa->num_states());
        counting_ = true;
      }
    counted_ = std::move(counted);
    counted_.resize(lexer_.num_terminals());
    lexer_.keep_components_ = counting_;
  }

  // -- one byte -------------------------------------------------------------------------------

  Config step(Config c, uint8_t b) {
    const int32_t t = lexer_.next(c.lex, b);
    if (t) return counting_ ? recount(c.lex, c.count, Config{c.stack, t}, b) : Config{c.stack, t};
    return cross(c, b);
  }

  // `after`, the configuration after byte `b` from lexer state `before` (whose lexeme's exact
  // count is `count`; a start state's is 0), on the lexer state of the exact count.
  Config recount(int32_t before, int32_t count, Config after, uint8_t b) {
    Lexer::Components comps = lexer_.components(after.lex);
    bool any = false;
    for (const auto& [t, e] : comps) any = any || counted_[t] != nullptr;
    if (!any) return after;
    int64_t n = count;
    if (lexer_.is_start(before)) {
      n = 0;
    } else if (count < 0) {
      return after;  // no count to correct with (as the Python engine)
    }
    for (const auto& [t, e] : lexer_.components(before))
      if (counted_[t] != nullptr) {
        n += counted_[t]->counts(e, b);
        break;
      }
    Lexer::Components fixed;
    for (const auto& [t, e] : comps) {
      if (counted_[t] == nullptr) {
        fixed.emplace_back(t, e);
        continue;
      }
      const int32_t e2 = counted_[t]->at(e, n);
      if (e2) fixed.emplace_back(t, e2);
    }
    if (fixed.empty()) return Config{};
    if (n > INT32_MAX) invalid("a counted lexeme past 2^31 characters");
    return Config{after.stack, lexer_.state_of(fixed), static_cast<int32_t>(n)};
  }

  // The byte `b` ends the lexeme of `c` (it cannot extend it): feed the lexeme, start the next.
  Config cross(Config c, uint8_t b) {
    const int32_t term = lexer_.chosen(c.lex);
    if (term < 0) return Config{};
    const bool ignored = ignored_[term] != 0;
    const Node* stack = ignored ? c.stack : parser_.feed(c.stack, term);
    if (stack == nullptr) return Config{};
    const int32_t start = boundary(stack, ignored);
    const int32_t t = lexer_.next(start, b);
    if (!t) return Config{};
    return counting_ ? recount(start, 0, Config{stack, t}, b) : Config{stack, t};
  }

  // The terminals of the stack's lexer the parser really accepts (LALR(1) lookaheads merged from
  // other contexts make exceptions); `all_accepted()` when that is all of them.
  const std::vector<uint64_t>* accepted(const Node* stack) {
    if constexpr (kEarley) {
      return all_accepted_.get();  // every expected terminal can be shifted by some parse
    } else {
      return lookahead_accepted(stack);
    }
  }

 private:
  const std::vector<uint64_t>* lookahead_accepted(const Node* stack) {
    const std::vector<uint64_t>* found;
    if (accepted_.find(stack->uid, found)) return found;
    const std::vector<int32_t>& members = lexer_.members(stack->state);
    auto bits = std::make_unique<std::vector<uint64_t>>((lexer_.num_terminals() + 63) / 64, 0);
    size_t n = 0;
    for (int32_t t : members)
      if (ignored_[t] || parser_.feed(stack, t) != nullptr) {
        (*bits)[t >> 6] |= 1ull << (t & 63);
        ++n;
      }
    const std::vector<uint64_t>* result = all_accepted_.get();
    if (n != members.size()) {
      std::lock_guard<std::mutex> lock(owned_mu_);
      owned_accepted_.push_back(std::move(bits));
      result = owned_accepted_.back().get();
    }
    return accepted_.insert(stack->uid, result);
  }

 public:

  bool is_viable(Config c) {
    if (!c.lex) return false;
    const std::vector<uint64_t>* acc = accepted(c.stack);
    return acc == all_accepted_.get() || lexer_.any_alive(c.lex, *acc);
  }

  static bool finished(Config c) { return c.stack == nullptr; }  // after end of sequence

  bool accepts_end(Config c) {
    if (c.stack == nullptr) return false;
    if (lexer_.is_start(c.lex)) return parser_.can_end(c.stack);
    const int32_t term = lexer_.chosen(c.lex);
    if (term < 0) return false;
    const Node* stack = ignored_[term] ? c.stack : parser_.feed(c.stack, term);
    return stack != nullptr && parser_.can_end(stack);
  }

  // -- masks ----------------------------------------------------------------------------------

  WordsPtr words(Config c, int nested = 0) {
    if (c.stack == nullptr) return eos_only();
    const std::pair<uint64_t, int32_t> key{c.stack->uid, c.lex};
    WordsPtr found;
    if (masks_.find(key, found)) return found;
    if (nested > kMaxNestedMasks) limit_exceeded("grammar: lexemes that end without input nest too deeply");
    auto w = std::make_shared<Words>(compute(c, nested));
    return masks_.insert(key, std::move(w));
  }

  // The mask of `c` if it is cached, else null.
  WordsPtr cached_words(Config c) {
    if (c.stack == nullptr) return eos_only();
    WordsPtr found;
    masks_.find(std::pair<uint64_t, int32_t>{c.stack->uid, c.lex}, found);
    return found;
  }

  WordsPtr eos_only() {
    std::call_once(eos_once_, [this] { eos_ = std::make_shared<Words>(trie_->eos_words()); });
    return eos_;
  }

  std::shared_ptr<const LexemeInfo> lexeme_info(int32_t lex) {
    std::shared_ptr<const LexemeInfo> found;
    if (lexemes_.find(lex, found)) return found;
    return lexemes_.insert(lex, shared_info(lex));
  }

  std::string forced_bytes(Config c) {
    if (c.stack == nullptr) return std::string();
    const std::pair<uint64_t, int32_t> key{c.stack->uid, c.lex};
    std::string found;
    if (forced_.find(key, found)) return found;
    std::string out;
    Config cur = c;
    while (cur && out.size() < 4096 && !accepts_end(cur)) {
      int options = 0;
      Config only;
      int only_byte = -1;
      for (int b = 0; b < 256 && options < 2; ++b) {
        Config n = step(cur, static_cast<uint8_t>(b));
        if (n && is_viable(n)) {
          ++options;
          only = n;
          only_byte = b;
        }
      }
      if (options != 1) break;
      out.push_back(static_cast<char>(only_byte));
      cur = only;
    }
    return forced_.insert(key, out);
  }

 private:
  static std::vector<std::vector<int32_t>> members(const ParseTables& t, size_t n_terms,
                                                   const std::vector<int32_t>& ignore,
                                                   const std::vector<int32_t>& no_ignore_states, bool after_ignore,
                                                   bool ignore_repeats) {
    for (int32_t i : ignore)
      if (i < 0 || static_cast<size_t>(i) >= n_terms) invalid("malformed IR: ignored terminal out of range");
    std::vector<uint8_t> no_ignore(t.n_states, 0);
    for (int32_t s : no_ignore_states) {
      if (s < 0 || s >= t.n_states) invalid("malformed IR: no-ignore state out of range");
      no_ignore[s] = 1;
    }
    if (static_cast<size_t>(t.n_terminals) != n_terms) invalid("malformed IR: terminal count mismatch");
    std::vector<std::vector<int32_t>> out(t.n_states);
    for (int32_t s = 0; s < t.n_states; ++s) {
      std::vector<uint8_t> in(n_terms, 0);
      for (int64_t k = t.action_offsets[s]; k < t.action_offsets[s + 1]; ++k)
        if (t.action_symbols[k] < t.n_terminals) in[t.action_symbols[k]] = 1;
      if (!no_ignore[s])
        for (int32_t i : ignore) in[i] = 1;
      if (after_ignore && !ignore_repeats)
        for (int32_t i : ignore) in[i] = 0;
      for (size_t i = 0; i < n_terms; ++i)
        if (in[i]) out[s].push_back(static_cast<int32_t>(i));
    }
    return out;
  }

  // The canonical form of the automaton reachable from `lex` (see shared_lexemes.h): per state in
  // breadth-first order, whether a lexeme may end there, then its row as runs (first byte, target
  // in the canonical numbering, 0 dead).  False past `SharedLexemes::kMaxSubStates` states.
  bool canonical(int32_t lex, std::vector<uint32_t>& encoding, std::vector<int32_t>& states) {
    encoding.clear();
    states.assign(1, lex);
    std::unordered_map<int32_t, uint32_t> index{{lex, 1}};
    for (size_t i = 0; i < states.size(); ++i) {
      const LexState& st = lexer_.ready(states[i]);
      encoding.push_back(st.chosen >= 0 ? 0xFFFFFFFEu : 0xFFFFFFFFu);
      for (int b = 0; b < 256;) {
        const int32_t raw = st.row[b];
        int e = b + 1;
        while (e < 256 && st.row[e] == raw) ++e;
        uint32_t local = 0;
        if (raw) {
          const int32_t target = raw + st.base;
          auto [it, fresh] = index.emplace(target, static_cast<uint32_t>(states.size() + 1));
          if (fresh) {
            if (states.size() >= SharedLexemes::kMaxSubStates) return false;
            states.push_back(target);
          }
          local = it->second;
        }
        encoding.push_back(static_cast<uint32_t>(b) << 24 | local);
        b = e;
      }
    }
    return true;
  }

  // `lex`'s data from the per-vocabulary cache when its sub-automaton is small (a terminal's own
  // states, or a lexeme boundary), else computed here.
  std::shared_ptr<const LexemeInfo> shared_info(int32_t lex) {
    const LexState& st = lexer_.ready(lex);
    std::vector<uint32_t> encoding;
    std::vector<int32_t> states;
    if (!shared_ || !(st.is_block || st.is_start) || !canonical(lex, encoding, states)) return compute_info(lex);
    const uint64_t h = SharedLexemes::hash(encoding);
    if (SharedLexemes::EntryPtr entry = shared_->find(h, encoding)) {
      auto info = std::make_shared<LexemeInfo>();
      info->inside = entry->info.inside;
      info->after_end = entry->info.after_end;
      info->seeds.reserve(entry->info.seeds.size());
      for (const auto& [node, local] : entry->info.seeds) info->seeds.emplace_back(node, states[local]);
      return info;
    }
    std::shared_ptr<const LexemeInfo> info = compute_info(lex);
    auto entry = std::make_shared<SharedLexemes::Entry>();
    entry->encoding = std::move(encoding);
    entry->info.inside = info->inside;
    entry->info.after_end = info->after_end;
    std::unordered_map<int32_t, int32_t> local;
    for (size_t i = 0; i < states.size(); ++i) local.emplace(states[i], static_cast<int32_t>(i));
    for (const auto& [node, before] : info->seeds) {
      auto it = local.find(before);
      if (it == local.end()) return info;  // not reachable from lex: cannot happen; do not share
      entry->info.seeds.emplace_back(node, it->second);
    }
    shared_->insert(h, std::move(entry));
    return info;
  }

  // A state's data: derived from its usual successor's where that is known or a loop (the inside
  // of a string, shared by most states that lead to it), else a walk of the whole trie.  A chain of
  // distinct successors (counting characters for maxLength) is walked state by state either way.
  std::shared_ptr<const LexemeInfo> compute_info(int32_t lex) {
    const int32_t reference = walks_.usual_successor(lex);
    if (reference != 0 && reference != lex) {
      std::shared_ptr<const LexemeInfo> known;
      if (lexemes_.find(reference, known) || walks_.usual_successor(reference) == reference) {
        if (!known) known = lexeme_info(reference);
        if (auto info = walks_.derived(lex, reference, *known)) {
          derived_walks_.fetch_add(1, std::memory_order_relaxed);
          return info;
        }
      }
    }
    full_walks_.fetch_add(1, std::memory_order_relaxed);
    return walks_.full(lex);
  }

  // A configuration within one mask's walks: the lexer state numbered in the walk's `LexTable`.
  struct WalkConfig {
    const Node* stack = nullptr;
    int32_t lex = 0;  // local; 0 dead
    explicit operator bool() const { return lex != 0; }
  };

  Words compute(Config c, int nested) {
    const int32_t n_words = trie_->n_words();
    std::shared_ptr<const LexemeInfo> info = lexeme_info(c.lex);
    const std::vector<uint64_t>* acc = accepted(c.stack);
    LexTable table(lexer_);
    Words w;
    if (acc == all_accepted_.get()) {
      w = *info->inside;
    } else {  // keep the inside tokens whose lexeme some accepted terminal can still finish
      w.assign(n_words, 0);
      std::vector<int8_t> viable_end;  // per local state: -1 not decided yet
      std::vector<int32_t> scratch;
      trie_->walk(
          table.local(c.lex), [&](int32_t s, uint8_t b) { return table.step(s, b); },
          [&](const TrieNode& n, int32_t end) {
            // many tokens end in few lexer states: decide each state once
            if (static_cast<size_t>(end) >= viable_end.size()) viable_end.resize(end + 1, -1);
            if (viable_end[end] < 0) viable_end[end] = lexer_.any_alive(table.global(end), *acc) ? 1 : 0;
            if (viable_end[end]) trie_->mark(w.data(), n);
          },
          scratch);
    }
    const int32_t term = lexer_.chosen(c.lex);
    if (term >= 0 && info->after_end) {
      const bool ignored = ignored_[term] != 0;
      const Node* following = ignored ? c.stack : parser_.feed(c.stack, term);
      if (following != nullptr) {
        WordsPtr next = words(Config{following, boundary(following, ignored)}, nested + 1);
        const Words& after = *info->after_end;
        for (int32_t k = 0; k < n_words; ++k) w[k] |= after[k] & (*next)[k];
      }
    }
    if (!info->seeds.empty()) {
      // Each seed ends the lexeme at its byte, which starts the next lexeme on the stack the
      // finished terminal leads to: one feed per distinct (stack, terminal), then a walk of the
      // seed's subtree.
      std::vector<WalkConfig> scratch;
      const std::vector<TrieNode>& nodes = trie_->nodes();
      // Crossings met in the walks, memoised here: (stack uid, terminal) -> next lexeme's start.
      std::unordered_map<uint64_t, WalkConfig> starts;
      const uint64_t width = static_cast<uint64_t>(lexer_.num_terminals()) + 1;
      auto start_after = [&](const Node* stack, int32_t finished) -> WalkConfig {
        auto [it, fresh] = starts.emplace(stack->uid * width + static_cast<uint64_t>(finished), WalkConfig{});
        if (fresh) {
          const bool ignored = ignored_[finished] != 0;
          const Node* following = ignored ? stack : parser_.feed(stack, finished);
          if (following != nullptr)
            it->second = WalkConfig{following, table.local(boundary(following, ignored))};
        }
        return it->second;
      };
      auto full_step = [&](WalkConfig s, uint8_t b) -> WalkConfig {
        const int32_t t = table.step(s.lex, b);
        if (t) return WalkConfig{s.stack, t};
        const int32_t finished = table.chosen(s.lex);
        if (finished < 0) return WalkConfig{};
        const WalkConfig start = start_after(s.stack, finished);
        if (!start) return WalkConfig{};
        const int32_t n = table.step(start.lex, b);
        return n ? WalkConfig{start.stack, n} : WalkConfig{};
      };
      // The stacks a walk meets are few: their accepted terminals are looked up once each.
      std::unordered_map<const Node*, const std::vector<uint64_t>*> accepted_of;
      auto on_token = [&](const TrieNode& n, WalkConfig end) {
        auto [it, fresh] = accepted_of.emplace(end.stack, nullptr);
        if (fresh) it->second = accepted(end.stack);
        if (it->second == all_accepted_.get() || lexer_.any_alive(table.global(end.lex), *it->second))
          trie_->mark(w.data(), n);
      };
      for (const auto& [node_index, before] : info->seeds) {
        const WalkConfig start = start_after(c.stack, lexer_.chosen(before));
        if (!start) continue;
        const TrieNode& node = nodes[node_index];
        const int32_t first = table.step(start.lex, node.byte);
        if (!first) continue;
        const WalkConfig at{start.stack, first};
        if (node.has_token) on_token(node, at);
        trie_->walk_below(node_index, at, full_step, on_token, scratch);
      }
    }
    trie_->add_duplicates(w.data());
    if (accepts_end(c)) or_into(w, trie_->eos_words());
    return w;
  }

 public:
  // Lexer states whose data took a walk of the whole trie / a walk of the paths where they differ
  // from a reference state (the benchmarks and tests read these).
  size_t full_walks() const { return full_walks_.load(std::memory_order_relaxed); }
  size_t derived_walks() const { return derived_walks_.load(std::memory_order_relaxed); }

 private:
  std::atomic<size_t> full_walks_{0}, derived_walks_{0};
  std::shared_ptr<const TokenTrie> trie_;
  std::shared_ptr<SharedLexemes> shared_;
  Table parser_;
  Lexer lexer_;
  LexemeWalks walks_;
  std::vector<uint8_t> ignored_;
  std::vector<int32_t> ignore_;  // the ignored terminals, ascending
  bool ignore_repeats_ = true;
  std::unique_ptr<std::vector<uint64_t>> all_accepted_;
  std::mutex owned_mu_;
  std::deque<std::unique_ptr<std::vector<uint64_t>>> owned_accepted_;
  StripedMap<uint64_t, const std::vector<uint64_t>*> accepted_;
  bool counting_ = false;
  std::vector<std::shared_ptr<const CountedTerm>> counted_;
  StripedMap<std::pair<uint64_t, int32_t>, WordsPtr, PairHash> masks_;
  StripedMap<int32_t, std::shared_ptr<const LexemeInfo>> lexemes_;
  StripedMap<std::pair<uint64_t, int32_t>, std::string, PairHash> forced_;
  std::once_flag eos_once_;
  WordsPtr eos_;
  std::once_flag closer_once_;
  std::shared_ptr<CfgCloser> closer_;
};

// One sequence's position in a grammar: the configuration after each consumed token.
template <typename Table>
class CfgMatcherT : public HistoryMatcher<CfgGrammarT<Table>, typename CfgGrammarT<Table>::Config, CfgMatcherT<Table>> {
  using Base = HistoryMatcher<CfgGrammarT<Table>, typename CfgGrammarT<Table>::Config, CfgMatcherT<Table>>;
  using Config = typename CfgGrammarT<Table>::Config;
  using Base::g_;
  using Base::history_;
  using Base::num_tokens;
  using Base::push;

 public:
  using Base::Base;

  void advance(int64_t token) override {
    Config c = history_.back();
    const TokenTrie& trie = g_->trie();
    if (trie.is_eos(token)) {
      if (c.stack != nullptr && !g_->accepts_end(c))
        violation("end of sequence is not allowed here: the text is incomplete (after " +
                  std::to_string(num_tokens()) + " tokens)");
      push(Config{});
      return;
    }
    if (c.stack == nullptr) violation("token " + std::to_string(token) + " after end of sequence");
    const std::string& text = trie.text(token, num_tokens());
    for (unsigned char b : text) {
      c = g_->step(c, b);
      if (!c) break;
    }
    if (!c || !g_->is_viable(c))
      violation("token " + std::to_string(token) + " leaves the grammar after " + std::to_string(num_tokens()) +
                " tokens");
    push(c);
  }

  Words budget_words(int64_t remaining) const override;  // closing.h
  int64_t closing_lower_bound() const;  // closing.h
};

using CfgGrammar = CfgGrammarT<Parser>;  // LALR(1) grammars
using CfgMatcher = CfgMatcherT<Parser>;
using EarleyGrammar = CfgGrammarT<EarleyTable>;  // grammars parsed by Earley (guided.ir.cfg rule 10)
using EarleyMatcher = CfgMatcherT<EarleyTable>;

}  // namespace guided_native

#include "closing.h"  // CfgGrammar::closer, CfgMatcher::budget_words
