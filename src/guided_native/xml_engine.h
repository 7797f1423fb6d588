// XML's matched names over the CFG core: the native twin of `guided.engine.xml`, mask for mask.
//
// That `</b>` must name the innermost open element is not context-free; the IR states it as
// matched names (`guided.ir.MatchedNames`: which terminals open and close tags and name them).
// Beside each CFG configuration an XML configuration tracks the open element names (an interned
// persistent stack), the mode of the tag being written, its attribute names (interned sets: XML
// forbids duplicates) and the bytes of the current lexeme while they matter.
//
// A mask starts from the CFG mask (cached, shared) and re-checks byte by byte only the tokens
// that may reach a name check from where the configuration stands: per-vocabulary token classes
// (`XmlRisk`, the Python engine's `_Risk`) tell which, and inside a close tag the allowed names
// are read off the trie (the prefixes of the expected name).  Masks are exact, so they equal the
// Python engine's bit for bit; the differential tests hold them to it.
#pragma once

#include <algorithm>
#include <array>
#include <deque>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "cfg_engine.h"

namespace guided_native {

// Per vocabulary and set of name bytes: which tokens may reach a name check from each kind of
// position (packed masks over the text tokens).
class XmlRisk {
 public:
  XmlRisk(std::shared_ptr<const TokenTrie> trie, const std::vector<int32_t>& name_bytes) : trie_(std::move(trie)) {
    name_byte_.fill(0);
    for (int32_t b : name_bytes) {
      if (b < 0 || b > 255) invalid("matched names: name byte " + std::to_string(b) + " out of range");
      name_byte_[b] = 1;
    }
    const size_t n_words = static_cast<size_t>(trie_->n_words());
    for (Words* w : {&content, &eq, &name_sep, &sep_first, &slash_first, &name_first, &dq, &sq}) w->assign(n_words, 0);
    const std::vector<TrieNode>& nodes = trie_->nodes();
    for (uint32_t i = 0; i < nodes.size(); ++i)
      trie_->for_each_token(i, [&](int32_t id) { classify(id, trie_->bytes(id)); });
  }

  const TokenTrie& trie() const { return *trie_; }
  bool is_name_byte(uint8_t b) const { return name_byte_[b] != 0; }

  Words content, eq, name_sep, sep_first, slash_first, name_first, dq, sq;

 private:
  static bool is_ws(uint8_t b) { return b == ' ' || b == '\t' || b == '\r' || b == '\n'; }

  void classify(int32_t id, const std::string& b) {
    const size_t lt = b.find('<');
    if (lt != std::string::npos && (b.find("</") != std::string::npos || b.find('=', lt) != std::string::npos))
      set_bit(content.data(), id);
    if (b.find('=') != std::string::npos) set_bit(eq.data(), id);
    if (lt != std::string::npos && b.find('/', lt) != std::string::npos) set_bit(content.data(), id);
    for (size_t j = 0; j + 1 < b.size(); ++j) {
      const uint8_t x = static_cast<uint8_t>(b[j]), y = static_cast<uint8_t>(b[j + 1]);
      if (name_byte_[x] && (is_ws(y) || y == '=')) {
        set_bit(name_sep.data(), id);
        break;
      }
    }
    const uint8_t first = static_cast<uint8_t>(b[0]);
    if (is_ws(first) || first == '=') set_bit(sep_first.data(), id);
    if (first == '/') set_bit(slash_first.data(), id);
    if (name_byte_[first]) set_bit(name_first.data(), id);
    if (b.find('"') != std::string::npos) set_bit(dq.data(), id);
    if (b.find('\'') != std::string::npos) set_bit(sq.data(), id);
  }

  std::shared_ptr<const TokenTrie> trie_;
  std::array<uint8_t, 256> name_byte_{};
};

// An interned node of the persistent stack of open element names (the root: no element open).
struct NameNode {
  std::string name;
  const NameNode* parent;
  uint64_t uid;
};

// The terminals of the IR's `MatchedNames`.
struct XmlTerminals {
  int32_t name, open_start, open_end, empty_end, close_start;
  bool unique_attributes;
};

struct XmlConfig {
  enum Mode : uint8_t { kOut, kOpenName, kTag, kCloseName, kCloseEnd };

  Config cfg;  // stack nullptr: finished (after EOS)
  const NameNode* names = nullptr;  // the open elements, innermost first
  uint8_t mode = kOut;
  bool has_buf = false;  // the Python engine's lexbuf is not None
  int32_t attrs = 0;  // interned set of the attribute names of the start tag being written
  int32_t pending = -1;  // interned name of the start tag being written (-1: none)
  std::string buf;  // the bytes of the current lexeme while they may matter
};

class XmlGrammar : public std::enable_shared_from_this<XmlGrammar> {
 public:
  static constexpr size_t kMaskCacheSize = 4096;

