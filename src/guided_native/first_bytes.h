// The tokens that may start a lexeme of given terminals somewhere inside them: the checks beside
// the CFG core (item counts, unique items) re-walk only such tokens where a check needs one.
#pragma once

#include <vector>

#include "cfg_engine.h"

namespace guided_native {

// Packed: the text tokens holding a byte that a lexeme of one of `terminals` (bits per terminal)
// may start with.
inline Words tokens_holding_first_bytes(CfgGrammar& cfg, const std::vector<uint64_t>& terminals) {
  Lexer& lexer = cfg.lexer();
  bool first[256] = {};
  for (int32_t t = 0; t < lexer.num_terminals(); ++t) {
    if (!((terminals[t >> 6] >> (t & 63)) & 1u)) continue;
    const ByteDfa& dfa = *lexer.terminal(t).dfa;
    if (dfa.initial() == 0) continue;
    for (int b = 0; b < 256; ++b) first[b] = first[b] || dfa.next(dfa.initial(), static_cast<uint8_t>(b)) != 0;
  }
  const TokenTrie& trie = cfg.trie();
  Words out(static_cast<size_t>(trie.n_words()), 0);
  const std::vector<TrieNode>& nodes = trie.nodes();
  for (uint32_t i = 0; i < nodes.size(); ++i)
    trie.for_each_token(i, [&](int32_t id) {
      for (unsigned char b : trie.bytes(id))
        if (first[b]) {
          set_bit(out.data(), id);
          break;
        }
    });
  return out;
}

}  // namespace guided_native
