// The vocabulary as a pre-order byte trie: a walk visits each distinct token prefix once and skips
// a whole subtree (every token sharing the prefix) where an automaton dies.  The trie knows no
// automaton or parser; walks bring their own step function.
//
// Layout: a node is 12 bytes read in order (the walks are memory-bound), its first token inline.
// Nodes that spell no token hold a spare id one past the last packed word, so a walk marks a
// token without a branch into a buffer of `n_words() + 1` words (`kSpareWords`) whose last word
// it discards.  Tokens spelt like another (a few tokenizers have them) are not in the walks: a
// finished mask gets them from their first spelling (`add_duplicates`), which decides them alike.
#pragma once

#include <algorithm>
#include <array>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "common.h"

namespace guided_native {

struct TrieNode {
  uint32_t subtree_end;  // index one past the node's last descendant
  int32_t token;  // the first token spelling exactly this prefix, or `TokenTrie::spare_token()`
  uint16_t depth;  // 1 for a first byte
  uint8_t byte;  // the prefix's last byte
  uint8_t has_token;
};
static_assert(sizeof(TrieNode) == 12, "trie nodes are read in bulk: keep them small");

class TokenTrie : public std::enable_shared_from_this<TokenTrie> {
 public:
  static constexpr int32_t kSpareWords = 1;  // the word a branchless walk marks non-tokens in

