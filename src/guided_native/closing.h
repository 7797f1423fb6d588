// Budget-aware closing of LALR grammars: true lower bounds on the tokens a configuration still
// needs, and the budget mask built on them.
//
// The same computation as the Python engine's `guided.engine.cfg.closing.Closer` (mandatory
// subsequences, closers, required terminals) and `guided.engine.closing.SubsequenceCover`, bit
// for bit: every search keeps the Python limits (`guided.engine.tuning`), and where a limit can
// stop a search its outcome does not depend on the order states are met in, so the two engines
// give up on exactly the same configurations.  `cfg_budget_words` is
// `guided.engine.cfg.matcher.budget_allowed`.  Not here: the verified completions (closing
// distance, closing tokens), which stay on the Python engine.
//
// Thread safety: every memo is a striped map or a mutex-guarded map holding pure functions of
// their keys; nothing is computed under a lock.
#pragma once

#include <algorithm>
#include <array>
#include <map>
#include <optional>
#include <set>
#include <unordered_set>
#include <utility>
#include <vector>

#include "cfg_engine.h"

namespace guided_native {

// `guided.engine.tuning`: the closing limits (tests/test_native_closing.py checks they agree).
struct ClosingLimits {
  static constexpr size_t kMandatoryMaxSymbols = 256;  // MANDATORY_MAX_SYMBOLS
  static constexpr size_t kMandatoryMaxStates = 4096;  // MANDATORY_MAX_STATES
  static constexpr size_t kCloserSearchLimit = 4000;  // CLOSER_SEARCH_LIMIT
  static constexpr size_t kRequiredSearchStacks = 8192;  // REQUIRED_SEARCH_STACKS
  static constexpr size_t kRefineTokens = 48;  // CLOSING_REFINE_TOKENS
  static constexpr size_t kRefineAdvancing = 1024;  // CLOSING_REFINE_ADVANCING
  static constexpr size_t kSearchTokens = 16;  // CLOSING_SEARCH_TOKENS
};

constexpr int64_t kClosingUnreachable = INT64_MAX / 2;  // guided.engine.closing.UNREACHABLE

using ByteSet = std::array<uint64_t, 4>;
using Subsequence = std::vector<ByteSet>;  // byte sets every completion meets in this order

inline void byteset_add(ByteSet& s, int b) { s[b >> 6] |= 1ull << (b & 63); }
inline bool byteset_has(const ByteSet& s, int b) { return (s[b >> 6] >> (b & 63)) & 1u; }

struct SubsequenceHash {
  size_t operator()(const Subsequence& s) const {
    uint64_t h = 1469598103934665603ull ^ s.size();
    for (const ByteSet& b : s)
      for (uint64_t w : b) h = (h ^ w) * 1099511628211ull + (h >> 29);
    return static_cast<size_t>(h);
  }
};

// A byte automaton as `mandatory_bytes` reads it: `target(s, b)` (0 dead) and `accepting(s)`.
template <typename Target, typename Accepting>
class MandatoryBytes {
 public:
  MandatoryBytes(Target target, Accepting accepting) : target_(target), accepting_(accepting) {}

  // `guided.engine.closing.mandatory_bytes`.
  Subsequence run(int32_t state, size_t limit, int branches) {
    Subsequence out;
    while (out.size() < limit && !accepting_(state)) {
      ByteSet live{};
      std::set<int32_t> targets;
      for (int b = 0; b < 256; ++b) {
        const int32_t t = target_(state, static_cast<uint8_t>(b));
        if (t) {
          byteset_add(live, b);
          targets.insert(t);
        }
      }
      if (targets.empty()) return out;
      if (targets.size() == 1) {
        out.push_back(live);
        state = *targets.begin();
        continue;
      }
      int cut_byte;
      int32_t cut_state;
      if (!cut(state, cut_byte, cut_state)) {
        out.push_back(live);
        if (branches > 0 && targets.size() <= 4) {
          // A few branches: what each still needs, united position by position (zip: the shortest).
          std::vector<Subsequence> rest;
          for (int32_t t : targets) rest.push_back(run(t, limit - out.size(), branches - 1));
          size_t common = rest[0].size();
          for (const auto& r : rest) common = std::min(common, r.size());
          for (size_t i = 0; i < common; ++i) {
            ByteSet u{};
            for (const auto& r : rest)
              for (int k = 0; k < 4; ++k) u[k] |= r[i][k];
            out.push_back(u);
          }
        }
        return out;
      }
      ByteSet only{};
      byteset_add(only, cut_byte);
      out.push_back(only);
      state = cut_state;
    }
    return out;
  }

 private:
  // `_reach`: the states reachable from `state` (not over byte `avoid`, -1: none); false past the limit.
  bool reach(int32_t state, int avoid, std::vector<int32_t>& order) {
    order.assign(1, state);
    std::unordered_set<int32_t> seen{state};
    for (size_t i = 0; i < order.size(); ++i) {
      const int32_t s = order[i];
      for (int b = 0; b < 256; ++b) {
        if (b == avoid) continue;
        const int32_t t = target_(s, static_cast<uint8_t>(b));
        if (!t || seen.count(t)) continue;
        if (seen.size() >= ClosingLimits::kMandatoryMaxStates) return false;
        seen.insert(t);
        order.push_back(t);
      }
    }
    return true;
  }

