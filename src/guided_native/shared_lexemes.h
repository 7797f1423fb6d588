// Lexer-state data shared by every grammar compiled for one vocabulary.
//
// What a lexer state decides about the tokens (`LexemeInfo`: inside, after-end, seeds) depends only
// on the part of the lexer automaton reachable from it and on where lexemes may end there.  Every
// JSON grammar has the same string, number and whitespace automata, so that data is keyed by a
// canonical form of the reachable sub-automaton (states renumbered breadth first, byte order) and
// reused across grammars: a new schema pays nothing for the inside of its strings.  Keys are
// compared exactly (the canonical encoding is stored), never by hash alone.
#pragma once

#include <memory>
#include <utility>
#include <vector>

#include "common.h"

namespace guided_native {

struct LexemeInfo {
  WordsPtr inside;  // tokens whose bytes all extend the lexeme
  WordsPtr after_end;  // tokens whose first byte ends it (null: none)
  std::vector<std::pair<uint32_t, int32_t>> seeds;  // (trie node, lexer state before its byte)
};

class SharedLexemes {
 public:
  static constexpr size_t kMaxSubStates = 64;  // larger sub-automata are not shared
  static constexpr size_t kCapacity = 8192;  // entries kept per vocabulary

  struct Entry {
    std::vector<uint32_t> encoding;
    LexemeInfo info;  // seeds' states numbered as in the canonical form
  };
  using EntryPtr = std::shared_ptr<const Entry>;

  SharedLexemes() : map_(kCapacity / decltype(map_)::kStripes) {}

  EntryPtr find(uint64_t hash, const std::vector<uint32_t>& encoding) const {
    std::vector<EntryPtr> bucket;
    if (!map_.find(hash, bucket)) return nullptr;
    for (const EntryPtr& e : bucket)
      if (e->encoding == encoding) return e;
    return nullptr;
  }

  void insert(uint64_t hash, EntryPtr entry) {
    // A bucket holds the entries of one hash; a collision (different encodings) is kept beside.
    std::vector<EntryPtr> bucket;
    if (map_.find(hash, bucket)) {
      for (const EntryPtr& e : bucket)
        if (e->encoding == entry->encoding) return;
    }
    bucket.push_back(std::move(entry));
    map_.replace(hash, std::move(bucket));
  }

  static uint64_t hash(const std::vector<uint32_t>& encoding) {
    uint64_t h = 0x243F6A8885A308D3ULL;
    for (uint32_t x : encoding) {
      h ^= x;
      h *= 0x100000001B3ULL;
      h ^= h >> 29;
    }
    return h;
  }

 private:
  StripedMap<uint64_t, std::vector<EntryPtr>> map_;
};

}  // namespace guided_native
