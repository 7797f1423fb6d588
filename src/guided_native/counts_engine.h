// Item counts over the CFG core: the native twin of `guided.engine.counts`, mask for mask.
//
// JSON Schema's minItems/maxItems past what the front-end unrolls are counted at run time (rule
// 12 of `guided.ir.cfg`, `guided.ir.ItemCounts`): beside each CFG configuration a counts
// configuration keeps the open arrays (frames: the stack entry that opened each, its count so
// far and its bounds) as a persistent list, so copy and rollback stay O(1).
//
// A mask starts from the CFG mask (cached, shared with every configuration on the same stack and
// lexer state) and walks again, byte by byte with the counts, only the tokens that may reach a
// check (they hold the first byte of a terminal that shifts into a separator or close state, or
// of one that opens a frame where none is open yet); while the pending lexeme may itself be a
// checked terminal that can still grow, every token.  Masks are memoised under the counts made
// coarse: a count further from both bounds than a token's bytes can move it behaves like any other
// such count, so a long array costs a handful of masks.  An IR without item counts never comes
// here: its `CfgGrammar` runs as before.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cfg_engine.h"
#include "first_bytes.h"

namespace guided_native {

// An open frame; `parent` is the enclosing one (null: none).
struct Frame {
  const StackNode* entry;  // the stack entry holding it: it closes when that entry is popped
  int64_t count, min, max;  // max -1: no maximum
  std::shared_ptr<const Frame> parent;
};
using FramePtr = std::shared_ptr<const Frame>;

struct CountsConfig {
  Config cfg;  // stack nullptr: finished (after EOS)
  FramePtr frames;  // the innermost open frame (null: none open)
};

// One row of `ItemCounts.bounds`: the state after an array's "[" and its bounds (max -1: none).
struct ItemBounds {
  int32_t state;
  int64_t min, max;
};

class CountsGrammar {
 public:
  static constexpr size_t kMaskCacheSize = 4096;
  static constexpr int64_t kMaxBound = int64_t{1} << 60;  // far from overflow when counts are compared

  CountsGrammar(std::shared_ptr<CfgGrammar> cfg, const std::vector<ItemBounds>& bounds,
                const std::vector<int32_t>& item_rules, const std::vector<int32_t>& separator_states,
                const std::vector<int32_t>& close_states)
      : cfg_(std::move(cfg)), masks_(kMaskCacheSize / decltype(masks_)::kStripes) {
    const ParseTables& t = cfg_->parser().tables();
    kind_.assign(static_cast<size_t>(t.n_states), kPlain);
    min_.assign(static_cast<size_t>(t.n_states), 0);
    max_.assign(static_cast<size_t>(t.n_states), -1);
    auto mark = [&](int32_t s, uint8_t kind, const char* what) {
      if (s < 0 || s >= t.n_states)
        invalid(std::string("malformed IR: item counts' ") + what + " state " + std::to_string(s) + " out of range");
      if (kind_[s] != kPlain)
        invalid("malformed IR: item counts name state " + std::to_string(s) + " twice (the sets must be disjoint)");
      kind_[s] = kind;
    };
    for (const ItemBounds& b : bounds) {
      mark(b.state, kOpen, "open");
      if (b.min < 0 || b.min > kMaxBound || b.max < -1 || b.max > kMaxBound || (b.max >= 0 && b.max < b.min))
        invalid("malformed IR: item counts of state " + std::to_string(b.state) + " have bounds (" +
                std::to_string(b.min) + ", " + std::to_string(b.max) + ")");
      min_[b.state] = b.min;
      max_[b.state] = b.max;
    }
    for (int32_t s : separator_states) mark(s, kSeparator, "separator");
    for (int32_t s : close_states) mark(s, kClose, "close");
    item_rule_.assign(t.rules.size(), 0);
    for (int32_t r : item_rules) {
      if (r < 0 || static_cast<size_t>(r) >= t.rules.size())
        invalid("malformed IR: item rule " + std::to_string(r) + " out of range");
      item_rule_[r] = 1;
    }
    // The terminals a shift of which is checked, and those that open a frame.
    const size_t n_terms = static_cast<size_t>(t.n_terminals);
    checked_.assign((n_terms + 63) / 64, 0);
    opens_.assign((n_terms + 63) / 64, 0);
    for (size_t k = 0; k < t.action_symbols.size(); ++k) {
      const int32_t sym = t.action_symbols[k], a = t.action_values[k];
      if (sym >= t.n_terminals || a < 0) continue;  // validated by the parser: a < n_states
      if (kind_[a] == kSeparator || kind_[a] == kClose) {
        checked_[sym >> 6] |= uint64_t{1} << (sym & 63);
        any_checked_ = true;
      } else if (kind_[a] == kOpen) {
        opens_[sym >> 6] |= uint64_t{1} << (sym & 63);
        any_open_ = true;
      }
    }
    holds_checked_ = tokens_holding_first_bytes(*cfg_, checked_);
    holds_open_ = tokens_holding_first_bytes(*cfg_, opens_);
    holds_both_ = holds_checked_;
    for (size_t k = 0; k < holds_both_.size(); ++k) holds_both_[k] &= holds_open_[k];
    const TokenTrie& trie = cfg_->trie();
    size_t longest = 0;
    for (const TrieNode& n : trie.nodes())
      if (n.has_token) longest = std::max(longest, trie.bytes(n.token).size());
    reach_ = static_cast<int64_t>(longest) + 1;  // each item takes at least one byte
  }