  XmlGrammar(std::shared_ptr<CfgGrammar> cfg, std::shared_ptr<const XmlRisk> risk, XmlTerminals t)
      : cfg_(std::move(cfg)), risk_(std::move(risk)), t_(t), masks_(kMaskCacheSize / decltype(masks_)::kStripes) {
    const int32_t n = cfg_->lexer().num_terminals();
    for (int32_t x : {t.name, t.open_start, t.open_end, t.empty_end, t.close_start})
      if (x < 0 || x >= n) invalid("malformed IR: matched-names terminal " + std::to_string(x) + " out of range");
    if (&risk_->trie() != &cfg_->trie()) invalid("matched names: token classes of another vocabulary");
    root_.reset(new NameNode{std::string(), nullptr, 0});
    sets_.emplace_back();  // set 0: empty
    set_index_.emplace(std::vector<int32_t>(), 0);
  }

  CfgGrammar& cfg() { return *cfg_; }
  const TokenTrie& trie() const { return cfg_->trie(); }

  XmlConfig initial() {
    XmlConfig c;
    c.cfg = cfg_->initial();
    c.names = root_.get();
    c.has_buf = true;  // the Python engine starts with lexbuf b""
    return c;
  }

  // -- one byte ---------------------------------------------------------------------------------

  bool step(XmlConfig& c, uint8_t b) {
    const bool extends = cfg_->lexer().next(c.cfg.lex, b) != 0;
    const int32_t ended = extends ? -1 : cfg_->lexer().chosen(c.cfg.lex);
    const Config moved = cfg_->step(c.cfg, b);
    if (!moved) return false;
    c.cfg = moved;
    if (extends) {
      if (c.has_buf) {
        const char first = c.buf.empty() ? '\0' : c.buf[0];
        if (c.mode == XmlConfig::kTag && !c.buf.empty() && (first == '"' || first == '\'')) {
          // inside an attribute value only its opening quote matters
        } else if (c.mode == XmlConfig::kOut && (c.buf.size() >= 2 || c.buf.empty() || first != '<')) {
          c.has_buf = false;
          c.buf.clear();
        } else {
          c.buf.push_back(static_cast<char>(b));
          if (c.mode == XmlConfig::kCloseName && !starts_with(c.names->name, c.buf)) return false;
        }
      }
      return true;
    }
    if (ended == t_.name) {
      if (c.mode == XmlConfig::kOpenName) {
        c.pending = intern(c.buf);
        c.mode = XmlConfig::kTag;
        c.attrs = 0;
      } else if (c.mode == XmlConfig::kTag) {
        const int32_t attr = intern(c.buf);
        if (t_.unique_attributes && contains(c.attrs, attr)) return false;
        c.attrs = with(c.attrs, attr);
      } else if (c.mode == XmlConfig::kCloseName) {
        if (c.buf != c.names->name || c.names->parent == nullptr) return false;
        c.names = c.names->parent;
        c.mode = XmlConfig::kCloseEnd;
      }
    } else if (ended == t_.open_start) {
      c.mode = XmlConfig::kOpenName;
    } else if (ended == t_.close_start) {
      c.mode = XmlConfig::kCloseName;
    } else if (ended == t_.open_end) {
      if (c.mode == XmlConfig::kTag) c.names = push(c.names, c.pending);
      c.mode = XmlConfig::kOut;
      c.attrs = 0;
      c.pending = -1;
    } else if (ended == t_.empty_end) {
      c.mode = XmlConfig::kOut;
      c.attrs = 0;
      c.pending = -1;
    }
    c.buf.assign(1, static_cast<char>(b));
    c.has_buf = true;
    if (c.mode == XmlConfig::kCloseName && !starts_with(c.names->name, c.buf)) return false;
    if (c.mode == XmlConfig::kOut && b != '<') {
      c.has_buf = false;
      c.buf.clear();
    }
    return true;
  }

  // `c` after `data` if it stays viable.
  bool walk(XmlConfig& c, const std::string& data) {
    for (unsigned char b : data)
      if (!step(c, b)) return false;
    return cfg_->is_viable(c.cfg);
  }

  static bool finished(const XmlConfig& c) { return c.cfg.stack == nullptr; }  // after end of sequence
  // After end of sequence: the CFG part finished, the rest kept as it was.
  static XmlConfig after_end(const XmlConfig& c) {
    XmlConfig done = c;
    done.cfg = Config{};
    return done;
  }

  bool accepts_end(const XmlConfig& c) { return c.names->parent == nullptr && cfg_->accepts_end(c.cfg); }

