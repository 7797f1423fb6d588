// Unique items over the CFG core: the native twin of `guided.engine.unique`, mask for mask.
//
// JSON Schema's uniqueItems over an infinite item domain is not context-free (rule 9 of
// `guided.ir.cfg`, `guided.ir.UniqueItems`).  Beside each CFG configuration a unique-items
// configuration keeps, as persistent lists (so copy and rollback stay O(1)): the text of each
// parser stack entry inside an open array, the open arrays (frames) with the canonical values of
// their items so far (unique_values.h: `1` equals `1.0`, members in any order, escapes decoded),
// and the bytes of the pending lexeme while a frame is open.  A reduction by an item rule checks
// the item against the innermost frame; after each shift the reductions the parser state forces
// are checked ahead; and while a frame is open a pending lexeme with few ways left to end is
// viable only if one of them ends well (no dead end: a separator that could only lead to a
// duplicate of a finite domain is masked).
//
// A mask starts from the CFG mask (cached, shared) and walks again, byte by byte with the
// checks, only the tokens that may reach one (those that end the pending lexeme, and those that
// leave it with few ways to end; with no frame open, only those that may open one): the Python
// engine's `risky`.  Forced bytes are the CFG's (as the Python engine's: they ignore uniqueness).
#pragma once

#include <algorithm>
#include <atomic>
#include <climits>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "cfg_engine.h"
#include "first_bytes.h"
#include "unique_values.h"

namespace guided_native {

// A stack entry's text (its lexemes' bytes, ignored ones excepted), top entry first.  Only entries
// above the outermost open frame's are listed; those below, and all while no frame is open, are
// empty (the Python engine's b"").
struct TextNode {
  int32_t height;  // the entry's height in the parser stack (the root's is 0)
  std::string text;
  std::shared_ptr<const TextNode> parent;
  uint64_t uid;  // never reused: masks are memoised under it
};
using TextPtr = std::shared_ptr<const TextNode>;

// The canonical values of an open frame's items, newest first.
struct ValueNode {
  std::string value;
  size_t hash;
  std::shared_ptr<const ValueNode> parent;
};
using ValuePtr = std::shared_ptr<const ValueNode>;

// An open frame (innermost first): the height of the entry that opened it, its items' values.
struct UniqueFrame {
  int32_t height;
  ValuePtr values;
  std::shared_ptr<const UniqueFrame> parent;
  uint64_t uid;
};
using UniqueFramePtr = std::shared_ptr<const UniqueFrame>;

struct UniqueConfig {
  Config cfg;  // stack nullptr: finished (after EOS)
  TextPtr texts;  // null: every entry's text is empty
  UniqueFramePtr frames;  // null: none open
  std::string lexeme;  // the pending lexeme's bytes while a frame is open, else empty
};

class UniqueGrammar {
 public:
  static constexpr size_t kMaskCacheSize = 4096;
  static constexpr int kMaxForced = 10000;  // forced reductions simulated after a shift (the Python engine's)