  bool any_accepting(const std::vector<int32_t>& states) {
    for (int32_t s : states)
      if (accepting_(s)) return true;
    return false;
  }

  // `_cut`: a byte every accepting path reads, and the one state it then leads to.
  bool cut(int32_t state, int& byte, int32_t& after) {
    std::vector<int32_t> region, without, beyond;
    if (!reach(state, -1, region)) return false;
    std::set<int> into_accepting;
    for (int32_t s : region)
      for (int b = 0; b < 256; ++b) {
        const int32_t t = target_(s, static_cast<uint8_t>(b));
        if (t && accepting_(t)) into_accepting.insert(b);
      }
    int tried = 0;
    for (int b : into_accepting) {
      if (tried++ == 8) break;
      if (!reach(state, b, without) || any_accepting(without)) continue;
      std::set<int32_t> lasts;
      for (int32_t s : region) {
        const int32_t t = target_(s, static_cast<uint8_t>(b));
        if (t && !lasts.count(t) && reach(t, b, beyond) && any_accepting(beyond)) lasts.insert(t);
      }
      if (lasts.size() == 1) {
        byte = b;
        after = *lasts.begin();
        return true;
      }
    }
    return false;
  }

  Target target_;
  Accepting accepting_;
};

template <typename Target, typename Accepting>
Subsequence mandatory_bytes(Target target, Accepting accepting, int32_t state) {
  return MandatoryBytes<Target, Accepting>(target, accepting).run(state, ClosingLimits::kMandatoryMaxSymbols, 2);
}

// `guided.engine.closing.SubsequenceCover`: fewest tokens of the vocabulary whose concatenation
// contains a subsequence, over the grammar's token trie.
class SubsequenceCover {
 public:
  explicit SubsequenceCover(const TokenTrie& trie) : trie_(trie) {}

  // [cover(seq[i:]) for i in 0..n].
  std::vector<int64_t> covers(const Subsequence& seq) {
    const size_t n = seq.size();
    std::vector<int64_t> out(n + 1, 0);
    std::vector<uint8_t> member;
    std::vector<int64_t> adv;
    for (size_t i = n; i-- > 0;) {
      Subsequence suffix(seq.begin() + static_cast<std::ptrdiff_t>(i), seq.end());
      int64_t a;
      if (!find(suffix, a)) {
        // The most positions one token's bytes match from the suffix's start (every trie node
        // is a prefix of a token, so the best token goes as far as the best node).
        if (member.empty()) member = members(seq);
        advances(member, n, static_cast<int32_t>(i), adv);
        a = 0;
        for (int64_t x : adv) a = std::max(a, x);
        std::lock_guard<std::mutex> lock(mu_);
        if (reach_.size() > 100000) reach_.clear();
        reach_.emplace(std::move(suffix), a);
      }
      out[i] = a == 0 ? kClosingUnreachable : std::min(kClosingUnreachable, 1 + out[std::min(n, i + static_cast<size_t>(a))]);
    }
    return out;
  }

  int64_t cover(const Subsequence& seq) { return covers(seq)[0]; }

  using Advances = std::shared_ptr<const std::vector<uint16_t>>;

  // a(t) for every token id: positions of `seq` its bytes match greedily from the start (at most
  // `kMandatoryMaxSymbols`, so 2 bytes a token); memoised, most recent `kAdvancesMemo` kept (a
  // configuration's subsequence is asked at every step that stays in it).
  Advances token_advances(const Subsequence& seq) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = advances_.find(seq);
      if (it != advances_.end()) {
        it->second.second = ++clock_;
        return it->second.first;
      }
    }
    std::vector<int64_t> adv;
    advances(members(seq), seq.size(), 0, adv);
    auto out = std::make_shared<std::vector<uint16_t>>(adv.begin(), adv.end());
    std::lock_guard<std::mutex> lock(mu_);
    if (advances_.size() >= kAdvancesMemo) {  // evict the least recently used
      auto oldest = advances_.begin();
      for (auto it = advances_.begin(); it != advances_.end(); ++it)
        if (it->second.second < oldest->second.second) oldest = it;
      advances_.erase(oldest);
    }
    return advances_.emplace(seq, std::make_pair(std::move(out), ++clock_)).first->second.first;
  }

  static constexpr size_t kAdvancesMemo = 128;  // ADVANCES_MEMO

 private:
  bool find(const Subsequence& suffix, int64_t& a) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = reach_.find(suffix);
    if (it == reach_.end()) return false;
    a = it->second;
    return true;
  }

  static std::vector<uint8_t> members(const Subsequence& seq) {
    std::vector<uint8_t> m(seq.size() * 32, 0);
    for (size_t i = 0; i < seq.size(); ++i)
      for (int b = 0; b < 256; ++b)
        if (byteset_has(seq[i], b)) m[i * 32 + (b >> 3)] |= static_cast<uint8_t>(1u << (b & 7));
    return m;
  }

  void advances(const std::vector<uint8_t>& member, size_t n, int32_t start, std::vector<int64_t>& out) const {
    out.resize(static_cast<size_t>(trie_.vocab_size()));
    std::vector<int32_t> scratch;
    trie_.subsequence_advances(member.data(), static_cast<int32_t>(n), start, out.data(), scratch);
  }

  const TokenTrie& trie_;
  std::mutex mu_;
  std::unordered_map<Subsequence, int64_t, SubsequenceHash> reach_;  // suffix -> A(0) of it
  std::unordered_map<Subsequence, std::pair<Advances, uint64_t>, SubsequenceHash> advances_;  // -> (a(t), last use)
  uint64_t clock_ = 0;
};

