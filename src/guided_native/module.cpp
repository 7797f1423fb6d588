// guided._native: the Python face of the native mask core (thin; `guided.engine.native` wraps it).
//
// Every call that computes masks releases the GIL.  Bitmask arguments are never converted (a
// converted copy would silently swallow the write): a wrong dtype or layout is a TypeError.  Arrays from Python are copied or checked on
// entry (shape, dtype, contiguity, every index), so nothing Python does later can make the core
// read out of bounds.

#include <limits>

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/unique_ptr.h>
#include <nanobind/stl/vector.h>

#include "batch.h"
#include "cfg_engine.h"
#include "counts_engine.h"
#include "dfa_build.h"
#include "dfa_ops.h"
#include "lalr_build.h"
#include "regex_engine.h"
#include "unique_engine.h"
#include "xml_engine.h"

namespace nb = nanobind;
using namespace guided_native;

namespace {
// A `BackgroundFill` with the Python references that keep its matchers alive (released after
// the threads are joined: members are destroyed in reverse order).
struct BackgroundMasks {
  std::vector<nb::object> keep;
  std::unique_ptr<BackgroundFill> fill;
};
}  // namespace

namespace {

PyObject* error_types[4] = {nullptr, nullptr, nullptr, nullptr};

using Bitmask = nb::ndarray<int32_t, nb::ndim<2>, nb::c_contig, nb::device::cpu>;
using Int32s = nb::ndarray<const int32_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using Int64s = nb::ndarray<const int64_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
// Counted terminals (counting.h): (terminal, min, max or -1, cap, DFA states, pairs, base_of,
// counted flags, pair_of, ids), as guided/engine/cfg/counting.py's `Counting.native_tables` makes them.
using CountedArgs = std::vector<std::tuple<int32_t, int64_t, int64_t, int32_t, int32_t, int32_t, Int32s, Int32s, Int32s, Int32s>>;

nb::ndarray<nb::numpy, int32_t, nb::ndim<1>> to_numpy(const Words& w) {
  auto* copy = new std::vector<int32_t>(w.size());
  std::memcpy(copy->data(), w.data(), w.size() * sizeof(uint32_t));
  nb::capsule owner(copy, [](void* p) noexcept { delete static_cast<std::vector<int32_t>*>(p); });
  return nb::ndarray<nb::numpy, int32_t, nb::ndim<1>>(copy->data(), {copy->size()}, owner);
}

using DenseTable = nb::ndarray<const int32_t, nb::ndim<2>, nb::c_contig, nb::device::cpu>;
using Flags = nb::ndarray<const bool, nb::ndim<1>, nb::c_contig, nb::device::cpu>;

void check_automaton(const DenseTable& table, const Flags& accepting) {
  if (table.shape(1) != 256) throw nb::value_error("an automaton table has 256 columns");
  if (accepting.shape(0) != table.shape(0)) throw nb::value_error("one accepting flag per automaton state");
}

// (transitions int32 [rows, 256], accepting bool [rows], initial) as new numpy arrays.
nb::tuple dense_to_python(DenseDfa&& d) {
  auto* table = new std::vector<int32_t>(std::move(d.table));
  auto* acc = new std::vector<uint8_t>(std::move(d.accepting));
  nb::capsule table_owner(table, [](void* p) noexcept { delete static_cast<std::vector<int32_t>*>(p); });
  nb::capsule acc_owner(acc, [](void* p) noexcept { delete static_cast<std::vector<uint8_t>*>(p); });
  const size_t rows = acc->size();
  auto t = nb::ndarray<nb::numpy, int32_t, nb::ndim<2>>(table->data(), {rows, 256}, table_owner);
  auto a = nb::ndarray<nb::numpy, bool, nb::ndim<1>>(reinterpret_cast<bool*>(acc->data()), {rows}, acc_owner);
  return nb::make_tuple(t, a, d.initial);
}

std::vector<int32_t> int32s(const Int32s& a) { return std::vector<int32_t>(a.data(), a.data() + a.shape(0)); }
std::vector<int64_t> int64s(const Int64s& a) { return std::vector<int64_t>(a.data(), a.data() + a.shape(0)); }

}  // namespace