  UniqueGrammar(std::shared_ptr<CfgGrammar> cfg, const std::vector<int32_t>& open_states,
                const std::vector<int32_t>& item_rules, int64_t completions_limit)
      : cfg_(std::move(cfg)), limit_(completions_limit), masks_(kMaskCacheSize / decltype(masks_)::kStripes) {
    const ParseTables& t = cfg_->parser().tables();
    if (completions_limit < 0 || completions_limit > (int64_t{1} << 20))
      invalid("malformed IR: unique items' completions limit " + std::to_string(completions_limit) + " out of range");
    opens_state_.assign(static_cast<size_t>(t.n_states), 0);
    for (int32_t s : open_states) {
      if (s < 0 || s >= t.n_states)
        invalid("malformed IR: unique items' open state " + std::to_string(s) + " out of range (0 .. " +
                std::to_string(t.n_states - 1) + ")");
      opens_state_[s] = 1;
    }
    item_rule_.assign(t.rules.size(), 0);
    for (int32_t r : item_rules) {
      if (r < 0 || static_cast<size_t>(r) >= t.rules.size())
        invalid("malformed IR: unique items' item rule " + std::to_string(r) + " out of range (0 .. " +
                std::to_string(static_cast<int64_t>(t.rules.size()) - 1) + ")");
      item_rule_[r] = 1;
    }
    // The reduction each state forces (every action, END's too, the same reduction), else 0; and
    // the terminals a shift of which opens a frame.
    forced_.assign(static_cast<size_t>(t.n_states), 0);
    opens_.assign((static_cast<size_t>(t.n_terminals) + 63) / 64, 0);
    for (int32_t s = 0; s < t.n_states; ++s) {
      const int64_t begin = t.action_offsets[s], end = t.action_offsets[s + 1];
      bool same = end > begin;
      for (int64_t k = begin; k < end; ++k) {
        const int32_t sym = t.action_symbols[k], a = t.action_values[k];
        same = same && a == t.action_values[begin];
        if (sym < t.n_terminals && a >= 0 && opens_state_[a]) {  // (validated by the parser: a < n_states)
          opens_[sym >> 6] |= uint64_t{1} << (sym & 63);
          any_open_ = true;
        }
      }
      if (same && t.action_values[begin] < 0) forced_[s] = t.action_values[begin];
    }
    holds_open_ = tokens_holding_first_bytes(*cfg_, opens_);
  }

  CfgGrammar& cfg() { return *cfg_; }
  const TokenTrie& trie() const { return cfg_->trie(); }

  UniqueConfig initial() { return UniqueConfig{cfg_->initial(), nullptr, nullptr, std::string()}; }
  static bool finished(const UniqueConfig& c) { return c.cfg.stack == nullptr; }  // after end of sequence
  static UniqueConfig after_end(const UniqueConfig&) { return UniqueConfig{}; }

  // -- rule 9 -----------------------------------------------------------------------------------

  // `CfgGrammar`'s feed with rule 9: stack, texts and frames after `terminal` spelt `text`; false
  // on a syntax error or a duplicate item (also one the shifted state forces).
  bool feed(const StackNode*& stack, TextPtr& texts, UniqueFramePtr& frames, int32_t terminal,
            const std::string& text) {
    Parser& p = cfg_->parser();
    const StackNode* result = p.feed(stack, terminal);
    if (result == nullptr) return false;
    if (frames) {
      // The reductions before the shift (as many as the parser's feed took, so they end); once
      // no frame is open they check nothing and every text is empty.
      const ParseTables& t = p.tables();
      const StackNode* node = stack;
      int32_t action;
      while (frames && t.action(node->state, terminal, action) && action < 0)
        if (!reduce(node, texts, frames, action)) return false;
    }
    texts = frames ? push_text(texts, texts->height + 1, text) : nullptr;
    if (opens_state_[result->state]) {
      int32_t height = frames ? texts->height : 0;
      if (!frames) {
        for (const StackNode* n = result->parent; n != nullptr; n = n->parent) ++height;
        texts = push_text(nullptr, height, std::string());
      }
      frames = std::make_shared<const UniqueFrame>(UniqueFrame{height, nullptr, std::move(frames), next_uid()});
    }
    stack = result;
    return !frames || forced_ok(result, texts, frames);
  }

  // `c` after one more byte; false where the text leaves the language.
  bool step(UniqueConfig& c, uint8_t b) {
    Lexer& lexer = cfg_->lexer();
    if (lexer.next(c.cfg.lex, b)) {  // extends the lexeme: nothing is fed
      c.cfg = cfg_->step(c.cfg, b);
      if (!c.cfg) return false;
      if (c.frames) c.lexeme.push_back(static_cast<char>(b));
      return true;
    }
    const int32_t term = lexer.chosen(c.cfg.lex);
    if (term < 0) return false;
    const bool ignored = cfg_->is_ignored(term);
    const StackNode* stack = c.cfg.stack;
    if (!ignored && !feed(stack, c.texts, c.frames, term, c.lexeme)) return false;
    const int32_t start = lexer.start(stack->state, ignored);
    const int32_t next = lexer.next(start, b);
    if (!next) return false;
    c.cfg = cfg_->counting() ? cfg_->recount(start, 0, Config{stack, next}, b) : Config{stack, next};
    if (!c.cfg) return false;
    c.lexeme.clear();
    if (c.frames) c.lexeme.push_back(static_cast<char>(b));
    return true;
  }