// The lower bounds of one grammar's configurations (`guided.engine.cfg.closing.Closer`, its
// mandatory-subsequence half), memoised.
class CfgCloser {
 public:
  explicit CfgCloser(CfgGrammar& g) : g_(g), cover_(g.trie()) {
    const ParseTables& t = g_.parser().tables();
    rules_at_.resize(static_cast<size_t>(t.n_states));
    for (int32_t q = 0; q < t.n_states; ++q) {
      std::set<int32_t> rules;
      for (int64_t k = t.action_offsets[q]; k < t.action_offsets[q + 1]; ++k)
        if (t.action_values[k] < 0) rules.insert(-t.action_values[k] - 1);
      rules_at_[q].assign(rules.begin(), rules.end());
    }
    for (const auto& [lhs, length] : t.rules) max_rule_length_ = std::max(max_rule_length_, length);
    compute_ends();
  }

  // `Closer.lower_bound`: a true lower bound on the tokens of any completion of `c`.
  int64_t lower_bound(Config c, bool search) {
    if (g_.accepts_end(c)) return 0;
    const Key key{c.stack->uid, c.lex, search};
    int64_t found;
    if (lower_.find(key, found)) return found;
    const Branches& mb = mandatory_branches(c, search);
    int64_t best;
    if (!mb.branches.empty()) {
      best = kClosingUnreachable;
      for (const auto& b : mb.branches) best = std::min(best, cover_.cover(b));
    } else {
      best = cover_.cover(mb.merged);
    }
    return lower_.insert(key, std::max<int64_t>(1, best));
  }

  // `Closer.token_bounds`, unmaterialised: per branch of the pending lexeme (or the merged
  // subsequence alone), the covers of its suffixes and every token's advance into it (a
  // token's bound is the least over them of covers[advance]); and the advances into the merged
  // subsequence (how far a token reaches into the mandatory part).
  struct TokenBounds {
    std::vector<std::pair<std::vector<int64_t>, SubsequenceCover::Advances>> parts;
    SubsequenceCover::Advances advances;
    int64_t bound(int32_t t) const {
      int64_t best = kClosingUnreachable;
      for (const auto& [covers, adv] : parts) best = std::min(best, covers[(*adv)[static_cast<size_t>(t)]]);
      return best;
    }
  };

  TokenBounds token_bounds(Config c) {
    const Branches& mb = mandatory_branches(c, true);
    TokenBounds out;
    if (!mb.branches.empty()) {
      for (const auto& b : mb.branches) out.parts.emplace_back(cover_.covers(b), cover_.token_advances(b));
    } else {
      out.parts.emplace_back(cover_.covers(mb.merged), cover_.token_advances(mb.merged));
    }
    out.advances = cover_.token_advances(mb.merged);
    return out;
  }

 private:
  struct Key {
    uint64_t stack;
    int32_t lex;
    bool search;
    bool operator==(const Key& o) const { return stack == o.stack && lex == o.lex && search == o.search; }
  };
  struct KeyHash {
    size_t operator()(const Key& k) const {
      return std::hash<uint64_t>()(k.stack * 0x9E3779B97F4A7C15ull ^ (static_cast<uint64_t>(k.lex) << 1 | k.search));
    }
  };
  struct Branches {
    Subsequence merged;
    std::vector<Subsequence> branches;
  };
  struct Closers {
    std::vector<int32_t> terms;
    bool final_after = false;
  };

  ParseTables const& tables() { return g_.parser().tables(); }

  static void append(Subsequence& out, const Subsequence& more) { out.insert(out.end(), more.begin(), more.end()); }
  static Subsequence cut_to_limit(Subsequence s) {
    if (s.size() > ClosingLimits::kMandatoryMaxSymbols) s.resize(ClosingLimits::kMandatoryMaxSymbols);
    return s;
  }