  // -- masks ------------------------------------------------------------------------------------

  WordsPtr words(const XmlConfig& c) {
    if (c.cfg.stack == nullptr) return cfg_->eos_only();
    const std::string k = key(c);
    WordsPtr found;
    if (masks_.find(k, found)) return found;
    return masks_.insert(k, std::make_shared<Words>(compute(c)));
  }

  WordsPtr cached_words(const XmlConfig& c) {
    if (c.cfg.stack == nullptr) return cfg_->eos_only();
    WordsPtr found;
    masks_.find(key(c), found);
    return found;
  }

  std::string forced_bytes(const XmlConfig& c) {
    if (c.cfg.stack == nullptr) return std::string();
    const std::string& buf = c.has_buf ? c.buf : empty_;
    if (c.mode == XmlConfig::kCloseName) return c.names->name.substr(std::min(buf.size(), c.names->name.size()));
    if (c.mode == XmlConfig::kOut && c.has_buf && c.buf == "</" && c.names->parent != nullptr) return c.names->name;
    return cfg_->forced_bytes(c.cfg);
  }

 private:
  static bool starts_with(const std::string& s, const std::string& prefix) {
    return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
  }

  // The mask key: every field a mask depends on.
  static std::string key(const XmlConfig& c) {
    std::string k(sizeof(uint64_t) * 2 + sizeof(int32_t) * 4 + 2, '\0');
    char* p = &k[0];
    auto put = [&](const void* v, size_t n) {
      std::memcpy(p, v, n);
      p += n;
    };
    put(&c.cfg.stack->uid, sizeof(uint64_t));
    put(&c.names->uid, sizeof(uint64_t));
    put(&c.cfg.lex, sizeof(int32_t));
    put(&c.attrs, sizeof(int32_t));
    put(&c.pending, sizeof(int32_t));
    const int32_t n = static_cast<int32_t>(c.buf.size());
    put(&n, sizeof(int32_t));
    put(&c.mode, 1);
    put(&c.has_buf, 1);
    k += c.buf;
    return k;
  }

  int32_t intern(const std::string& s) {
    std::lock_guard<std::mutex> lock(mu_);
    auto [it, fresh] = strings_.emplace(s, static_cast<int32_t>(string_list_.size()));
    if (fresh) string_list_.push_back(&it->first);
    return it->second;
  }

  const NameNode* push(const NameNode* parent, int32_t name) {
    std::lock_guard<std::mutex> lock(mu_);
    auto [it, fresh] = nodes_.emplace(std::make_pair(parent->uid, name), nullptr);
    if (fresh) {
      arena_.push_back(NameNode{name >= 0 ? *string_list_[name] : std::string(), parent, next_uid_++});
      it->second = &arena_.back();
    }
    return it->second;
  }

  bool contains(int32_t set, int32_t name) {
    std::lock_guard<std::mutex> lock(mu_);
    const std::vector<int32_t>& s = sets_[set];
    return std::binary_search(s.begin(), s.end(), name);
  }

  int32_t with(int32_t set, int32_t name) {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<int32_t> s = sets_[set];
    auto at = std::lower_bound(s.begin(), s.end(), name);
    if (at != s.end() && *at == name) return set;
    s.insert(at, name);
    auto [it, fresh] = set_index_.emplace(s, static_cast<int32_t>(sets_.size()));
    if (fresh) sets_.push_back(std::move(s));
    return it->second;
  }

  // Tokens spelling a prefix of `need` (allowed where the CFG allows them), and tokens that run
  // past it into a byte that ends the name (walked).
  void close_name_tokens(const std::string& need, std::vector<int32_t>& direct, std::vector<int32_t>& check) const {
    const TokenTrie& trie = cfg_->trie();
    const std::vector<TrieNode>& nodes = trie.nodes();
    for (size_t k = 1; k <= need.size(); ++k) {
      const int64_t at = trie.find(need.substr(0, k));
      if (at < 0) break;
      trie.for_each_token(static_cast<uint32_t>(at), [&](int32_t id) { direct.push_back(id); });
      if (k == need.size()) {
        // Below the node: the tokens longer than `need`, by the byte after it.
        for (uint32_t i = static_cast<uint32_t>(at) + 1; i < nodes[at].subtree_end;) {
          if (risk_->is_name_byte(nodes[i].byte)) {
            i = nodes[i].subtree_end;
            continue;
          }
          for (uint32_t j = i; j < nodes[i].subtree_end; ++j)
            trie.for_each_token(j, [&](int32_t id) { check.push_back(id); });
          i = nodes[i].subtree_end;
        }
      }
    }
  }