  // The pending lexeme ends: `c`'s stack, texts and frames after it; false where it cannot.
  bool end_lexeme(const UniqueConfig& c, const StackNode*& stack, TextPtr& texts, UniqueFramePtr& frames) {
    Lexer& lexer = cfg_->lexer();
    stack = c.cfg.stack;
    texts = c.texts;
    frames = c.frames;
    if (lexer.is_start(c.cfg.lex)) return true;
    const int32_t term = lexer.chosen(c.cfg.lex);
    if (term < 0) return false;
    return cfg_->is_ignored(term) || feed(stack, texts, frames, term, c.lexeme);
  }

  bool is_viable(const UniqueConfig& c) {
    if (!cfg_->is_viable(c.cfg)) return false;
    if (!c.frames) return true;
    const CompletionsPtr ends = completions(c.cfg.lex);
    if (!ends) return true;
    // Rule 9: a lexeme with few ways left to end must end one of them well.
    UniqueConfig e = c;
    for (const auto& [more, lex] : *ends) {
      e.cfg.lex = lex;
      e.lexeme.resize(c.lexeme.size());
      e.lexeme += more;
      const StackNode* stack;
      TextPtr texts;
      UniqueFramePtr frames;
      if (end_lexeme(e, stack, texts, frames)) return true;
    }
    return false;
  }

  bool accepts_end(const UniqueConfig& c) {
    if (c.cfg.stack == nullptr || !c.cfg) return false;
    const StackNode* stack;
    TextPtr texts;
    UniqueFramePtr frames;
    return end_lexeme(c, stack, texts, frames) && can_end(stack, texts, frames);
  }

  // `c` after `data` if it stays viable.
  bool walk(UniqueConfig& c, const std::string& data) {
    for (unsigned char b : data)
      if (!step(c, b)) return false;
    return is_viable(c);
  }

  // -- masks ------------------------------------------------------------------------------------

  WordsPtr words(const UniqueConfig& c) {
    if (c.cfg.stack == nullptr) return cfg_->eos_only();
    const std::string k = key(c);
    WordsPtr found;
    if (masks_.find(k, found)) return found;
    return masks_.insert(k, std::make_shared<Words>(compute(c)));
  }

  WordsPtr cached_words(const UniqueConfig& c) {
    if (c.cfg.stack == nullptr) return cfg_->eos_only();
    WordsPtr found;
    masks_.find(key(c), found);
    return found;
  }

  // The CFG's forced bytes (the Python engine's too: they ignore uniqueness, and masks never
  // allow a duplicate they might spell).
  std::string forced_bytes(const UniqueConfig& c) {
    return c.cfg.stack == nullptr ? std::string() : cfg_->forced_bytes(c.cfg);
  }

 private:
  using Completions = std::vector<std::pair<std::string, int32_t>>;  // (bytes still to read, lexer state then)
  using CompletionsPtr = std::shared_ptr<const Completions>;  // null: too many (the Python engine's None)

  static uint64_t next_uid() {
    static std::atomic<uint64_t> uid{1};
    return uid.fetch_add(1, std::memory_order_relaxed);
  }

  static TextPtr push_text(TextPtr below, int32_t height, std::string text) {
    return std::make_shared<const TextNode>(TextNode{height, std::move(text), std::move(below), next_uid()});
  }