  const Branches& mandatory_branches(Config c, bool search) {
    const Key key{c.stack->uid, c.lex, search};
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = mandatory_.find(key);
      if (it != mandatory_.end()) return *it->second;
    }
    auto found = std::make_unique<Branches>();
    Lexer& lexer = g_.lexer();
    Parser& parser = g_.parser();
    Subsequence out;
    const StackNode* following = c.stack;
    if (!lexer.is_start(c.lex)) {
      append(out, mandatory_bytes([&](int32_t s, uint8_t b) { return lexer.next(s, b); },
                                  [&](int32_t s) { return lexer.chosen(s) >= 0; }, c.lex));
      std::optional<std::set<int32_t>> terminals = lexeme_terminals(c.lex);
      if (!terminals || terminals->size() != 1) {
        following = nullptr;
        bool ignored = false;
        if (terminals)
          for (int32_t t : *terminals) ignored = ignored || g_.is_ignored(t);
        if (terminals && !terminals->empty() && terminals->size() <= 8 && !ignored) {
          // A "<" that may open any of several elements: each ending, on its own.
          for (int32_t t : *terminals) {
            const StackNode* after = parser.feed(c.stack, t);
            if (after == nullptr) continue;
            Subsequence branch = out;
            append(branch, continuation(after, search));
            found->branches.push_back(cut_to_limit(std::move(branch)));
          }
        }
      } else {
        const int32_t term = *terminals->begin();
        following = g_.is_ignored(term) ? c.stack : parser.feed(c.stack, term);
      }
    }
    if (!found->branches.empty()) {
      // Every branch's sequence is covered by the union of theirs, position by position.
      size_t common = found->branches[0].size();
      for (const auto& b : found->branches) common = std::min(common, b.size());
      for (size_t i = 0; i < common; ++i) {
        ByteSet u{};
        for (const auto& b : found->branches)
          for (int k = 0; k < 4; ++k) u[k] |= b[i][k];
        found->merged.push_back(u);
      }
    } else {
      if (following != nullptr) append(out, continuation(following, search));
      found->merged = cut_to_limit(std::move(out));
    }
    std::lock_guard<std::mutex> lock(mu_);
    auto [it, fresh] = mandatory_.emplace(key, std::move(found));
    return *it->second;
  }

  // `_lexeme_terminals`: the terminals the pending lexeme may still end as (none: too many states).
  std::optional<std::set<int32_t>> lexeme_terminals(int32_t lex) {
    Lexer& lexer = g_.lexer();
    std::set<int32_t> out;
    std::vector<int32_t> order{lex};
    std::unordered_set<int32_t> seen{lex};
    for (size_t i = 0; i < order.size(); ++i) {
      const int32_t s = order[i];
      if (lexer.chosen(s) >= 0) out.insert(lexer.chosen(s));
      for (int b = 0; b < 256; ++b) {
        const int32_t t = lexer.next(s, static_cast<uint8_t>(b));
        if (!t || seen.count(t)) continue;
        if (seen.size() >= ClosingLimits::kMandatoryMaxStates) return std::nullopt;
        seen.insert(t);
        order.push_back(t);
      }
    }
    return out;
  }

  const Subsequence& terminal_bytes(int32_t term) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = terminal_bytes_.find(term);
      if (it != terminal_bytes_.end()) return it->second;
    }
    const ByteDfa& dfa = *g_.lexer().terminal(term).dfa;
    Subsequence s = mandatory_bytes([&](int32_t st, uint8_t b) { return dfa.next(st, b); },
                                    [&](int32_t st) { return dfa.accepting(st); }, dfa.initial());
    std::lock_guard<std::mutex> lock(mu_);
    return terminal_bytes_.emplace(term, std::move(s)).first->second;
  }

  // `_is_filler`: does the terminal spell whitespace only (a grammar's optional `_WS`)?
  bool is_filler(int32_t term) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = fillers_.find(term);
    if (it != fillers_.end()) return it->second;
    const ByteDfa& dfa = *g_.lexer().terminal(term).dfa;
    bool any = false, only_space = true;
    for (int32_t s = 0; s < dfa.num_states(); ++s)
      for (int b = 0; b < 256; ++b)
        if (dfa.next(s, static_cast<uint8_t>(b))) {
          any = true;
          only_space = only_space && (b == ' ' || b == '\t' || b == '\r' || b == '\n');
        }
    return fillers_[term] = any && only_space;
  }

  Subsequence continuation(const StackNode* following, bool search) {
    Parser& parser = g_.parser();
    Subsequence out;
    std::vector<const StackNode*> frontier{following};
    // Terminals that match the empty string add no symbol: the rounds are bounded too (where the
    // Python engine would go on shifting them for ever; valid IR's terminals are never empty).
    for (size_t rounds = 0; !frontier.empty() && out.size() < ClosingLimits::kMandatoryMaxSymbols &&
                            rounds < ClosingLimits::kMandatoryMaxStates;
         ++rounds) {
      int32_t term;
      std::vector<const StackNode*> next;
      if (!next_mandatory(frontier, term, next)) break;
      frontier = std::move(next);
      append(out, terminal_bytes(term));
    }
    const Subsequence before_branch = out;
    bool any_end = false;
    for (const StackNode* f : frontier) any_end = any_end || parser.can_end(f);
    if (!frontier.empty() && !any_end) {
      // Closers every stack agrees on (each stack's are mandatory on its own paths).
      std::vector<Closers> found;
      for (const StackNode* f : frontier) found.push_back(closers(f));
      bool same = true, final_after = true;
      for (const Closers& c : found) {
        same = same && c.terms == found[0].terms;
        final_after = final_after && c.final_after;
      }
      const std::vector<int32_t> agreed = same ? found[0].terms : std::vector<int32_t>{};
      for (int32_t term : agreed) append(out, terminal_bytes(term));
      if ((final_after || agreed.empty()) && final_terminal_ >= 0) append(out, terminal_bytes(final_terminal_));
    }
    if (search && !frontier.empty() && out.size() < ClosingLimits::kMandatoryMaxSymbols) {
      std::vector<int32_t> chain;
      for (int32_t t : required_terminals(frontier))
        if (t != final_terminal_) chain.push_back(t);
      if (!chain.empty()) {
        Subsequence seq = before_branch;
        for (int32_t term : chain) append(seq, terminal_bytes(term));
        if (final_terminal_ >= 0) append(seq, terminal_bytes(final_terminal_));
        if (cover_.cover(cut_to_limit(seq)) > cover_.cover(cut_to_limit(out))) out = std::move(seq);
      }
    }
    return out;
  }

  // `_next_mandatory`: the one terminal every continuation shifts next (optional whitespace
  // terminals stepped over) and the stacks after it; false where the stacks may end or several
  // terminals may come next.
  bool next_mandatory(const std::vector<const StackNode*>& frontier, int32_t& term_out,
                      std::vector<const StackNode*>& shifted_out) {
    Parser& parser = g_.parser();
    Lexer& lexer = g_.lexer();
    std::vector<const StackNode*> expanded, todo = frontier;
    for (int depth = 0; depth < 3; ++depth) {
      std::vector<const StackNode*> fillers;
      for (const StackNode* stack : todo) {
        if (parser.can_end(stack)) return false;
        expanded.push_back(stack);
        for (int32_t t : lexer.members(stack->state))
          if (!g_.is_ignored(t) && is_filler(t)) {
            const StackNode* after = parser.feed(stack, t);
            if (after != nullptr) fillers.push_back(after);
          }
      }
      if (fillers.empty()) break;
      if (depth == 2 || expanded.size() + fillers.size() > 16) return false;
      todo = std::move(fillers);
    }
    int32_t term = -1;
    for (const StackNode* stack : expanded)
      for (int32_t t : lexer.members(stack->state)) {
        if (g_.is_ignored(t) || is_filler(t) || t == term || parser.feed(stack, t) == nullptr) continue;
        if (term >= 0) return false;
        term = t;
      }
    if (term < 0) return false;
    std::unordered_set<uint64_t> seen;
    shifted_out.clear();
    for (const StackNode* stack : expanded) {
      const StackNode* next = parser.feed(stack, term);
      if (next != nullptr && seen.insert(next->uid).second) shifted_out.push_back(next);
    }
    term_out = term;
    return true;
  }

  // `_required_terminals`: terminals shifted on every path from these stacks to a complete
  // document, in an order their first occurrences keep (none past the search limit).
  std::vector<int32_t> required_terminals(const std::vector<const StackNode*>& frontier) {
    std::vector<uint64_t> key;
    for (const StackNode* f : frontier) key.push_back(f->uid);
    std::sort(key.begin(), key.end());
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = required_.find(key);
      if (it != required_.end()) return it->second;
    }
    std::vector<int32_t> chain = search_required(frontier, key);
    std::lock_guard<std::mutex> lock(mu_);
    return required_.emplace(std::move(key), std::move(chain)).first->second;
  }

  std::vector<int32_t> search_required(const std::vector<const StackNode*>& frontier, const std::vector<uint64_t>& key) {
    Parser& parser = g_.parser();
    Lexer& lexer = g_.lexer();
    std::unordered_map<uint64_t, size_t> index;  // uid -> node number
    std::vector<const StackNode*> nodes;
    for (const StackNode* f : frontier)
      if (index.emplace(f->uid, nodes.size()).second) nodes.push_back(f);
    struct Edge {
      size_t a;
      int32_t t;
      size_t b;
    };
    std::vector<Edge> edges;
    std::vector<const StackNode*> order = frontier;
    for (size_t i = 0; i < order.size(); ++i) {
      const StackNode* stack = order[i];
      for (int32_t t : lexer.members(stack->state)) {
        if (g_.is_ignored(t)) continue;
        const StackNode* next = parser.feed(stack, t);
        if (next == nullptr) continue;
        auto it = index.find(next->uid);
        if (it == index.end()) {
          if (nodes.size() >= ClosingLimits::kRequiredSearchStacks) return {};
          it = index.emplace(next->uid, nodes.size()).first;
          nodes.push_back(next);
          order.push_back(next);
        }
        edges.push_back(Edge{index.at(stack->uid), t, it->second});
      }
    }
    std::vector<uint8_t> in_key(nodes.size(), 0);
    for (uint64_t uid : key) in_key[index.at(uid)] = 1;
    // must[n]: the terminals on every path to n; nullopt: every terminal (none seen yet).
    std::vector<std::optional<std::set<int32_t>>> must(nodes.size());
    for (size_t n = 0; n < nodes.size(); ++n)
      if (in_key[n]) must[n] = std::set<int32_t>{};
    for (bool changed = true; changed;) {  // the sets only shrink: a fixpoint (its greatest)
      changed = false;
      for (const Edge& e : edges) {
        if (!must[e.a] || in_key[e.b]) continue;
        std::set<int32_t> came = *must[e.a];
        came.insert(e.t);
        std::set<int32_t> next;
        if (!must[e.b]) {
          next = std::move(came);
        } else {
          std::set_intersection(must[e.b]->begin(), must[e.b]->end(), came.begin(), came.end(),
                                std::inserter(next, next.end()));
        }
        if (!must[e.b] || next != *must[e.b]) {
          must[e.b] = std::move(next);
          changed = true;
        }
      }
    }
    std::optional<std::set<int32_t>> common;
    for (size_t n = 0; n < nodes.size(); ++n) {
      if (!parser.can_end(nodes[n]) || !must[n]) continue;
      if (!common) {
        common = *must[n];
      } else {
        std::set<int32_t> both;
        std::set_intersection(common->begin(), common->end(), must[n]->begin(), must[n]->end(),
                              std::inserter(both, both.end()));
        common = std::move(both);
      }
    }
    const std::vector<int32_t> required = common ? std::vector<int32_t>(common->begin(), common->end())
                                                  : std::vector<int32_t>{};
    // T precedes U (first occurrences) when no U is shifted on the stacks reached avoiding T.
    std::vector<std::vector<std::pair<int32_t, size_t>>> out_edges(nodes.size());
    for (const Edge& e : edges) out_edges[e.a].emplace_back(e.t, e.b);
    std::map<int32_t, std::set<int32_t>> seen_without;
    for (int32_t term : required) {
      std::vector<uint8_t> reached(in_key);
      std::vector<size_t> todo;
      for (size_t n = 0; n < nodes.size(); ++n)
        if (in_key[n]) todo.push_back(n);
      std::set<int32_t>& labels = seen_without[term];
      for (size_t i = 0; i < todo.size(); ++i)
        for (const auto& [t, b] : out_edges[todo[i]]) {
          if (t == term) continue;
          labels.insert(t);
          if (!reached[b]) {
            reached[b] = 1;
            todo.push_back(b);
          }
        }
    }
    std::vector<std::pair<int64_t, int32_t>> ranked;  // sorted by -(terms it precedes), stable
    for (int32_t t : required) {
      int64_t precedes = 0;
      for (int32_t u : required) precedes += !seen_without[t].count(u);
      ranked.emplace_back(-precedes, t);
    }
    std::stable_sort(ranked.begin(), ranked.end(),
                     [](const auto& x, const auto& y) { return x.first < y.first; });
    std::vector<int32_t> chain;
    for (const auto& [rank, term] : ranked) {
      bool ok = true;
      for (int32_t c : chain) ok = ok && !seen_without[c].count(term);
      if (ok) chain.push_back(term);
    }
    return chain;
  }

  // `_closers`: terminals that close the open rules of `stack`, innermost first, and whether
  // the grammar's final terminal is a later occurrence still (see the Python docstring).
  Closers closers(const StackNode* stack) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = closers_.find(stack->uid);
      if (it != closers_.end()) return it->second;
    }
    Closers found = search_closers(stack);
    std::lock_guard<std::mutex> lock(mu_);
    return closers_.emplace(stack->uid, std::move(found)).first->second;
  }

  // A search state: the relative stack ((LR state, tag) pairs; tag i >= 0: original node i, -1:
  // pushed by later moves only, -2: covering original nodes), the label of the move that pushed
  // its top (an interned terminal set; -1: none/unknown) and whether a fresh move was made
  // since the last pop of an original node.
  struct SearchState {
    std::vector<std::pair<int32_t, int32_t>> rel;
    int32_t label;
    bool fresh_since;
    bool operator==(const SearchState& o) const {
      return label == o.label && fresh_since == o.fresh_since && rel == o.rel;
    }
  };
  struct SearchStateHash {
    size_t operator()(const SearchState& s) const {
      uint64_t h = static_cast<uint64_t>(s.label) * 31 + s.fresh_since;
      for (const auto& [q, tag] : s.rel) h = (h * 0x100000001B3ull) ^ (static_cast<uint64_t>(q) << 20 ^ static_cast<uint32_t>(tag));
      return static_cast<size_t>(h);
    }
  };

  Closers search_closers(const StackNode* stack) {
    const ParseTables& t = tables();
    std::vector<const StackNode*> base;
    const StackNode* node = stack;
    while (node->parent != nullptr) {
      base.push_back(node);
      node = node->parent;
    }
    std::reverse(base.begin(), base.end());  // bottom first; the root stays below
    const int32_t root_state = node->state;
    const size_t n = base.size();
    const size_t limit_height = n + static_cast<size_t>(max_rule_length_) + 1;
    constexpr int32_t kUnknown = -1;
    // Labels: interned terminal sets (the move's terminal, or what a nonterminal can end with).
    std::map<std::vector<int32_t>, int32_t> label_ids;
    std::vector<std::vector<int32_t>> label_sets;
    auto intern = [&](const std::vector<int32_t>& s) {
      auto [it, fresh] = label_ids.emplace(s, static_cast<int32_t>(label_sets.size()));
      if (fresh) label_sets.push_back(s);
      return it->second;
    };
    std::vector<int32_t> label_of_nt(static_cast<size_t>(t.n_nonterminals), kUnknown);
    for (int32_t nt = 0; nt < t.n_nonterminals; ++nt)
      if (ends_known_[nt]) label_of_nt[nt] = intern(ends_[nt]);
    std::vector<std::set<int32_t>> labels(n);
    std::vector<uint8_t> topmost_only(n, 1);
    bool final_ok = true;
    SearchState start{{}, kUnknown, false};
    for (size_t i = 0; i < n; ++i) start.rel.emplace_back(base[i]->state, static_cast<int32_t>(i));
    std::unordered_set<SearchState, SearchStateHash> seen{start};
    std::vector<SearchState> todo{start};
    auto push = [&](SearchState s) {
      if (seen.insert(s).second) todo.push_back(std::move(s));
    };
    while (!todo.empty()) {
      if (seen.size() > ClosingLimits::kCloserSearchLimit) return Closers{};
      SearchState cur = std::move(todo.back());
      todo.pop_back();
      const auto& rel = cur.rel;
      const int32_t q = rel.empty() ? root_state : rel.back().first;
      if (q == t.end_state) {
        for (const auto& [_, tag] : rel)
          if (tag >= 0) labels[tag].insert(kUnknown);  // a path on which this node is never popped
        final_ok = final_ok && cur.fresh_since;
      }
      for (int32_t r : rules_at_[q]) {
        const auto [lhs, length] = t.rules[static_cast<size_t>(r)];
        if (static_cast<size_t>(length) > rel.size()) continue;  // would pop the root
        const size_t keep = rel.size() - static_cast<size_t>(length);
        std::vector<int32_t> originals;
        bool all_later = true;
        for (size_t k = keep; k < rel.size(); ++k) {
          if (rel[k].second >= 0) originals.push_back(rel[k].second);
          all_later = all_later && rel[k].second == -1;
        }
        const bool top_fresh = length > 0 && rel.back().second == -1;
        for (size_t j = 0; j < originals.size(); ++j) {
          labels[originals[j]].insert(top_fresh && cur.label != kUnknown ? cur.label : kUnknown);
          if (j + 1 != originals.size()) topmost_only[originals[j]] = 0;
        }
        int32_t go;
        if (!t.go(keep ? rel[keep - 1].first : root_state, lhs, go)) continue;
        // A node made only of later moves is fresh, its last terminal the popped top's.
        const bool fresh = length > 0 && all_later;
        SearchState next{std::vector<std::pair<int32_t, int32_t>>(rel.begin(), rel.begin() + static_cast<std::ptrdiff_t>(keep)),
                         fresh ? cur.label : kUnknown, cur.fresh_since && originals.empty()};
        next.rel.emplace_back(go, fresh ? -1 : -2);
        push(std::move(next));
      }
      if (rel.size() >= limit_height) continue;
      for (int64_t k = t.action_offsets[q]; k < t.action_offsets[q + 1]; ++k)
        if (t.action_values[k] >= 0 && t.action_symbols[k] != t.n_terminals) {
          SearchState next{rel, intern({t.action_symbols[k]}), true};
          next.rel.emplace_back(t.action_values[k], -1);
          push(std::move(next));
        }
      for (int64_t k = t.goto_offsets[q]; k < t.goto_offsets[q + 1]; ++k) {
        SearchState next{rel, label_of_nt[t.goto_symbols[k]], true};
        next.rel.emplace_back(t.goto_values[k], -1);
        push(std::move(next));
      }
    }
    Closers out;
    for (size_t i = n; i-- > 0;) {
      if (labels[i].size() != 1 || !topmost_only[i]) continue;
      const int32_t only = *labels[i].begin();
      if (only == kUnknown || label_sets[only].size() != 1) continue;
      out.terms.push_back(label_sets[only][0]);
    }
    out.final_after = final_ok;
    return out;
  }

  // `_entered_by`, `_ends_of_nonterminals`, `final_terminal`: the symbol each state is entered
  // by, the terminals each nonterminal's derivations can end with, the grammar's last terminal.
  void compute_ends() {
    const ParseTables& t = tables();
    const int32_t end = t.n_terminals;
    constexpr int32_t kNone = INT32_MIN;
    std::vector<int32_t> entered(static_cast<size_t>(t.n_states), kNone);  // terminal t, or -1-nt
    for (int32_t q = 0; q < t.n_states; ++q) {
      for (int64_t k = t.action_offsets[q]; k < t.action_offsets[q + 1]; ++k)
        if (t.action_values[k] >= 0 && t.action_symbols[k] != end) entered[t.action_values[k]] = t.action_symbols[k];
      for (int64_t k = t.goto_offsets[q]; k < t.goto_offsets[q + 1]; ++k) entered[t.goto_values[k]] = -1 - t.goto_symbols[k];
    }
    std::vector<int32_t> last_of_rule(t.rules.size(), kNone);
    for (int32_t q = 0; q < t.n_states; ++q)
      for (int64_t k = t.action_offsets[q]; k < t.action_offsets[q + 1]; ++k) {
        const int32_t a = t.action_values[k];
        if (a < 0 && t.rules[static_cast<size_t>(-a - 1)].second > 0 && entered[q] != kNone)
          last_of_rule[static_cast<size_t>(-a - 1)] = entered[q];
      }
    // ends[nt] over terminals; unknown[nt]: possibly none, or not known (-2 in the Python sets).
    std::vector<std::set<int32_t>> ends(static_cast<size_t>(t.n_nonterminals));
    std::vector<uint8_t> unknown(static_cast<size_t>(t.n_nonterminals), 0);
    for (bool changed = true; changed;) {
      changed = false;
      for (size_t r = 0; r < t.rules.size(); ++r) {
        const auto [lhs, length] = t.rules[r];
        const int32_t last = last_of_rule[r];
        if (length == 0 || last == kNone) {
          if (!unknown[lhs]) unknown[lhs] = 1, changed = true;
        } else if (last >= 0) {
          if (ends[lhs].insert(last).second) changed = true;
        } else {
          const int32_t nt = -1 - last;
          if (unknown[nt] && !unknown[lhs]) unknown[lhs] = 1, changed = true;
          for (int32_t x : std::vector<int32_t>(ends[nt].begin(), ends[nt].end()))
            if (ends[lhs].insert(x).second) changed = true;
        }
      }
    }
    ends_.resize(ends.size());
    ends_known_.assign(ends.size(), 0);
    for (size_t nt = 0; nt < ends.size(); ++nt) {
      ends_[nt].assign(ends[nt].begin(), ends[nt].end());
      ends_known_[nt] = !ends[nt].empty() && !unknown[nt];
    }
    std::set<int32_t> finals;
    bool finals_unknown = false;
    for (int32_t q = 0; q < t.n_states; ++q) {
      int32_t a;
      if (!t.action(q, end, a) && q != t.end_state) continue;
      if (entered[q] == kNone) {  // the empty document
        final_terminal_ = -1;
        return;
      }
      if (entered[q] >= 0) {
        finals.insert(entered[q]);
      } else {
        const int32_t nt = -1 - entered[q];
        finals.insert(ends[nt].begin(), ends[nt].end());
        finals_unknown = finals_unknown || unknown[nt];
      }
    }
    final_terminal_ = finals.size() == 1 && !finals_unknown ? *finals.begin() : -1;
  }

  CfgGrammar& g_;
  SubsequenceCover cover_;
  std::vector<std::vector<int32_t>> rules_at_;
  int32_t max_rule_length_ = 0;
  std::vector<std::vector<int32_t>> ends_;
  std::vector<uint8_t> ends_known_;
  int32_t final_terminal_ = -1;
  std::mutex mu_;
  std::unordered_map<Key, std::unique_ptr<Branches>, KeyHash> mandatory_;
  std::map<int32_t, Subsequence> terminal_bytes_;
  std::map<int32_t, bool> fillers_;
  std::map<std::vector<uint64_t>, std::vector<int32_t>> required_;
  std::unordered_map<uint64_t, Closers> closers_;
  StripedMap<Key, int64_t, KeyHash> lower_;
};