  CfgGrammar& cfg() { return *cfg_; }
  const TokenTrie& trie() const { return cfg_->trie(); }

  CountsConfig initial() { return CountsConfig{cfg_->initial(), nullptr}; }
  static bool finished(const CountsConfig& c) { return c.cfg.stack == nullptr; }  // after end of sequence
  static CountsConfig after_end(const CountsConfig&) { return CountsConfig{}; }

  // -- rule 12 ----------------------------------------------------------------------------------

  // `CfgGrammar`'s feed with rule 12: (stack, frames) after `terminal`; false on a syntax error.
  bool feed(const StackNode*& stack, FramePtr& frames, int32_t terminal) {
    Parser& p = cfg_->parser();
    const StackNode* result = p.feed(stack, terminal);
    if (result == nullptr) return false;
    if (frames) {
      // The reductions before the shift (as many as the parser's feed took, so they end): each
      // closes the frames its popped entries held (inner frames sit on higher entries), and an
      // item rule counts one in the innermost.
      const ParseTables& t = p.tables();
      const StackNode* node = stack;
      int32_t action;
      while (frames && t.action(node->state, terminal, action) && action < 0) {
        const int32_t rule = -action - 1;
        const StackNode* popped = node;
        for (int32_t k = 0; k < t.rules[rule].second; ++k, popped = popped->parent)
          while (frames && frames->entry == popped) frames = frames->parent;
        if (frames && item_rule_[rule])
          frames = std::make_shared<const Frame>(
              Frame{frames->entry, frames->count + 1, frames->min, frames->max, frames->parent});
        node = p.reduce(node, action);
      }
      if (frames) {
        const uint8_t kind = kind_[result->state];
        if (kind == kSeparator && frames->max >= 0 && frames->count >= frames->max) return false;
        if (kind == kClose && frames->count < frames->min) return false;
      }
    }
    if (kind_[result->state] == kOpen)
      frames = std::make_shared<const Frame>(
          Frame{result, 0, min_[result->state], max_[result->state], std::move(frames)});
    stack = result;
    return true;
  }