  // One reduction with rule 9's bookkeeping (a frame is open, so `texts` lists the top entry);
  // false where it reduces a duplicate item.
  bool reduce(const StackNode*& node, TextPtr& texts, UniqueFramePtr& frames, int32_t action) {
    const int32_t rule = -action - 1;
    const int32_t length = cfg_->parser().tables().rules[static_cast<size_t>(rule)].second;
    const StackNode* reduced = cfg_->parser().reduce(node, action);  // checks the stack holds `length` entries
    const int32_t keep = texts->height - length + 1;  // the new entry's height
    while (frames && frames->height >= keep) frames = frames->parent;  // their entries are popped
    if (!frames) {
      node = reduced;
      texts = nullptr;
      return true;
    }
    // The new entry spans the popped entries' texts (each listed: they are above the frames).
    std::vector<const TextNode*> popped;
    TextPtr below = texts;
    for (; below && below->height >= keep; below = below->parent) popped.push_back(below.get());
    std::string spanned;
    for (auto it = popped.rbegin(); it != popped.rend(); ++it) spanned += (*it)->text;
    if (item_rule_[rule]) {
      std::string value = canonical_value(spanned);
      const size_t h = std::hash<std::string>()(value);
      for (const ValueNode* v = frames->values.get(); v != nullptr; v = v->parent.get())
        if (v->hash == h && v->value == value) return false;
      frames = std::make_shared<const UniqueFrame>(UniqueFrame{
          frames->height, std::make_shared<const ValueNode>(ValueNode{std::move(value), h, frames->values}),
          frames->parent, next_uid()});
    }
    node = reduced;
    texts = push_text(std::move(below), keep, std::move(spanned));
    return true;
  }

  // Rule 9's look-ahead: the reductions the top state forces reduce no duplicate item.
  bool forced_ok(const StackNode* stack, TextPtr texts, UniqueFramePtr frames) {
    for (int k = 0; k < kMaxForced; ++k) {
      const int32_t action = forced_[stack->state];
      if (!action || !frames) return true;
      if (!reduce(stack, texts, frames, action)) return false;
    }
    return true;
  }

  // `CfgGrammar`'s can_end with rule 9's checks on the reductions.
  bool can_end(const StackNode* stack, TextPtr texts, UniqueFramePtr frames) {
    Parser& p = cfg_->parser();
    if (!p.can_end(stack)) return false;
    const ParseTables& t = p.tables();
    for (size_t steps = 0; frames && stack->state != t.end_state; ++steps) {
      int32_t action;
      if (steps > Parser::kMaxSteps || !t.action(stack->state, p.end_symbol(), action) || action >= 0)
        return false;  // not reachable: the parser's can_end took these reductions
      if (!reduce(stack, texts, frames, action)) return false;
    }
    return true;
  }

  // Rule 9: each way the pending lexeme of lexer state `lex` can still end, or null when
  // infinitely many or more than the limit, or a counted terminal is alive (memoised per state).
  CompletionsPtr completions(int32_t lex) {
    CompletionsPtr found;
    if (completions_.find(lex, found)) return found;
    return completions_.insert(lex, compute_completions(lex));
  }

  CompletionsPtr compute_completions(int32_t lex) {
    Lexer& lexer = cfg_->lexer();
    if (lexer.is_start(lex)) return nullptr;
    if (cfg_->counting())
      for (const auto& [t, e] : lexer.components(lex))
        if (cfg_->is_counted(t)) return nullptr;  // a counted terminal is alive: many ways
    if (count(lex) > limit_) return nullptr;
    // Finitely many, so no cycle is reachable: a depth-first enumeration ends.
    auto out = std::make_shared<Completions>();
    std::vector<std::pair<int32_t, int>> todo{{lex, 0}};  // (state, next byte to try)
    std::string text;
    if (lexer.chosen(lex) >= 0) out->emplace_back(text, lex);
    while (!todo.empty()) {
      auto& [state, b] = todo.back();
      const LexState& st = lexer.ready(state);
      while (b < 256 && !st.row[b]) ++b;
      if (b == 256) {
        todo.pop_back();
        if (!text.empty()) text.pop_back();
        continue;
      }
      const int32_t next = st.row[b] + st.base;
      text.push_back(static_cast<char>(b));
      ++b;
      if (lexer.chosen(next) >= 0) out->emplace_back(text, next);
      todo.emplace_back(next, 0);
    }
    return out;
  }

