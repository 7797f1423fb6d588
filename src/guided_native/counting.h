// Counted terminals (guided.ir.Count, rule 11): a terminal's lexemes must take between `min` and
// `max` counted transitions (a JSON string's characters).  As in the Python engine
// (guided/engine/cfg/counting.py, which builds these tables): the lexer sees each counted
// terminal as its *capped expansion*, states (DFA state, need, room) with the distances to the
// bounds capped at `cap` (more than a token can carry), and a configuration keeps the exact count
// of its pending lexeme beside the lexer state; each byte's successor is put back on the row of
// the exact capped distances.  Masks are computed from the expansion's own moves, exact for one
// token, and cached per capped state, so positions far from both bounds share them.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common.h"

namespace guided_native {

struct CountedTerm {
  int64_t min = 0;
  int64_t max = -1;  // -1: no maximum
  int32_t cap = 0;
  int32_t n_base = 0;  // states of the terminal's own DFA
  int32_t n_pairs = 0;
  std::vector<int32_t> base_of;  // expanded state -> DFA state
  std::vector<int32_t> counted;  // [DFA state * 256 + byte]: 1 where the transition counts
  std::vector<int32_t> pair_of;  // [need * (cap + 1) + room] -> pair index, or -1
  std::vector<int32_t> ids;      // [DFA state * (n_pairs + 1) + pair] -> expanded state (0: dead)

  // The expanded state of expanded state `e`'s DFA state at the exact count `n` (0: dead).
  int32_t at(int32_t e, int64_t n) const {
    const int64_t need = std::min<int64_t>(std::max<int64_t>(min - n, 0), cap);
    int64_t room = cap;
    if (max >= 0) {
      room = std::min<int64_t>(max - n, cap);
      if (room < 0) return 0;
    }
    const int32_t p = pair_of[static_cast<size_t>(need * (cap + 1) + room)];
    if (p < 0) return 0;
    return ids[static_cast<size_t>(base_of[e]) * (n_pairs + 1) + p];
  }
  int32_t counts(int32_t e, uint8_t b) const { return counted[static_cast<size_t>(base_of[e]) * 256 + b]; }

  // Every index in range (`n_expanded`: states of the expansion the lexer reads), else invalid().
  void check(int32_t n_expanded) const {
    const int64_t side = static_cast<int64_t>(cap) + 1;
    if (cap < 1 || min < 0 || max < -1 || (max >= 0 && max < min) || n_base < 1 || n_pairs < 1 ||
        static_cast<int64_t>(base_of.size()) != n_expanded ||
        static_cast<int64_t>(counted.size()) != static_cast<int64_t>(n_base) * 256 ||
        static_cast<int64_t>(pair_of.size()) != side * side ||
        static_cast<int64_t>(ids.size()) != static_cast<int64_t>(n_base) * (n_pairs + 1))
      invalid("malformed counted terminal: table sizes");
    for (int32_t v : base_of)
      if (v < 0 || v >= n_base) invalid("malformed counted terminal: base state out of range");
    for (int32_t v : counted)
      if (v != 0 && v != 1) invalid("malformed counted terminal: counted must be 0 or 1");
    for (int32_t v : pair_of)
      if (v < -1 || v >= n_pairs) invalid("malformed counted terminal: pair out of range");
    for (int32_t v : ids)
      if (v < 0 || v >= n_expanded) invalid("malformed counted terminal: expanded state out of range");
  }
};

}  // namespace guided_native