NB_MODULE(_native, m) {
  m.doc() = "The native mask core of guided (see guided.engine.native).";
  // Grammars and tries are held by module-level caches until the interpreter exits, which
  // nanobind would report as leaks.
  nb::set_leak_warnings(false);

  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const Error& e) {
      PyObject* type = error_types[static_cast<int>(e.kind)];
      PyErr_SetString(type ? type : PyExc_ValueError, e.what());
    }
  });
  m.def(
      "set_error_types",
      [](nb::handle invalid_type, nb::handle violation_type, nb::handle limit_type, nb::handle mismatch_type) {
        nb::handle types[4] = {invalid_type, violation_type, limit_type, mismatch_type};
        for (int i = 0; i < 4; ++i) {
          if (!PyExceptionClass_Check(types[i].ptr())) throw nb::type_error("expected exception classes");
          Py_XDECREF(error_types[i]);
          error_types[i] = types[i].inc_ref().ptr();
        }
      },
      "Exception classes raised for malformed input, constraint violations, exceeded limits and "
      "bitmask/vocabulary mismatches.");

  nb::class_<TokenTrie>(m, "TokenTrie")
      .def_prop_ro("vocab_size", &TokenTrie::vocab_size)
      .def_prop_ro("num_nodes", [](const TokenTrie& t) { return t.nodes().size(); })
      .def(
          "subsequence_advances",
          [](const TokenTrie& t, nb::bytes member, int32_t start,
             nb::ndarray<int64_t, nb::ndim<1>, nb::c_contig, nb::device::cpu> out) {
            const size_t size = member.size();
            if (size % 32 != 0) throw nb::value_error("member must hold 32 bytes per position");
            if (size / 32 > static_cast<size_t>(std::numeric_limits<int32_t>::max() / 2))
              throw nb::value_error("subsequence too long");
            const int32_t n = static_cast<int32_t>(size / 32);
            if (start < 0 || start > n) throw nb::value_error("start out of range");
            if (out.shape(0) != static_cast<size_t>(t.vocab_size()))
              throw nb::value_error("out must have one entry per token");
            std::string rows(member.c_str(), size);  // a copy: the walk runs without the GIL
            int64_t* data = out.data();
            nb::gil_scoped_release release;
            std::vector<int32_t> scratch;
            t.subsequence_advances(reinterpret_cast<const uint8_t*>(rows.data()), n, start, data, scratch);
          },
          nb::arg("member"), nb::arg("start"), nb::arg("out").noconvert(),
          "For every token id, the positions of a subsequence of byte sets (32 bytes of bits per "
          "position) its bytes match greedily from `start`, written into `out` (int64, one per token).");
  m.def(
      "token_trie",
      [](nb::list token_bytes, const std::vector<int64_t>& excluded, const std::vector<int64_t>& eos) {
        std::vector<std::string> data;
        data.reserve(token_bytes.size());
        for (nb::handle h : token_bytes) {
          if (!PyBytes_Check(h.ptr())) throw nb::type_error("token_bytes must be a list of bytes");
          data.emplace_back(PyBytes_AS_STRING(h.ptr()), static_cast<size_t>(PyBytes_GET_SIZE(h.ptr())));
        }
        nb::gil_scoped_release release;
        return std::make_shared<TokenTrie>(std::move(data), excluded, eos);
      },
      nb::arg("token_bytes"), nb::arg("excluded"), nb::arg("eos"));

  nb::class_<SharedLexemes>(m, "SharedLexemes");
  m.def("shared_lexemes", [] { return std::make_shared<SharedLexemes>(); },
        "A per-vocabulary cache of lexer-state data, shared by the grammars given it.");

  nb::class_<ByteDfa>(m, "ByteDfa").def_prop_ro("num_states", &ByteDfa::num_states);
  m.def(
      "byte_dfa",
      [](nb::ndarray<const int32_t, nb::ndim<2>, nb::c_contig, nb::device::cpu> transitions,
         nb::ndarray<const bool, nb::ndim<1>, nb::c_contig, nb::device::cpu> accepting, int64_t initial) {
        return std::make_shared<ByteDfa>(transitions.data(), transitions.shape(0), transitions.shape(1),
                                         accepting.data(), accepting.shape(0), initial);
      },
      nb::arg("transitions"), nb::arg("accepting"), nb::arg("initial"));

  nb::class_<Matcher>(m, "Matcher")
      .def(
          "fill_bitmask",
          [](const Matcher& self, Bitmask bitmask, int64_t row) {
            int32_t* data = bitmask.data();
            const int64_t rows = static_cast<int64_t>(bitmask.shape(0)), cols = static_cast<int64_t>(bitmask.shape(1));
            nb::gil_scoped_release release;
            self.fill_row(data, rows, cols, row);
          },
          nb::arg("bitmask").noconvert(), nb::arg("row") = 0)
      .def(
          "words",
          [](const Matcher& self) {
            const Words* w;
            {
              nb::gil_scoped_release release;
              w = &self.words();
            }
            return to_numpy(*w);
          })
      .def("advance", &Matcher::advance, nb::arg("token_id"), nb::call_guard<nb::gil_scoped_release>())
      .def("rollback", &Matcher::rollback, nb::arg("n") = 1)
      .def("accepts_eos", &Matcher::accepts_eos, nb::call_guard<nb::gil_scoped_release>())
      .def("is_finished", &Matcher::is_finished, nb::call_guard<nb::gil_scoped_release>())
      .def("forced_bytes",
           [](const Matcher& self) {
             std::string s;
             {
               nb::gil_scoped_release release;
               s = self.forced_bytes();
             }
             return nb::bytes(s.data(), s.size());
           })
      .def("budget_words",
           [](const Matcher& self, int64_t remaining) {
             Words w;
             {
               nb::gil_scoped_release release;
               w = self.budget_words(remaining);
             }
             return to_numpy(w);
           })
      .def("copy", &Matcher::clone)
      .def_prop_ro("num_tokens", &Matcher::num_tokens);
  nb::class_<RegexMatcher, Matcher>(m, "RegexMatcher").def_prop_ro("state", &RegexMatcher::state);
  nb::class_<CfgMatcher, Matcher>(m, "CfgMatcher")
      .def("closing_lower_bound", &CfgMatcher::closing_lower_bound, nb::call_guard<nb::gil_scoped_release>());

  nb::class_<RegexGrammar>(m, "RegexGrammar")
      .def("matcher", [](std::shared_ptr<RegexGrammar> g) { return std::make_unique<RegexMatcher>(std::move(g)); })
      .def("closing_distance", [](const RegexGrammar& g) { return g.closing_distance(); });
  m.def(
      "regex_grammar",
      [](std::shared_ptr<TokenTrie> trie, std::shared_ptr<ByteDfa> dfa) {
        if (!trie || !dfa) throw nb::type_error("expected a TokenTrie and a ByteDfa");
        return std::make_shared<RegexGrammar>(std::move(trie), std::move(dfa));
      },
      nb::arg("trie"), nb::arg("dfa"));

  nb::class_<CfgGrammar>(m, "CfgGrammar")
      .def("matcher",
           [](std::shared_ptr<CfgGrammar> g) {
             std::unique_ptr<CfgMatcher> out;
             {
               nb::gil_scoped_release release;
               out = std::make_unique<CfgMatcher>(std::move(g));
             }
             return out;
           })
      .def_prop_ro("lexer_states", [](CfgGrammar& g) { return g.lexer().size(); })
      .def_prop_ro("counting", &CfgGrammar::counting, "Has counted terminals (budget masks not native for them).")
      .def_prop_ro("stack_nodes", [](CfgGrammar& g) { return g.parser().num_nodes(); })
      .def_prop_ro("full_walks", &CfgGrammar::full_walks,
                   "Lexer states whose data took a walk of the whole trie.")
      .def_prop_ro("derived_walks", &CfgGrammar::derived_walks,
                   "Lexer states derived from a reference state by walking only where they differ.");
  m.def(
      "cfg_grammar",
      [](std::shared_ptr<TokenTrie> trie, std::shared_ptr<SharedLexemes> shared, std::vector<std::tuple<std::shared_ptr<ByteDfa>, int32_t, bool, int32_t>> terms,
         const std::vector<int32_t>& ignore, bool ignore_repeats, const std::vector<int32_t>& no_ignore_states,
         Int64s action_offsets, Int32s action_symbols, Int32s action_values, Int64s goto_offsets, Int32s goto_symbols,
         Int32s goto_values, Int32s rule_lhs, Int32s rule_len, int32_t n_nonterminals, int32_t start_state,
         int32_t end_state, const std::vector<int32_t>& nesting_states, int32_t max_nesting, int32_t max_lexer_states,
         CountedArgs counted) {
        if (!trie) throw nb::type_error("expected a TokenTrie");
        std::vector<Terminal> terminals;
        for (auto& [dfa, priority, is_string, order] : terms) {
          if (!dfa) throw nb::type_error("terminal without a ByteDfa");
          terminals.push_back(Terminal{dfa, priority, is_string, order});
        }
        ParseTables t;
        t.n_states = static_cast<int32_t>(action_offsets.shape(0)) - 1;
        t.n_terminals = static_cast<int32_t>(terminals.size());
        t.n_nonterminals = n_nonterminals;
        t.action_offsets = int64s(action_offsets);
        t.action_symbols = int32s(action_symbols);
        t.action_values = int32s(action_values);
        t.goto_offsets = int64s(goto_offsets);
        t.goto_symbols = int32s(goto_symbols);
        t.goto_values = int32s(goto_values);
        if (rule_lhs.shape(0) != rule_len.shape(0)) invalid("malformed IR: rule arrays differ in length");
        for (size_t r = 0; r < rule_lhs.shape(0); ++r) t.rules.emplace_back(rule_lhs.data()[r], rule_len.data()[r]);
        t.start_state = start_state;
        t.end_state = end_state;
        t.nesting.assign(std::max(t.n_states, 0), 0);
        for (int32_t s : nesting_states) {
          if (s < 0 || s >= t.n_states) invalid("malformed IR: nesting state out of range");
          t.nesting[s] = 1;
        }
        if (max_nesting < 0) invalid("malformed IR: negative max_nesting");
        t.max_nesting = max_nesting;
        std::vector<std::shared_ptr<const CountedTerm>> counts(terminals.size());
        for (auto& [term, min, max, cap, n_base, n_pairs, base_of, flags, pair_of, ids] : counted) {
          if (term < 0 || term >= static_cast<int32_t>(terminals.size()) || counts[term])
            invalid("malformed counted terminal: index");
          auto c = std::make_shared<CountedTerm>();
          c->min = min;
          c->max = max;
          c->cap = cap;
          c->n_base = n_base;
          c->n_pairs = n_pairs;
          c->base_of = int32s(base_of);
          c->counted = int32s(flags);
          c->pair_of = int32s(pair_of);
          c->ids = int32s(ids);
          counts[term] = std::move(c);
        }
        nb::gil_scoped_release release;
        auto g = std::make_shared<CfgGrammar>(std::move(trie), std::move(shared), std::move(terminals), ignore, ignore_repeats,
                                              no_ignore_states, std::move(t), max_lexer_states);
        g->set_counting(std::move(counts));
        return g;
      },
      nb::arg("trie"), nb::arg("shared").none(), nb::arg("terminals"), nb::arg("ignore"), nb::arg("ignore_repeats"), nb::arg("no_ignore_states"),
      nb::arg("action_offsets"), nb::arg("action_symbols"), nb::arg("action_values"), nb::arg("goto_offsets"),
      nb::arg("goto_symbols"), nb::arg("goto_values"), nb::arg("rule_lhs"), nb::arg("rule_len"),
      nb::arg("n_nonterminals"), nb::arg("start_state"), nb::arg("end_state"), nb::arg("nesting_states"),
      nb::arg("max_nesting"), nb::arg("max_lexer_states"), nb::arg("counted") = CountedArgs{});

  // Grammars parsed by Earley (guided.ir.cfg rule 10, earley.h): cfg_grammar's tables (checked,
  // their rules read) with the rules' right-hand sides; no counted terminals (rule 10 has none).
  nb::class_<EarleyMatcher, Matcher>(m, "EarleyMatcher");
  nb::class_<EarleyGrammar>(m, "EarleyGrammar")
      .def("matcher",
           [](std::shared_ptr<EarleyGrammar> g) {
             std::unique_ptr<EarleyMatcher> out;
             {
               nb::gil_scoped_release release;
               out = std::make_unique<EarleyMatcher>(std::move(g));
             }
             return out;
           })
      .def_prop_ro("lexer_states", [](EarleyGrammar& g) { return g.lexer().size(); })
      .def_prop_ro("stack_nodes", [](EarleyGrammar& g) { return g.parser().num_nodes(); }, "Earley columns interned.")
      .def_prop_ro("full_walks", &EarleyGrammar::full_walks)
      .def_prop_ro("derived_walks", &EarleyGrammar::derived_walks);
  m.def(
      "earley_grammar",
      [](std::shared_ptr<TokenTrie> trie, std::shared_ptr<SharedLexemes> shared,
         std::vector<std::tuple<std::shared_ptr<ByteDfa>, int32_t, bool, int32_t>> terms, const std::vector<int32_t>& ignore,
         bool ignore_repeats, const std::vector<int32_t>& no_ignore_states, Int64s action_offsets, Int32s action_symbols,
         Int32s action_values, Int64s goto_offsets, Int32s goto_symbols, Int32s goto_values, Int32s rule_lhs,
         Int32s rule_len, int32_t n_nonterminals, int32_t start_state, int32_t end_state,
         const std::vector<int32_t>& nesting_states, int32_t max_nesting, int32_t max_lexer_states, Int64s rhs_offsets,
         Int32s rhs_symbols) {
        if (!trie) throw nb::type_error("expected a TokenTrie");
        std::vector<Terminal> terminals;
        for (auto& [dfa, priority, is_string, order] : terms) {
          if (!dfa) throw nb::type_error("terminal without a ByteDfa");
          terminals.push_back(Terminal{dfa, priority, is_string, order});
        }
        ParseTables t;
        t.n_states = static_cast<int32_t>(action_offsets.shape(0)) - 1;
        t.n_terminals = static_cast<int32_t>(terminals.size());
        t.n_nonterminals = n_nonterminals;
        t.action_offsets = int64s(action_offsets);
        t.action_symbols = int32s(action_symbols);
        t.action_values = int32s(action_values);
        t.goto_offsets = int64s(goto_offsets);
        t.goto_symbols = int32s(goto_symbols);
        t.goto_values = int32s(goto_values);
        if (rule_lhs.shape(0) != rule_len.shape(0)) invalid("malformed IR: rule arrays differ in length");
        for (size_t r = 0; r < rule_lhs.shape(0); ++r) t.rules.emplace_back(rule_lhs.data()[r], rule_len.data()[r]);
        t.start_state = start_state;
        t.end_state = end_state;
        t.nesting.assign(std::max(t.n_states, 0), 0);
        if (!nesting_states.empty() || max_nesting != 0) invalid("malformed IR: an Earley grammar takes no nesting bound");
        EarleyRules rules{int64s(rhs_offsets), int32s(rhs_symbols)};
        nb::gil_scoped_release release;
        return std::make_shared<EarleyGrammar>(std::move(trie), std::move(shared), std::move(terminals), ignore,
                                               ignore_repeats, no_ignore_states, std::move(t), max_lexer_states,
                                               std::move(rules));
      },
      nb::arg("trie"), nb::arg("shared").none(), nb::arg("terminals"), nb::arg("ignore"), nb::arg("ignore_repeats"),
      nb::arg("no_ignore_states"), nb::arg("action_offsets"), nb::arg("action_symbols"), nb::arg("action_values"),
      nb::arg("goto_offsets"), nb::arg("goto_symbols"), nb::arg("goto_values"), nb::arg("rule_lhs"),
      nb::arg("rule_len"), nb::arg("n_nonterminals"), nb::arg("start_state"), nb::arg("end_state"),
      nb::arg("nesting_states"), nb::arg("max_nesting"), nb::arg("max_lexer_states"), nb::arg("rhs_offsets"),
      nb::arg("rhs_symbols"));

  nb::class_<CountsMatcher, Matcher>(m, "CountsMatcher");
  nb::class_<CountsGrammar>(m, "CountsGrammar").def("matcher", [](std::shared_ptr<CountsGrammar> g) {
    std::unique_ptr<CountsMatcher> out;
    {
      nb::gil_scoped_release release;
      out = std::make_unique<CountsMatcher>(std::move(g));
    }
    return out;
  });
  m.def(
      "counts_grammar",
      [](std::shared_ptr<CfgGrammar> cfg, const std::vector<std::tuple<int32_t, int64_t, int64_t>>& bounds,
         const std::vector<int32_t>& item_rules, const std::vector<int32_t>& separator_states,
         const std::vector<int32_t>& close_states) {
        if (!cfg) throw nb::type_error("expected a CfgGrammar");
        std::vector<ItemBounds> rows;
        for (const auto& [state, min, max] : bounds) rows.push_back(ItemBounds{state, min, max});
        nb::gil_scoped_release release;
        return std::make_shared<CountsGrammar>(std::move(cfg), rows, item_rules, separator_states, close_states);
      },
      nb::arg("cfg"), nb::arg("bounds"), nb::arg("item_rules"), nb::arg("separator_states"), nb::arg("close_states"),
      "Item counts (guided.ir.ItemCounts) over a CfgGrammar: bounds are (open state, min, max or -1) rows.");

  nb::class_<XmlRisk>(m, "XmlRisk");
  m.def(
      "xml_risk",
      [](std::shared_ptr<TokenTrie> trie, const std::vector<int32_t>& name_bytes) {
        if (!trie) throw nb::type_error("expected a TokenTrie");
        nb::gil_scoped_release release;
        return std::make_shared<XmlRisk>(std::move(trie), name_bytes);
      },
      nb::arg("trie"), nb::arg("name_bytes"),
      "Per-vocabulary classes of the tokens that may reach an XML name check (share it per vocabulary).");
  nb::class_<XmlMatcher, Matcher>(m, "XmlMatcher");
  nb::class_<XmlGrammar>(m, "XmlGrammar")
      .def("matcher", [](std::shared_ptr<XmlGrammar> g) {
        std::unique_ptr<XmlMatcher> out;
        {
          nb::gil_scoped_release release;
          out = std::make_unique<XmlMatcher>(std::move(g));
        }
        return out;
      });
  m.def(
      "xml_grammar",
      [](std::shared_ptr<CfgGrammar> cfg, std::shared_ptr<XmlRisk> risk, int32_t name, int32_t open_start,
         int32_t open_end, int32_t empty_end, int32_t close_start, bool unique_attributes) {
        if (!cfg || !risk) throw nb::type_error("expected a CfgGrammar and an XmlRisk");
        return std::make_shared<XmlGrammar>(std::move(cfg), std::move(risk),
                                            XmlTerminals{name, open_start, open_end, empty_end, close_start,
                                                         unique_attributes});
      },
      nb::arg("cfg"), nb::arg("risk"), nb::arg("name"), nb::arg("open_start"), nb::arg("open_end"),
      nb::arg("empty_end"), nb::arg("close_start"), nb::arg("unique_attributes"));

  nb::class_<UniqueMatcher, Matcher>(m, "UniqueMatcher");
  nb::class_<UniqueGrammar>(m, "UniqueGrammar").def("matcher", [](std::shared_ptr<UniqueGrammar> g) {
    std::unique_ptr<UniqueMatcher> out;
    {
      nb::gil_scoped_release release;
      out = std::make_unique<UniqueMatcher>(std::move(g));
    }
    return out;
  });
  m.def(
      "unique_grammar",
      [](std::shared_ptr<CfgGrammar> cfg, const std::vector<int32_t>& open_states, const std::vector<int32_t>& item_rules,
         int64_t completions) {
        if (!cfg) throw nb::type_error("expected a CfgGrammar");
        nb::gil_scoped_release release;
        return std::make_shared<UniqueGrammar>(std::move(cfg), open_states, item_rules, completions);
      },
      nb::arg("cfg"), nb::arg("open_states"), nb::arg("item_rules"), nb::arg("completions"),
      "Unique items (guided.ir.UniqueItems) over a CfgGrammar; `completions` is UniqueItems.COMPLETIONS.");
  m.def(
      "canonical_value",
      [](nb::bytes text) {
        const std::string in(text.c_str(), text.size());
        std::string out;
        {
          nb::gil_scoped_release release;
          out = canonical_value(in);
        }
        return nb::bytes(out.data(), out.size());
      },
      nb::arg("text"),
      "The core's canonical encoding of a JSON text: equal for two texts iff guided.ir.canonical_json's values are.");

  m.def(
      "fill_bitmasks",
      [](nb::sequence matchers, Bitmask bitmask, int threads) {
        std::vector<nb::object> keep;  // hold every matcher while the GIL is released
        std::vector<const Matcher*> ptrs;
        for (nb::handle h : matchers) {
          keep.push_back(nb::borrow(h));
          ptrs.push_back(nb::cast<const Matcher*>(h));
          if (ptrs.back() == nullptr) throw nb::type_error("fill_bitmasks: None is not a matcher");
        }
        int32_t* data = bitmask.data();
        const int64_t rows = static_cast<int64_t>(bitmask.shape(0)), cols = static_cast<int64_t>(bitmask.shape(1));
        nb::gil_scoped_release release;
        fill_rows(ptrs, data, rows, cols, threads);
      },
      nb::arg("matchers"), nb::arg("bitmask").noconvert(), nb::arg("threads") = 1);
  nb::class_<BackgroundMasks>(m, "BackgroundFill")
      .def("join", [](BackgroundMasks& b) {
        nb::gil_scoped_release release;
        return b.fill->join();
      });
  m.def(
      "fill_in_background",
      [](nb::sequence matchers, int threads) {
        auto out = std::make_unique<BackgroundMasks>();
        std::vector<const Matcher*> ptrs;
        for (nb::handle h : matchers) {
          out->keep.push_back(nb::borrow(h));
          ptrs.push_back(nb::cast<const Matcher*>(h));
          if (ptrs.back() == nullptr) throw nb::type_error("fill_in_background: None is not a matcher");
        }
        if (threads < 1) throw nb::value_error("fill_in_background: threads must be at least 1");
        out->fill = std::make_unique<BackgroundFill>(std::move(ptrs), threads);
        return out;
      },
      nb::arg("matchers"), nb::arg("threads") = 1,
      "Start computing the matchers' masks in background native threads; join() waits (the matchers "
      "must be left alone until then).");
  m.def(
      "dfa_trim",
      [](DenseTable table, Flags accepting, int64_t initial) {
        check_automaton(table, accepting);
        return dense_to_python(dfa_trim(table.data(), reinterpret_cast<const uint8_t*>(accepting.data()),
                                        static_cast<int64_t>(table.shape(0)), initial));
      },
      nb::arg("transitions"), nb::arg("accepting"), nb::arg("initial"),
      "guided.ir.dfa.trim's result as (transitions, accepting, initial).");
  m.def(
      "dfa_product",
      [](DenseTable ta, Flags acc_a, int64_t init_a, DenseTable tb, Flags acc_b, int64_t init_b, int accept,
         bool keep_dead_b, int64_t max_states, const std::string& what) {
        check_automaton(ta, acc_a);
        check_automaton(tb, acc_b);
        if (accept != 0 && accept != 1) throw nb::value_error("accept is 0 (both) or 1 (first, not second)");
        if (static_cast<double>(ta.shape(0)) * static_cast<double>(tb.shape(0)) > 9e18)
          throw nb::value_error("product too large to number");
        return dense_to_python(dfa_product(ta.data(), reinterpret_cast<const uint8_t*>(acc_a.data()),
                                           static_cast<int64_t>(ta.shape(0)), init_a, tb.data(),
                                           reinterpret_cast<const uint8_t*>(acc_b.data()),
                                           static_cast<int64_t>(tb.shape(0)), init_b,
                                           static_cast<ProductAccept>(accept), keep_dead_b, max_states, what));
      },
      nb::arg("ta"), nb::arg("acc_a"), nb::arg("init_a"), nb::arg("tb"), nb::arg("acc_b"), nb::arg("init_b"),
      nb::arg("accept"), nb::arg("keep_dead_b"), nb::arg("max_states"), nb::arg("what"),
      "The untrimmed reachable product of guided.ir.dfa_ops._product as (transitions, accepting, 1).");
  m.def(
      "nfa_determinize",
      [](std::vector<std::vector<std::tuple<int64_t, int64_t, int64_t>>> ranges,
         std::vector<std::vector<int64_t>> epsilons, std::vector<int64_t> accepting, int64_t start,
         int64_t max_states, double seconds_left, const std::string& what, const std::string& too_slow) {
        RangeNfa nfa{std::move(ranges), std::move(epsilons), std::move(accepting), start};
        DenseDfa out;
        {
          nb::gil_scoped_release release;  // the NFA is a copy
          out = nfa_determinize(nfa, max_states, seconds_left, what, too_slow);
        }
        return dense_to_python(std::move(out));
      },
      nb::arg("ranges"), nb::arg("epsilons"), nb::arg("accepting"), nb::arg("start"), nb::arg("max_states"),
      nb::arg("seconds_left"), nb::arg("what"), nb::arg("too_slow"),
      "guided.ir.dfa.determinize's subset construction (a ByteNFA's ranges, epsilons, accepting states as a "
      "list and start), untrimmed, as (transitions, accepting, 1).");
  m.def(
      "dfa_minimize",
      [](DenseTable table, Flags accepting, int64_t initial, int64_t max_rounds, double seconds_left) -> nb::object {
        check_automaton(table, accepting);
        // The GIL stays held: the table is Python's, read in place.
        Minimized out = dfa_minimize(table.data(), reinterpret_cast<const uint8_t*>(accepting.data()),
                                     static_cast<int64_t>(table.shape(0)), initial, max_rounds, seconds_left);
        if (!out.changed) return nb::none();
        return dense_to_python(std::move(out.dfa));
      },
      nb::arg("transitions"), nb::arg("accepting"), nb::arg("initial"), nb::arg("max_rounds"),
      nb::arg("seconds_left"),
      "guided.ir.dfa.minimize's result as (transitions, accepting, 1), or None where it returns the automaton "
      "unchanged.");
  m.def(
      "lalr_build",
      [](std::vector<int64_t> lhs, std::vector<std::vector<int64_t>> rhs, int64_t n_nt, int64_t bias, int64_t start,
         std::vector<int64_t> priority, nb::object check) {
        LalrGrammar g{std::move(lhs), std::move(rhs), n_nt, bias, start, std::move(priority)};
        LalrTables t;
        const bool has_check = !check.is_none();
        std::function<void()> call_back = [&check, has_check] {
          if (!has_check) return;
          nb::gil_scoped_acquire acquire;
          check();  // a Python exception stops the construction and reaches the caller as it is
        };
        {
          nb::gil_scoped_release release;  // the rules are copies
          t = lalr_build(g, call_back);
        }
        auto dicts = [](const auto& rows) {
          nb::list out;
          for (const auto& row : rows) {
            nb::dict d;
            for (const auto& [k, v] : row) d[nb::int_(k)] = nb::int_(v);
            out.append(d);
          }
          return nb::tuple(out);
        };
        nb::list kernels;
        for (const auto& kernel : t.kernels) {
          nb::list items;
          for (const auto& [r, dot] : kernel) items.append(nb::make_tuple(r, dot));
          kernels.append(nb::tuple(items));
        }
        nb::list conflicts;
        for (const auto& [p, la, rules] : t.conflicts) {
          nb::list rs;
          for (int32_t r : rules) rs.append(r);
          conflicts.append(nb::make_tuple(p, la, nb::tuple(rs)));
        }
        nb::list collisions;
        for (const auto& [p, la] : t.collisions) collisions.append(nb::make_tuple(p, la));
        return nb::make_tuple(dicts(t.actions), dicts(t.gotos), nb::tuple(kernels), nb::tuple(conflicts),
                              nb::tuple(collisions), t.end_state);
      },
      nb::arg("lhs"), nb::arg("rhs"), nb::arg("n_nt"), nb::arg("bias"), nb::arg("start"), nb::arg("priority"),
      nb::arg("check").none(),
      "guided.ir.lalr.lalr_tables' construction on integer rules (lhs, rhs with terminal t as t and nonterminal A "
      "as bias + A, the start nonterminal, priorities or [], check called now and then or None) as (actions, gotos, "
      "kernels, conflicts, collisions, end_state).");
  m.def("closing_limits", [] {
    nb::dict d;  // tests/test_native_closing.py: must be guided.engine.tuning's
    d["MANDATORY_MAX_SYMBOLS"] = ClosingLimits::kMandatoryMaxSymbols;
    d["MANDATORY_MAX_STATES"] = ClosingLimits::kMandatoryMaxStates;
    d["CLOSER_SEARCH_LIMIT"] = ClosingLimits::kCloserSearchLimit;
    d["REQUIRED_SEARCH_STACKS"] = ClosingLimits::kRequiredSearchStacks;
    d["CLOSING_REFINE_TOKENS"] = ClosingLimits::kRefineTokens;
    d["CLOSING_REFINE_ADVANCING"] = ClosingLimits::kRefineAdvancing;
    d["CLOSING_SEARCH_TOKENS"] = ClosingLimits::kSearchTokens;
    d["ADVANCES_MEMO"] = SubsequenceCover::kAdvancesMemo;
    return d;
  });
  m.def("hardware_threads", [] { return std::thread::hardware_concurrency(); });
}