  // How many ways the lexeme of lexer state `lex` can still end, capped at limit + 1 (also for
  // infinitely many); memoised per state, iterative (long enum strings).
  int64_t count(int32_t lex) {
    std::lock_guard<std::mutex> lock(count_mu_);
    Lexer& lexer = cfg_->lexer();
    const int64_t over = limit_ + 1;
    auto known = counts_.find(lex);
    if (known != counts_.end()) return known->second;
    std::unordered_map<int32_t, uint8_t> on_path;
    std::vector<std::pair<int32_t, bool>> todo{{lex, false}};
    while (!todo.empty()) {
      const auto [state, done] = todo.back();
      todo.pop_back();
      const LexState& st = lexer.ready(state);
      if (done) {
        on_path.erase(state);
        int64_t total = lexer.chosen(state) >= 0 ? 1 : 0;
        for (int b = 0; b < 256; ++b)
          if (st.row[b]) total = std::min(over, total + counts_.at(st.row[b] + st.base));
        counts_[state] = total;
        continue;
      }
      if (counts_.count(state)) continue;
      on_path[state] = 1;
      todo.emplace_back(state, true);
      for (int b = 0; b < 256; ++b) {
        if (!st.row[b]) continue;
        const int32_t next = st.row[b] + st.base;
        if (on_path.count(next)) {  // a cycle: infinitely many
          for (const auto& [s, _] : on_path) counts_[s] = over;
          return over;
        }
        if (!counts_.count(next)) todo.emplace_back(next, false);
      }
    }
    return counts_.at(lex);
  }

  // Packed: the tokens whose bytes all extend the lexeme of `lex` and leave it in a state with few
  // ways to end (memoised per lexer state).
  WordsPtr inside_finite(int32_t lex) {
    WordsPtr found;
    if (inside_finite_.find(lex, found)) return found;
    const TokenTrie& trie = cfg_->trie();
    auto w = std::make_shared<Words>(static_cast<size_t>(trie.n_words()), 0);
    LexTable table(cfg_->lexer());
    std::unordered_map<int32_t, bool> finite;  // per local end state
    std::vector<int32_t> scratch;
    trie.walk(
        table.local(lex), [&](int32_t s, uint8_t b) { return table.step(s, b); },
        [&](const TrieNode& n, int32_t end) {
          auto [it, fresh] = finite.emplace(end, false);
          if (fresh) it->second = completions(table.global(end)) != nullptr;
          if (it->second) trie.mark(w->data(), n);
        },
        scratch);
    trie.add_duplicates(w->data());
    return inside_finite_.insert(lex, std::move(w));
  }

  // Packed: the tokens whose bytes may reach a rule 9 check from `c` (the Python engine's `risky`).
  Words risky(const UniqueConfig& c) {
    Lexer& lexer = cfg_->lexer();
    const int32_t lex = c.cfg.lex;
    const Words& inside = *cfg_->lexeme_info(lex)->inside;
    Words out(inside.size());
    for (size_t k = 0; k < out.size(); ++k) out[k] = ~inside[k];  // the tokens that end the pending lexeme
    if (c.frames) {
      const WordsPtr few = inside_finite(lex);
      for (size_t k = 0; k < out.size(); ++k) out[k] |= (*few)[k];
    } else if (!(any_open_ && !lexer.is_start(lex) && lexer.any_alive(lex, opens_))) {
      for (size_t k = 0; k < out.size(); ++k) out[k] &= holds_open_[k];  // none may open a frame but these
    }
    return out;
  }

