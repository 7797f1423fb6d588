// The vocabulary as a pre-order byte trie: a walk visits each distinct token prefix once and skips
// a whole subtree (every token sharing the prefix) where an automaton dies.  The trie knows no
// automaton or parser; walks bring their own step function.
#pragma once

#include <algorithm>
#include <array>
#include <string>
#include <utility>
#include <vector>

#include "common.h"

namespace guided_native {

struct TrieNode {
  uint32_t subtree_end;  // index one past the node's last descendant
  uint32_t tokens_begin;  // the tokens spelling exactly this prefix: node_tokens[begin, end)
  uint32_t tokens_end;
  uint16_t depth;  // 1 for a first byte
  uint8_t byte;  // the prefix's last byte
};

class TokenTrie : public std::enable_shared_from_this<TokenTrie> {
 public:
  // `token_bytes[i]` is token i's text ("" for ids a grammar never produces); `excluded` ids are
  // special or end-of-sequence tokens (never in the trie); `eos` may be sampled at a document end.
  TokenTrie(std::vector<std::string> token_bytes, const std::vector<int64_t>& excluded,
            const std::vector<int64_t>& eos)
      : vocab_size_(static_cast<int32_t>(token_bytes.size())), bytes_(std::move(token_bytes)) {
    if (bytes_.size() > (1u << 30)) invalid("vocabulary too large");
    n_words_ = (vocab_size_ + 31) / 32;
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
      if (prev != nullptr && *prev == s) {  // a duplicate spelling: same node
        node_tokens_.push_back(id);
        nodes_.back().tokens_end = static_cast<uint32_t>(node_tokens_.size());
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
        n.tokens_begin = n.tokens_end = static_cast<uint32_t>(node_tokens_.size());
        path.push_back(static_cast<uint32_t>(nodes_.size()));
        nodes_.push_back(n);
      }
      node_tokens_.push_back(id);
      nodes_.back().tokens_end = static_cast<uint32_t>(node_tokens_.size());
      max_depth_ = std::max<size_t>(max_depth_, s.size());
      prev = &s;
    }
    while (!path.empty()) {
      nodes_[path.back()].subtree_end = static_cast<uint32_t>(nodes_.size());
      path.pop_back();
    }
    if (nodes_.size() >= (1ull << 32) - 1) invalid("vocabulary trie too large");
    first_byte_words_.assign(256 * static_cast<size_t>(n_words_), 0);
    single_byte_.fill(false);
    for (size_t i = 0; i < nodes_.size(); i = nodes_[i].subtree_end) {
      const TrieNode& root_child = nodes_[i];
      uint32_t* w = &first_byte_words_[root_child.byte * static_cast<size_t>(n_words_)];
      for (size_t j = i; j < root_child.subtree_end; ++j)
        for (uint32_t k = nodes_[j].tokens_begin; k < nodes_[j].tokens_end; ++k) set_bit(w, node_tokens_[k]);
      if (root_child.tokens_end > root_child.tokens_begin) single_byte_[root_child.byte] = true;
    }
  }

  int32_t vocab_size() const { return vocab_size_; }
  int32_t n_words() const { return n_words_; }
  size_t max_depth() const { return max_depth_; }
  const std::vector<TrieNode>& nodes() const { return nodes_; }
  const int32_t* node_tokens() const { return node_tokens_.data(); }
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

  void mark(uint32_t* words, const TrieNode& n) const {
    for (uint32_t k = n.tokens_begin; k < n.tokens_end; ++k) set_bit(words, node_tokens_[k]);
  }

  // Walk every token from `start` with `step(state, byte) -> state` (0 is dead), calling
  // `on_token(node, state)` for each live node that ends a token and `on_death(node, parent_state)`
  // where a step dies (the node's subtree is then skipped).
  template <typename State, typename Step, typename OnToken, typename OnDeath>
  void walk(State start, Step&& step, OnToken&& on_token, OnDeath&& on_death, std::vector<State>& scratch) const {
    scratch.resize(max_depth_ + 1);
    State* st = scratch.data();
    st[0] = start;
    const TrieNode* nodes = nodes_.data();
    const size_t n = nodes_.size();
    size_t i = 0;
    while (i < n) {
      const TrieNode& node = nodes[i];
      State parent = st[node.depth - 1];
      State next = step(parent, node.byte);
      if (!next) {
        on_death(node, parent);
        i = node.subtree_end;
        continue;
      }
      st[node.depth] = next;
      if (node.tokens_end != node.tokens_begin) on_token(node, next);
      ++i;
    }
  }

  // The same walk over the subtree of node `root` only, from the state after its byte.
  template <typename State, typename Step, typename OnToken>
  void walk_below(uint32_t root, State after_root, Step&& step, OnToken&& on_token, std::vector<State>& scratch) const {
    scratch.resize(max_depth_ + 1);
    State* st = scratch.data();
    const TrieNode* nodes = nodes_.data();
    st[nodes[root].depth] = after_root;
    size_t i = root + 1;
    const size_t end = nodes[root].subtree_end;
    while (i < end) {
      const TrieNode& node = nodes[i];
      State next = step(st[node.depth - 1], node.byte);
      if (!next) {
        i = node.subtree_end;
        continue;
      }
      st[node.depth] = next;
      if (node.tokens_end != node.tokens_begin) on_token(node, next);
      ++i;
    }
  }

 private:
  int32_t vocab_size_;
  int32_t n_words_ = 0;
  std::vector<std::string> bytes_;
  std::vector<TrieNode> nodes_;
  std::vector<int32_t> node_tokens_;
  std::vector<uint8_t> is_eos_;
  Words eos_words_;
  std::vector<uint32_t> first_byte_words_;
  std::array<bool, 256> single_byte_{};
  size_t max_depth_ = 0;
};

}  // namespace guided_native