  // `token_bytes[i]` is token i's text ("" for ids a grammar never produces); `excluded` ids are
  // special or end-of-sequence tokens (never in the trie); `eos` may be sampled at a document end.
  TokenTrie(std::vector<std::string> token_bytes, const std::vector<int64_t>& excluded,
            const std::vector<int64_t>& eos)
      : vocab_size_(static_cast<int32_t>(token_bytes.size())), bytes_(std::move(token_bytes)) {
    if (bytes_.size() > (1u << 30)) invalid("vocabulary too large");
    n_words_ = (vocab_size_ + 31) / 32;
    spare_ = n_words_ * 32;
    std::vector<uint8_t> skip(vocab_size_, 0);
    for (int64_t id : excluded) {
      if (id < 0 || id >= vocab_size_) invalid("excluded token id " + std::to_string(id) + " out of range");
      skip[id] = 1;
    }
    is_eos_.assign(vocab_size_, 0);
    eos_words_.assign(n_words_, 0);
    for (int64_t id : eos) {
      if (id < 0 || id >= vocab_size_) invalid("eos token id " + std::to_string(id) + " out of range");
      is_eos_[id] = 1;
      set_bit(eos_words_.data(), static_cast<int32_t>(id));
    }
    std::vector<int32_t> ids;
    for (int32_t i = 0; i < vocab_size_; ++i) {
      if (skip[i] || bytes_[i].empty()) continue;
      if (bytes_[i].size() > 65535) invalid("token " + std::to_string(i) + " is longer than 65535 bytes");
      ids.push_back(i);
    }
    std::sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) {
      int c = bytes_[a].compare(bytes_[b]);
      return c < 0 || (c == 0 && a < b);
    });
    // Sorted strings give the pre-order: a new string shares a prefix with the previous one, pops
    // the nodes below that prefix (closing their subtrees) and pushes the rest.
    std::vector<uint32_t> path;  // node index at each depth - 1
    const std::string* prev = nullptr;
    for (int32_t id : ids) {
      const std::string& s = bytes_[id];
      if (prev != nullptr && *prev == s) {  // a duplicate spelling: decided as the first one
        duplicates_.emplace_back(nodes_.back().token, id);
        continue;
      }
      size_t common = 0;
      if (prev != nullptr) {
        while (common < prev->size() && common < s.size() && (*prev)[common] == s[common]) ++common;
      }
      while (path.size() > common) {
        nodes_[path.back()].subtree_end = static_cast<uint32_t>(nodes_.size());
        path.pop_back();
      }
      for (size_t d = common; d < s.size(); ++d) {
        TrieNode n{};
        n.depth = static_cast<uint16_t>(d + 1);
        n.byte = static_cast<uint8_t>(s[d]);
        n.token = spare_;
        path.push_back(static_cast<uint32_t>(nodes_.size()));
        nodes_.push_back(n);
      }
      nodes_.back().token = id;
      nodes_.back().has_token = 1;
      max_depth_ = std::max<size_t>(max_depth_, s.size());
      prev = &s;
    }
    while (!path.empty()) {
      nodes_[path.back()].subtree_end = static_cast<uint32_t>(nodes_.size());
      path.pop_back();
    }
    if (nodes_.size() >= (1ull << 31) - 1) invalid("vocabulary trie too large");
    std::sort(duplicates_.begin(), duplicates_.end());
    first_byte_words_.assign(256 * static_cast<size_t>(n_words_), 0);
    single_byte_.fill(false);
    for (size_t i = 0; i < nodes_.size(); i = nodes_[i].subtree_end) {
      const TrieNode& root_child = nodes_[i];
      uint32_t* w = &first_byte_words_[root_child.byte * static_cast<size_t>(n_words_)];
      for (size_t j = i; j < root_child.subtree_end; ++j) mark(w, nodes_[j]);
      add_duplicates(w);
      if (root_child.has_token) single_byte_[root_child.byte] = true;
    }
  }

  int32_t vocab_size() const { return vocab_size_; }
  int32_t n_words() const { return n_words_; }
  size_t max_depth() const { return max_depth_; }
  const std::vector<TrieNode>& nodes() const { return nodes_; }
  // The id nodes without a token hold: bit 0 of the word past the mask.
  int32_t spare_token() const { return spare_; }
  const Words& eos_words() const { return eos_words_; }
  bool is_eos(int64_t id) const { return id >= 0 && id < vocab_size_ && is_eos_[id]; }
  // Packed mask of the text tokens whose first byte is `b`.
  const uint32_t* first_byte_words(int b) const { return &first_byte_words_[b * static_cast<size_t>(n_words_)]; }
  // Bytes that are a token by themselves (closing paths are spelt with them).
  const std::array<bool, 256>& single_byte() const { return single_byte_; }

  // The text of a token for `advance`; a violation for ids that are not text of this vocabulary.
  const std::string& text(int64_t id, size_t consumed) const {
    if (id < 0 || id >= vocab_size_ || bytes_[id].empty())
      violation("token " + std::to_string(id) + " is not a text token of this vocabulary (after " +
                std::to_string(consumed) + " tokens)");
    return bytes_[id];
  }

  // Token `id`'s bytes, unchecked ("" for ids outside the trie).
  const std::string& bytes(int32_t id) const { return bytes_[id]; }

  // The node spelling exactly `prefix`, or -1.
  int64_t find(const std::string& prefix) const {
    if (prefix.empty()) return -1;
    const TrieNode* nodes = nodes_.data();
    uint32_t i = 0, end = static_cast<uint32_t>(nodes_.size());
    for (size_t d = 0;; ++d) {
      const uint8_t b = static_cast<uint8_t>(prefix[d]);
      while (i < end && nodes[i].byte != b) i = nodes[i].subtree_end;  // the siblings at depth d + 1
      if (i >= end) return -1;
      if (d + 1 == prefix.size()) return i;
      end = nodes[i].subtree_end;
      ++i;
    }
  }

  // Call `f(id)` for every token spelling exactly node `i`'s prefix (duplicates included).
  template <typename F>
  void for_each_token(uint32_t i, F&& f) const {
    const TrieNode& n = nodes_[i];
    if (!n.has_token) return;
    f(n.token);
    auto it = std::lower_bound(duplicates_.begin(), duplicates_.end(), std::make_pair(n.token, std::numeric_limits<int32_t>::min()));
    for (; it != duplicates_.end() && it->first == n.token; ++it) f(it->second);
  }

  // Mark a node's token (none for a node that spells no token) in a mask of `n_words()` words.
  void mark(uint32_t* words, const TrieNode& n) const {
    if (n.has_token) set_bit(words, n.token);
  }
  // Clear the tokens of node `root`'s whole subtree.
  void clear_subtree(uint32_t* words, uint32_t root) const {
    const TrieNode* nodes = nodes_.data();
    for (uint32_t i = root, end = nodes[root].subtree_end; i < end; ++i)
      if (nodes[i].has_token) words[nodes[i].token >> 5] &= ~(1u << (nodes[i].token & 31));
  }
  // Give every duplicate spelling the bit of its first spelling (walks mark first spellings only).
  void add_duplicates(uint32_t* words) const {
    for (const auto& [first, dup] : duplicates_)
      if (test_bit(words, first)) set_bit(words, dup);
  }

  // Budget-aware closing's subsequence walk (`guided.engine.closing.SubsequenceCover`): for
  // every token id, how many positions of a subsequence of byte sets its bytes match greedily
  // from position `start` (a byte in the set at the current position moves on; any other byte is
  // skipped).  `member` holds `n` rows of 32 bytes, bit b of row i set where byte b belongs to
  // position i.  Tokens outside the trie (special, end-of-sequence, empty) get 0.  One pre-order
  // pass: a node's position follows from its parent's, kept per depth.
  void subsequence_advances(const uint8_t* member, int32_t n, int32_t start, int64_t* out,
                            std::vector<int32_t>& scratch) const {
    std::fill(out, out + vocab_size_, int64_t{0});
    scratch.resize(max_depth_ + 1);
    int32_t* const at = scratch.data();
    at[0] = start;
    const TrieNode* const nodes = nodes_.data();
    const size_t count = nodes_.size();
    for (size_t i = 0; i < count; ++i) {
      const TrieNode& node = nodes[i];
      const int32_t p = at[node.depth - 1];
      const int32_t next = p + (p < n && ((member[static_cast<size_t>(p) * 32 + (node.byte >> 3)] >> (node.byte & 7)) & 1));
      at[node.depth] = next;
      if (node.has_token) out[node.token] = next - start;
    }
    for (const auto& [first, dup] : duplicates_) out[dup] = out[first];
  }

  // Walk every token from `start` over a dense `table` (`rows()`: 256 targets per state, 0 dead,
  // negative where `resolve(state, byte)` must be asked first), marking each live node's token in
  // `words` (`n_words() + kSpareWords` words, without duplicates) and calling
  // `on_death(node index, parent_state)` where a step dies (the node's subtree is then skipped).
  // The inner loop of every first visit of a lexer state: a few loads and one well-predicted
  // branch per node, everything it reads held in locals.
  template <typename Table, typename OnDeath>
  void walk_marking(int32_t start, Table& table, uint32_t* words, OnDeath&& on_death,
                    std::vector<int32_t>& scratch) const {
    scratch.resize(max_depth_ + 1);
    int32_t* const st = scratch.data();
    st[0] = start;
    const TrieNode* const nodes = nodes_.data();
    const uint32_t n = static_cast<uint32_t>(nodes_.size());
    const int32_t* rows = table.rows();
    uint32_t i = 0;
    while (i < n) {
      const TrieNode& node = nodes[i];
      const int32_t parent = st[node.depth - 1];
      int32_t next = rows[static_cast<size_t>(parent) * 256 + node.byte];
      if (next < 0) {
        next = table.resolve(parent, node.byte);
        rows = table.rows();
      }
      if (next == 0) {
        on_death(i, parent);
        i = node.subtree_end;
        continue;
      }
      st[node.depth] = next;
      words[node.token >> 5] |= 1u << (node.token & 31);
      ++i;
    }
  }

  // Walk every token from `start` with `step(state, byte) -> state` (0 is dead), calling
  // `on_token(node, state)` for each live node that ends a token.
  template <typename State, typename Step, typename OnToken>
  void walk(State start, Step&& step, OnToken&& on_token, std::vector<State>& scratch) const {
    scratch.resize(max_depth_ + 1);
    scratch[0] = start;
    walk_range(0, static_cast<uint32_t>(nodes_.size()), step, on_token, scratch.data());
  }

  // The same walk over the subtree of node `root` only, from the state after its byte.
  template <typename State, typename Step, typename OnToken>
  void walk_below(uint32_t root, State after_root, Step&& step, OnToken&& on_token, std::vector<State>& scratch) const {
    scratch.resize(max_depth_ + 1);
    scratch[nodes_[root].depth] = after_root;
    walk_range(root + 1, nodes_[root].subtree_end, step, on_token, scratch.data());
  }

 private:
  // Nodes [i, end) in trie order, `st[depth - 1]` holding the state before the first one.
  template <typename State, typename Step, typename OnToken>
  void walk_range(uint32_t i, uint32_t end, Step& step, OnToken& on_token, State* st) const {
    const TrieNode* nodes = nodes_.data();
    while (i < end) {
      const TrieNode& node = nodes[i];
      const State next = step(st[node.depth - 1], node.byte);
      if (!next) {
        i = node.subtree_end;
        continue;
      }
      st[node.depth] = next;
      if (node.has_token) on_token(node, next);
      ++i;
    }
  }

  int32_t vocab_size_;
  int32_t n_words_ = 0;
  int32_t spare_ = 0;
  std::vector<std::string> bytes_;
  std::vector<TrieNode> nodes_;
  std::vector<std::pair<int32_t, int32_t>> duplicates_;  // (first spelling, another id spelt alike)
  std::vector<uint8_t> is_eos_;
  Words eos_words_;
  std::vector<uint32_t> first_byte_words_;
  std::array<bool, 256> single_byte_{};
  size_t max_depth_ = 0;
};

}  // namespace guided_native
