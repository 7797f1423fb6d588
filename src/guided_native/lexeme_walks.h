// What a lexer state alone decides about every token (`LexemeInfo`), computed by trie walks.
//
// A state met for the first time costs a walk of the trie from it: every node for a wide state
// (the inside of a string lets almost every token through), so the walk is the core's hottest
// loop (`TokenTrie::walk_marking` over a `LexTable`).  Most wide states never pay it: a state that
// moves to one state on most bytes (a property name that has left every declared name behind
// moves to "any character of a string") is derived from that *reference* state's data by walking
// only the trie paths where the two still behave differently (`derived`), the port of the Python
// engine's `walk_divergence`.
#pragma once

#include <memory>
#include <utility>
#include <vector>

#include "lexer.h"
#include "shared_lexemes.h"
#include "token_trie.h"

namespace guided_native {

class LexemeWalks {
 public:
  static constexpr int kReferenceMinBytes = 32;  // a usual successor takes at least this many bytes
  static constexpr size_t kDivergenceBudget = 4000;  // diverging live nodes before a full walk is cheaper

  LexemeWalks(const TokenTrie& trie, Lexer& lexer) : trie_(trie), lexer_(lexer) {}

  // The state `lex` moves to on most bytes, if on at least `kReferenceMinBytes` of them; else 0.
  int32_t usual_successor(int32_t lex) const {
    const LexState& st = lexer_.ready(lex);
    int32_t count[256];
    int32_t target[256];
    int n = 0;
    // Rows are runs of equal targets in practice: count by run, then merge equal targets.
    for (int b = 0; b < 256;) {
      const int32_t raw = st.row[b];
      int e = b + 1;
      while (e < 256 && st.row[e] == raw) ++e;
      if (raw) {
        int k = 0;
        while (k < n && target[k] != raw) ++k;
        if (k == n) {
          target[n] = raw;
          count[n++] = 0;
        }
        count[k] += e - b;
      }
      b = e;
    }
    int best = -1;
    for (int k = 0; k < n; ++k)
      if (best < 0 || count[k] > count[best]) best = k;
    if (best < 0 || count[best] < kReferenceMinBytes) return 0;
    return target[best] + st.base;
  }

  // The whole walk from `lex`.
  std::shared_ptr<LexemeInfo> full(int32_t lex) const {
    auto info = std::make_shared<LexemeInfo>();
    auto inside = std::make_shared<Words>(static_cast<size_t>(trie_.n_words()) + TokenTrie::kSpareWords, 0);
    LexTable table(lexer_);
    std::vector<int32_t> scratch;
    std::vector<std::pair<uint32_t, int32_t>>& seeds = info->seeds;
    const TrieNode* nodes = trie_.nodes().data();
    trie_.walk_marking(
        table.local(lex), table, inside->data(),
        [&](uint32_t node, int32_t parent) {
          if (nodes[node].depth >= 2 && table.chosen(parent) >= 0) seeds.emplace_back(node, table.global(parent));
        },
        scratch);
    inside->resize(trie_.n_words());
    info->inside = std::move(inside);
    info->after_end = after_end(lex);
    return info;
  }

  // `lex`'s data derived from `reference`'s (`ref`): where the walks from both reach the same
  // state every token below is decided alike, so only the nodes where they differ are walked.
  // Null when more than `kDivergenceBudget` live nodes differ.
  std::shared_ptr<LexemeInfo> derived(int32_t lex, int32_t reference, const LexemeInfo& ref) const {
    auto inside = std::make_shared<Words>(*ref.inside);
    uint32_t* words = inside->data();
    LexTable table(lexer_);
    std::vector<std::pair<int32_t, int32_t>> st(trie_.max_depth() + 1);
    st[0] = {table.local(lex), table.local(reference)};
    std::vector<uint32_t> visited;  // nodes below the first byte whose seeds are decided here
    std::vector<uint32_t> cuts;  // nodes where `lex` dies and `reference` lives
    std::vector<std::pair<uint32_t, int32_t>> seeds;
    const TrieNode* nodes = trie_.nodes().data();
    const uint32_t n = static_cast<uint32_t>(trie_.nodes().size());
    size_t spent = 0;
    uint32_t i = 0;
    while (i < n) {
      const TrieNode& node = nodes[i];
      const auto [ps, pr] = st[node.depth - 1];
      const int32_t s = table.step(ps, node.byte);
      const int32_t r = table.step(pr, node.byte);
      if (node.depth >= 2) visited.push_back(i);
      if (s == 0) {
        if (node.depth >= 2 && table.chosen(ps) >= 0) seeds.emplace_back(i, table.global(ps));
        if (r != 0) {
          trie_.clear_subtree(words, i);
          cuts.push_back(i);
        }
        i = node.subtree_end;
        continue;
      }
      if (s == r) {  // the walks meet: everything below is decided as from the reference
        i = node.subtree_end;
        continue;
      }
      if (++spent > kDivergenceBudget) return nullptr;
      trie_.mark(words, node);
      st[node.depth] = {s, r};
      ++i;
    }
    // The reference's seeds stand where the walks had met above them: not on a node decided here
    // (visited), nor below a node where `lex` dies.  Both lists are in trie order.
    auto info = std::make_shared<LexemeInfo>();
    info->seeds.reserve(ref.seeds.size() + seeds.size());
    size_t v = 0, c = 0, k = 0;
    for (const auto& seed : ref.seeds) {
      const uint32_t node = seed.first;
      while (v < visited.size() && visited[v] < node) ++v;
      if (v < visited.size() && visited[v] == node) continue;
      while (c < cuts.size() && nodes[cuts[c]].subtree_end <= node) ++c;
      if (c < cuts.size() && cuts[c] < node) continue;
      while (k < seeds.size() && seeds[k].first < node) info->seeds.push_back(seeds[k++]);
      info->seeds.push_back(seed);
    }
    while (k < seeds.size()) info->seeds.push_back(seeds[k++]);
    info->inside = std::move(inside);
    info->after_end = after_end(lex);
    return info;
  }

 private:
  // Tokens whose first byte ends the lexeme of `lex` (null where it cannot end, or no byte ends it).
  WordsPtr after_end(int32_t lex) const {
    if (lexer_.chosen(lex) < 0) return nullptr;
    std::shared_ptr<Words> after;
    const int32_t n_words = trie_.n_words();
    for (int b = 0; b < 256; ++b)
      if (lexer_.next(lex, static_cast<uint8_t>(b)) == 0) {
        if (!after) after = std::make_shared<Words>(n_words, 0);
        const uint32_t* fb = trie_.first_byte_words(b);
        for (int32_t k = 0; k < n_words; ++k) (*after)[k] |= fb[k];
      }
    return after;
  }

  const TokenTrie& trie_;
  Lexer& lexer_;
};

}  // namespace guided_native