  // The memo key: the CFG configuration, the persistent lists by identity, the pending lexeme.
  static std::string key(const UniqueConfig& c) {
    std::string k;
    auto put = [&](const void* v, size_t n) { k.append(static_cast<const char*>(v), n); };
    const uint64_t texts = c.texts ? c.texts->uid : 0, frames = c.frames ? c.frames->uid : 0;
    put(&c.cfg.stack->uid, sizeof(uint64_t));
    put(&c.cfg.lex, sizeof(int32_t));
    put(&c.cfg.count, sizeof(int32_t));
    put(&texts, sizeof(uint64_t));
    put(&frames, sizeof(uint64_t));
    k += c.lexeme;
    return k;
  }

  // The Python engine's `UniqueGrammar._compute`: the CFG mask, less the risky tokens rule 9 refuses.
  Words compute(const UniqueConfig& c) {
    const WordsPtr cfg_words = cfg_->words(c.cfg);
    const Words& allowed = *cfg_words;
    const Words risk = risky(c);
    const TokenTrie& trie = cfg_->trie();
    const size_t n_words = allowed.size();
    Words w = allowed;
    std::vector<int32_t> check;
    for (size_t k = 0; k < n_words; ++k) {
      const uint32_t x = allowed[k] & risk[k];
      w[k] &= ~x;
      for (uint32_t y = x; y; y &= y - 1) check.push_back(static_cast<int32_t>(k * 32 + __builtin_ctz(y)));
    }
    // Tokens share prefixes ("1", "1,", ", ", ",\n"): in byte order, each token is stepped on from
    // the configuration after its common prefix with the previous one, so the lexeme a prefix
    // ends is fed (and its item compared with the others) once, not once per token.
    std::sort(check.begin(), check.end(), [&](int32_t a, int32_t b) { return trie.bytes(a) < trie.bytes(b); });
    std::vector<UniqueConfig> after{c};  // after[k]: the configuration after k bytes of `prev`
    const std::string* prev = nullptr;
    size_t dead = SIZE_MAX;  // the length of `prev`'s shortest prefix that leaves the language
    for (int32_t id : check) {
      if (trie.is_eos(id)) continue;  // decided below
      const std::string& data = trie.bytes(id);
      if (data.empty()) continue;
      size_t common = 0;
      if (prev != nullptr)
        while (common < data.size() && common < prev->size() && data[common] == (*prev)[common]) ++common;
      if (dead <= common) continue;  // a prefix of it leaves the language
      dead = SIZE_MAX;
      after.resize(std::min(after.size(), common + 1));
      prev = &data;
      for (size_t k = after.size() - 1; k < data.size(); ++k) {
        after.push_back(after.back());
        if (!step(after.back(), static_cast<uint8_t>(data[k]))) {
          after.pop_back();
          dead = k + 1;
          break;
        }
      }
      if (dead == SIZE_MAX && is_viable(after.back())) set_bit(w.data(), id);
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
  int64_t limit_;
  std::vector<uint8_t> opens_state_;  // per LR state
  std::vector<uint8_t> item_rule_;  // per rule
  std::vector<int32_t> forced_;  // per LR state: the reduce action it forces, else 0
  std::vector<uint64_t> opens_;  // bits per terminal
  bool any_open_ = false;
  Words holds_open_;
  StripedMap<std::string, WordsPtr> masks_;
  StripedMap<int32_t, CompletionsPtr> completions_;
  StripedMap<int32_t, WordsPtr> inside_finite_;
  std::mutex count_mu_;
  std::unordered_map<int32_t, int64_t> counts_;
};

// One sequence's position in a grammar with unique items: the configuration after each token.
class UniqueMatcher : public HistoryMatcher<UniqueGrammar, UniqueConfig, UniqueMatcher> {
 public:
  using HistoryMatcher::HistoryMatcher;

  void advance(int64_t token) override { advance_walking(token, "the text is incomplete", "leaves the grammar"); }

  Words budget_words(int64_t) const override { throw std::logic_error("budget masks of grammars are not native yet"); }
};

}  // namespace guided_native