// `guided.engine.cfg.matcher.budget_allowed`: the tokens of `c`'s mask after which no lower
// bound rules out completing the document within `remaining - 1` tokens, and EOS where it may end.
inline Words cfg_budget_words(CfgGrammar& g, CfgCloser& closer, Config c, int64_t remaining) {
  const TokenTrie& trie = g.trie();
  Words out(static_cast<size_t>(trie.n_words()), 0);
  const bool complete = CfgGrammar::finished(c) || g.accepts_end(c);
  if (!CfgGrammar::finished(c) && remaining >= 1) {
    const WordsPtr plain = g.words(c);
    const auto bounds = closer.token_bounds(c);
    const Words& eos = trie.eos_words();
    std::vector<int32_t> ids;
    for (size_t k = 0; k < plain->size(); ++k) {
      for (uint32_t w = (*plain)[k] & ~eos[k]; w != 0; w &= w - 1) {
        const int32_t t = static_cast<int32_t>(k * 32 + static_cast<size_t>(__builtin_ctz(w)));
        if (bounds.bound(t) <= remaining - 1) {
          set_bit(out.data(), t);
          ids.push_back(t);
        }
      }
    }
    const std::vector<uint16_t>& advances = *bounds.advances;
    if (ids.size() > ClosingLimits::kRefineTokens) {
      // Too many to step them all: those that reach into the mandatory part are stepped.
      std::vector<int32_t> advancing;
      for (int32_t t : ids)
        if (advances[static_cast<size_t>(t)] > 0 && advancing.size() < ClosingLimits::kRefineAdvancing)
          advancing.push_back(t);
      ids = std::move(advancing);
    }
    const bool search = ids.size() <= ClosingLimits::kSearchTokens;  // the costlier bound only for a few
    for (int32_t t : ids) {
      Config after = c;
      for (unsigned char b : trie.bytes(t)) {
        after = g.step(after, b);
        if (!after) break;
      }
      if (!after || !g.is_viable(after) || closer.lower_bound(after, search) > remaining - 1)
        out[static_cast<size_t>(t) >> 5] &= ~(1u << (t & 31));
    }
  }
  if (complete) or_into(out, trie.eos_words());
  return out;
}

}  // namespace guided_native