  static void add_ids(const Words& w, std::vector<int32_t>& out) {
    for (size_t k = 0; k < w.size(); ++k)
      for (uint32_t x = w[k]; x; x &= x - 1) out.push_back(static_cast<int32_t>(k * 32 + __builtin_ctz(x)));
  }

  // The Python engine's `XmlGrammar._compute`, step for step.
  Words compute(const XmlConfig& c) {
    const XmlRisk& r = *risk_;
    const WordsPtr cfg_words = cfg_->words(c.cfg);
    const Words& allowed = *cfg_words;
    const size_t n_words = allowed.size();
    const std::string& buf = c.has_buf ? c.buf : empty_;
    Words base = allowed;
    Words risky;  // empty: none
    std::vector<int32_t> direct, check;
    auto and_not = [&](Words& w, const Words& x) {
      for (size_t k = 0; k < n_words; ++k) w[k] &= ~x[k];
    };
    auto either = [&](std::initializer_list<const Words*> parts) {
      Words out(n_words, 0);
      for (const Words* x : parts)
        for (size_t k = 0; k < n_words; ++k) out[k] |= (*x)[k];
      return out;
    };
    if (c.mode == XmlConfig::kCloseName) {
      const std::string need = c.names->name.substr(std::min(buf.size(), c.names->name.size()));
      if (!need.empty()) {
        std::fill(base.begin(), base.end(), 0);
        close_name_tokens(need, direct, check);
      } else {
        and_not(base, r.name_first);
        risky = r.content;
      }
    } else if (c.mode == XmlConfig::kOut && c.has_buf && (c.buf == "<" || c.buf == "</") && c.names->parent != nullptr) {
      const std::string need = (c.buf == "<" ? "/" : "") + c.names->name;
      and_not(base, c.buf == "<" ? r.slash_first : r.name_first);
      close_name_tokens(need, direct, check);
      risky = either({&r.content, &r.eq});
    } else if (c.mode == XmlConfig::kOut || c.mode == XmlConfig::kCloseEnd) {
      risky = c.has_buf && c.buf == "<" ? either({&r.content, &r.eq}) : r.content;
    } else if (c.mode == XmlConfig::kOpenName) {
      risky = either({&r.content, &r.eq});
    } else {  // in a tag
      if (c.has_buf && !c.buf.empty() && (c.buf[0] == '"' || c.buf[0] == '\'')) {
        risky = c.buf[0] == '"' ? r.dq : r.sq;
      } else if (c.attrs != 0) {
        risky = either({&r.content, &r.eq, &r.name_sep});
        if (c.has_buf && !c.buf.empty() && r.is_name_byte(static_cast<uint8_t>(c.buf[0])))
          for (size_t k = 0; k < n_words; ++k) risky[k] |= r.sep_first[k];
      } else {
        risky = either({&r.content, &r.eq});
      }
    }
    Words w = base;
    if (!risky.empty()) {
      and_not(w, risky);
      for (size_t k = 0; k < n_words; ++k) risky[k] &= base[k];
      add_ids(risky, check);
    }
    for (int32_t id : direct)
      if (test_bit(allowed.data(), id)) set_bit(w.data(), id);
    std::sort(check.begin(), check.end());
    check.erase(std::unique(check.begin(), check.end()), check.end());
    const TokenTrie& trie = cfg_->trie();
    for (int32_t id : check) {
      if (!test_bit(allowed.data(), id)) continue;
      XmlConfig probe = c;
      if (walk(probe, trie.bytes(id))) set_bit(w.data(), id);
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
  std::shared_ptr<const XmlRisk> risk_;
  XmlTerminals t_;
  std::unique_ptr<NameNode> root_;
  const std::string empty_;
  std::mutex mu_;  // interning: strings, name stacks, attribute sets
  std::unordered_map<std::string, int32_t> strings_;
  std::vector<const std::string*> string_list_;
  std::map<std::pair<uint64_t, int32_t>, const NameNode*> nodes_;
  std::deque<NameNode> arena_;
  uint64_t next_uid_ = 1;
  std::vector<std::vector<int32_t>> sets_;
  std::map<std::vector<int32_t>, int32_t> set_index_;
  StripedMap<std::string, WordsPtr> masks_;
};

// One sequence's position in an XML grammar: the XML configuration after each consumed token.
class XmlMatcher : public HistoryMatcher<XmlGrammar, XmlConfig, XmlMatcher> {
 public:
  using HistoryMatcher::HistoryMatcher;

  void advance(int64_t token) override { advance_walking(token, "the XML is incomplete", "leaves well-formed XML"); }

  Words budget_words(int64_t) const override { throw std::logic_error("budget masks of XML are not native yet"); }
};

}  // namespace guided_native