  // `c` after one more byte; false where the text leaves the language.
  bool step(CountsConfig& c, uint8_t b) {
    Lexer& lexer = cfg_->lexer();
    if (lexer.next(c.cfg.lex, b)) {  // extends the lexeme: nothing is fed
      c.cfg = cfg_->step(c.cfg, b);
      return static_cast<bool>(c.cfg);
    }
    const int32_t term = lexer.chosen(c.cfg.lex);
    if (term < 0) return false;
    const bool ignored = cfg_->is_ignored(term);
    const StackNode* stack = c.cfg.stack;
    if (!ignored && !feed(stack, c.frames, term)) return false;
    const int32_t start = lexer.start(stack->state, ignored);
    const int32_t next = lexer.next(start, b);
    if (!next) return false;
    c.cfg = cfg_->counting() ? cfg_->recount(start, 0, Config{stack, next}, b) : Config{stack, next};
    return static_cast<bool>(c.cfg);
  }

  // The pending lexeme ends: `c`'s stack and frames after it; false where it cannot.
  bool end_lexeme(const CountsConfig& c, const StackNode*& stack, FramePtr& frames) {
    Lexer& lexer = cfg_->lexer();
    stack = c.cfg.stack;
    frames = c.frames;
    if (lexer.is_start(c.cfg.lex)) return true;
    const int32_t term = lexer.chosen(c.cfg.lex);
    if (term < 0) return false;
    return cfg_->is_ignored(term) || feed(stack, frames, term);
  }

  bool is_viable(const CountsConfig& c) {
    if (!cfg_->is_viable(c.cfg)) return false;
    if (!c.frames || !may_be_checked(c.cfg.lex)) return true;
    // Rule 7 with rule 12's checks: some terminal the lexeme is alive in is accepted.
    const LexState& st = cfg_->lexer().ready(c.cfg.lex);
    for (int32_t k = 0; k < st.n_terms; ++k) {
      const int32_t t = st.terms[k];
      if (cfg_->is_ignored(t)) return true;
      const StackNode* stack = c.cfg.stack;
      FramePtr frames = c.frames;
      if (feed(stack, frames, t)) return true;
    }
    return false;
  }

  bool accepts_end(const CountsConfig& c) {
    if (c.cfg.stack == nullptr || !c.cfg) return false;
    const StackNode* stack;
    FramePtr frames;
    return end_lexeme(c, stack, frames) && cfg_->parser().can_end(stack);  // END only reduces: nothing to check
  }

  // `c` after `data` if it stays viable.
  bool walk(CountsConfig& c, const std::string& data) {
    for (unsigned char b : data)
      if (!step(c, b)) return false;
    return is_viable(c);
  }

  // -- masks ------------------------------------------------------------------------------------

  WordsPtr words(const CountsConfig& c) {
    if (c.cfg.stack == nullptr) return cfg_->eos_only();
    const std::string k = key(c);
    WordsPtr found;
    if (masks_.find(k, found)) return found;
    return masks_.insert(k, std::make_shared<Words>(compute(c)));
  }

  WordsPtr cached_words(const CountsConfig& c) {
    if (c.cfg.stack == nullptr) return cfg_->eos_only();
    WordsPtr found;
    masks_.find(key(c), found);
    return found;
  }

  // The CFG's forced bytes: its language is a superset, so bytes forced there are forced here.
  std::string forced_bytes(const CountsConfig& c) { return c.cfg.stack == nullptr ? std::string() : cfg_->forced_bytes(c.cfg); }

 private:
  enum : uint8_t { kPlain, kOpen, kSeparator, kClose };

  // May the pending lexeme of `lex` still end as a checked terminal?
  bool may_be_checked(int32_t lex) {
    Lexer& lexer = cfg_->lexer();
    return any_checked_ && !lexer.is_start(lex) && lexer.any_alive(lex, checked_);
  }