namespace guided_native {

template <>
inline CfgCloser& CfgGrammarT<Parser>::closer() {
  std::call_once(closer_once_, [this] { closer_ = std::make_shared<CfgCloser>(*this); });
  return *closer_;
}

template <>
inline Words CfgMatcherT<Parser>::budget_words(int64_t remaining) const {
  if (g_->counting()) throw std::logic_error("budget masks of counted terminals are not native yet");
  return cfg_budget_words(*g_, g_->closer(), history_.back(), remaining);
}

// `Closer.lower_bound` with the search (0 after end of sequence).
template <>
inline int64_t CfgMatcherT<Parser>::closing_lower_bound() const {
  if (g_->counting()) throw std::logic_error("closing bounds of counted terminals are not native yet");
  const Config c = history_.back();
  return CfgGrammar::finished(c) ? 0 : g_->closer().lower_bound(c, true);
}

// Earley grammars (`guided.engine.cfg.closing.EarleyCloser`): still the Python engine's.
template <>
inline CfgCloser& CfgGrammarT<EarleyTable>::closer() {
  throw std::logic_error("closing of grammars parsed by Earley is not native yet");
}

template <>
inline Words CfgMatcherT<EarleyTable>::budget_words(int64_t) const {
  throw std::logic_error("budget masks of grammars parsed by Earley are not native yet");
}

template <>
inline int64_t CfgMatcherT<EarleyTable>::closing_lower_bound() const {
  throw std::logic_error("closing bounds of grammars parsed by Earley are not native yet");
}

}  // namespace guided_native