  // Packed: the tokens whose bytes may reach a rule 12 check from `c` (a superset); null: all.
  const Words* risky(const CountsConfig& c) {
    Lexer& lexer = cfg_->lexer();
    const int32_t lex = c.cfg.lex;
    if (c.frames) {
      if (!may_be_checked(lex)) return &holds_checked_;
      const LexState& st = lexer.ready(lex);
      bool grows = false;
      for (int b = 0; b < 256 && !grows; ++b) grows = st.row[b] != 0;
      const StackNode* stack;
      FramePtr frames;
      // A "," or "]" that cannot grow: every token ends it with its first byte, and it passes
      // its check; the rest of a token is checked only past a checked byte.
      if (!grows && end_lexeme(c, stack, frames)) return &holds_checked_;
      return nullptr;
    }
    if (any_open_ && !lexer.is_start(lex) && lexer.any_alive(lex, opens_))
      return &holds_checked_;  // the pending lexeme may open a frame
    return &holds_both_;
  }

  // The mask key: the stack, the lexer state, and each frame with its count made coarse where no
  // token can tell it from its neighbours (further than `reach_` from both bounds).
  std::string key(const CountsConfig& c) const {
    std::string k;
    auto put = [&](const void* v, size_t n) { k.append(static_cast<const char*>(v), n); };
    put(&c.cfg.stack->uid, sizeof(uint64_t));
    put(&c.cfg.lex, sizeof(int32_t));
    for (const Frame* f = c.frames.get(); f != nullptr; f = f->parent.get()) {
      int64_t n = f->count;
      const bool near_max = f->max >= 0 && n + reach_ >= f->max;
      if (n >= f->min && !near_max) {
        n = -1;  // every check of the next token passes
      } else if (n + reach_ < f->min && !near_max) {
        n = -2;  // every close check fails, every separator check passes
      }
      put(&f->entry->uid, sizeof(uint64_t));  // (given the stack, as telling as the Python engine's height)
      put(&n, sizeof(int64_t));
      put(&f->min, sizeof(int64_t));
      put(&f->max, sizeof(int64_t));
    }
    return k;
  }

  // The Python engine's `CountsGrammar._compute`: the CFG mask, less the risky tokens the counts refuse.
  Words compute(const CountsConfig& c) {
    const WordsPtr cfg_words = cfg_->words(c.cfg);
    const Words& allowed = *cfg_words;
    const Words* risk = risky(c);
    const TokenTrie& trie = cfg_->trie();
    const size_t n_words = allowed.size();
    Words w = allowed;
    std::vector<int32_t> check;
    for (size_t k = 0; k < n_words; ++k) {
      const uint32_t x = allowed[k] & (risk ? (*risk)[k] : ~0u);
      w[k] &= ~x;
      for (uint32_t y = x; y; y &= y - 1) check.push_back(static_cast<int32_t>(k * 32 + __builtin_ctz(y)));
    }
    for (int32_t id : check) {
      if (trie.is_eos(id)) continue;  // decided below
      const std::string& data = trie.bytes(id);
      if (data.empty()) continue;
      CountsConfig probe = c;
      if (walk(probe, data)) set_bit(w.data(), id);
    }
    const Words& eos = trie.eos_words();
    if (accepts_end(c)) {
      or_into(w, eos);
    } else {
      for (size_t k = 0; k < n_words; ++k) w[k] &= ~eos[k];
    }
    return w;
  }

  std::shared_ptr<CfgGrammar> cfg_;
  std::vector<uint8_t> kind_;  // per LR state
  std::vector<int64_t> min_, max_;  // per open state
  std::vector<uint8_t> item_rule_;  // per rule
  std::vector<uint64_t> checked_, opens_;  // bits per terminal
  bool any_checked_ = false, any_open_ = false;
  Words holds_checked_, holds_open_, holds_both_;
  int64_t reach_ = 1;
  StripedMap<std::string, WordsPtr> masks_;
};

// One sequence's position in a grammar with item counts: the counts configuration after each token.
class CountsMatcher : public HistoryMatcher<CountsGrammar, CountsConfig, CountsMatcher> {
 public:
  using HistoryMatcher::HistoryMatcher;

  void advance(int64_t token) override { advance_walking(token, "the text is incomplete", "leaves the grammar"); }

  Words budget_words(int64_t) const override { throw std::logic_error("budget masks of grammars are not native yet"); }
};

}  // namespace guided_native
