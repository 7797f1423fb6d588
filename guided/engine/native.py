"""The native mask core (`guided._native`, C++) behind the `Matcher` protocol.

The compiled core runs the same ideas as the Python engines (`guided.engine.automaton`,
`guided.engine.cfg`) with the same semantics, mask for mask; the Python engines stay as the
reference the differential tests hold it to.  This module is the thin layer between the two: it
lowers the IR into flat arrays (`lower_cfg`, the one place that reads `CfgIR`), caches the
per-vocabulary token trie and the per-DFA copies the core validates once, and maps the core's
errors to `guided.errors`.

Every call into the core that computes masks releases the GIL; `fill_bitmasks` fills the rows of
a batch in native threads.  Compiled grammars and the per-vocabulary trie are shared between
threads: their caches are striped maps and append-only tables published with release stores
(never one global lock).  A matcher object belongs to one thread at a time.

Rebuild the extension after changing C++ with ``make native`` (or ``pip install -e .``).

>>> import guided
>>> vocab = guided.Vocabulary.from_token_bytes([b"a", b"b", b"ab", b"<eos>"], eos_token_ids=[3])
>>> m = guided.compile(guided.Regex("ab"), vocab, engine="native").matcher() if available() else None
>>> m is None or m.mask().tolist() == [True, False, True, False]
True
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from guided.engine.bitmask import unpack
from guided.engine.matcher import count_of, token_index
from guided.errors import ConstraintViolation, GuidedError, LimitExceeded, SpecError, TokenizerMismatch, UsageError
from guided.ir import ByteDFA, CfgIR
from guided.ir.dfa import lend_kernels
from guided.vocab import Vocabulary

if TYPE_CHECKING:
    from guided.engine.automaton import AutomatonGrammar
    from guided.engine.cfg import CfgGrammar
    from guided.engine.counts import CountsGrammar
    from guided.engine.unique import UniqueGrammar
    from guided.engine.xml import XmlGrammar

FINISHED = -1  # `guided.engine.automaton.FINISHED`: the regex state after EOS



def _load():
    """The extension module; ``$GUIDED_NATIVE_PATH`` names another build of it (the sanitizer build)."""
    path = os.environ.get("GUIDED_NATIVE_PATH")
    if path:
        import importlib.util
        import sys

        spec = importlib.util.spec_from_file_location("guided._native", path)
        if spec is None or spec.loader is None:
            raise ImportError(f"GUIDED_NATIVE_PATH={path!r} is not an extension module")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules["guided._native"] = module
        return module
    import importlib

    try:
        return importlib.import_module("guided._native")
    except ImportError:  # built with GUIDED_NATIVE=OFF, or no compiler at install time
        return None


_native = _load()
if _native is not None:
    _native.set_error_types(SpecError, ConstraintViolation, LimitExceeded, TokenizerMismatch)
    # The compile path's automaton operations (guided.ir.dfa) run in the core too.
    if os.environ.get("GUIDED_IR_KERNELS", "native") != "numpy" and hasattr(_native, "dfa_trim"):
        lend_kernels(trim=_native.dfa_trim, product=_native.dfa_product,
                     determinize=getattr(_native, "nfa_determinize", None), minimize=getattr(_native, "dfa_minimize", None),
                     lalr=getattr(_native, "lalr_build", None))

__all__ = ["NativeCfgGrammar", "NativeCountsGrammar", "NativeMatcher", "NativeRegexGrammar", "NativeUniqueGrammar",
           "NativeXmlGrammar", "available", "fill_bitmasks", "lower_cfg"]


def available() -> bool:
    """Was the native core built and can it be imported?"""
    return _native is not None


def _require() -> Any:
    if _native is None:
        raise GuidedError("the native engine is not built in this installation (reinstall with a C++17 compiler, "
                          "or use engine='python')")
    return _native


_lock = threading.Lock()
_tries: "weakref.WeakKeyDictionary[Vocabulary, Any]" = weakref.WeakKeyDictionary()
_dfas: "weakref.WeakKeyDictionary[ByteDFA, Any]" = weakref.WeakKeyDictionary()
_xml_risks: "weakref.WeakKeyDictionary[Vocabulary, dict[frozenset[int], Any]]" = weakref.WeakKeyDictionary()


def native_trie(vocab: Vocabulary):
    """The core's token trie of ``vocab`` (built once per vocabulary, shared by its grammars)."""
    return _per_vocabulary(vocab)[0]


def native_shared(vocab: Vocabulary):
    """The core's cache of lexer-state data shared by every grammar of ``vocab``."""
    return _per_vocabulary(vocab)[1]


def _per_vocabulary(vocab: Vocabulary):
    with _lock:
        found = _tries.get(vocab)
    if found is None:
        core = _require()
        excluded = sorted(vocab.special_token_ids | vocab.eos_token_ids)
        found = (core.token_trie(list(vocab.token_bytes), excluded, sorted(vocab.eos_token_ids)),
                 core.shared_lexemes())
        with _lock:
            found = _tries.setdefault(vocab, found)
    return found


def _lend_walk(vocab: Vocabulary) -> None:
    """Budget masks (computed by the Python engine, see `NativeMatcher.budget_mask`) walk the
    vocabulary's trie for their token bounds: lend them the core's walk."""
    from guided.engine.closing import lend_walk
    from guided.engine.token_table import TokenTable

    lend_walk(TokenTable.of(vocab), native_trie(vocab).subsequence_advances)


def native_xml_risk(vocab: Vocabulary, name_bytes: frozenset[int]):
    """The core's classes of the tokens that may reach an XML name check (once per vocabulary and name bytes)."""
    with _lock:
        found = _xml_risks.get(vocab, {}).get(name_bytes)
    if found is None:
        found = _require().xml_risk(native_trie(vocab), sorted(name_bytes))
        with _lock:
            found = _xml_risks.setdefault(vocab, {}).setdefault(name_bytes, found)
    return found


def native_dfa(dfa: ByteDFA):
    """The core's validated copy of a byte DFA (once per DFA object, shared by every grammar using it)."""
    with _lock:
        found = _dfas.get(dfa)
    if found is None:
        transitions = np.ascontiguousarray(dfa.transitions, dtype=np.int32)
        accepting = np.ascontiguousarray(dfa.accepting, dtype=bool)
        found = _require().byte_dfa(transitions, accepting, int(dfa.initial))
        with _lock:
            found = _dfas.setdefault(dfa, found)
    return found


def lower_cfg(ir: CfgIR) -> dict[str, Any]:
    """`CfgIR` as the arguments `guided._native.cfg_grammar` takes: the IR's own flat tables
    (`CfgIR.flat`: CSR rows, END as terminal id ``len(terminals)``) and its scalars.

    The only place that reads the IR's layout, so a change of the IR is adapted here.  A grammar
    parsed by Earley (`guided.ir.cfg` rule 10) also gets its rules' right-hand sides, CSR
    (``rhs_offsets``/``rhs_symbols``, as `guided.ir.serialize` stores them), for
    `guided._native.earley_grammar`, and no counted terminals (rule 10 has none).
    """
    n_terms = len(ir.terminals)
    for t in ir.ignore:
        if not 0 <= t < n_terms:
            raise SpecError(f"malformed IR: ignored terminal {t} out of range")
    return dict(
        terminals=[(native_dfa(t.dfa), int(t.priority), bool(t.is_string), int(t.order)) for t in ir.terminals],
        ignore=sorted(ir.ignore),
        ignore_repeats=bool(ir.ignore_repeats),
        no_ignore_states=sorted(ir.no_ignore_states),
        **ir.flat.arrays(),
        n_nonterminals=len(ir.nonterminals),
        start_state=int(ir.start_state),
        end_state=int(ir.end_state),
        nesting_states=sorted(ir.nesting_states),
        max_nesting=int(ir.max_nesting),
        **(_earley_rules(ir) if ir.earley else {"counted": []}),
    )


def _earley_rules(ir: CfgIR) -> dict[str, np.ndarray]:
    """Rule 10's right-hand sides as CSR arrays (the core checks every length and symbol)."""
    try:
        offsets = np.cumsum([0] + [len(rhs) for rhs in ir.rule_rhs], dtype=np.int64)
        symbols = np.array([s for rhs in ir.rule_rhs for s in rhs], dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as e:
        raise SpecError(f"malformed IR: rule_rhs is not rows of integers ({e})") from None
    if symbols.size and not (-(2 ** 31) <= int(symbols.min()) and int(symbols.max()) < 2 ** 31):
        raise SpecError("malformed IR: rule_rhs has a symbol out of range")
    return {"rhs_offsets": offsets, "rhs_symbols": symbols.astype(np.int32)}


class NativeRegexGrammar:
    """A `guided.fsm.ByteDFA` compiled against a vocabulary by the native core."""

    engine = "native"

    def __init__(self, dfa: ByteDFA, vocab: Vocabulary, source: str = ""):
        self.dfa = dfa
        self.vocab = vocab
        self.source = source
        self._native = _require().regex_grammar(native_trie(vocab), native_dfa(dfa))
        self._closing: np.ndarray | None = None
        self._reference: AutomatonGrammar | None = None

    def closing_distances(self) -> np.ndarray:
        """Per DFA state, tokens enough to reach an accepting state over single-byte tokens."""
        if self._closing is None:
            self._closing = np.array(self._native.closing_distance(), dtype=np.int64)
        return self._closing

    def reference(self) -> AutomatonGrammar:
        """The Python engine on the same DFA (same state numbers), for what the core does not
        compute yet: the token bounds of budget-aware closing (`guided.engine.closing`)."""
        if self._reference is None:
            from guided.engine.automaton import AutomatonGrammar

            self._reference = AutomatonGrammar(self.dfa, self.vocab, self.source)
            _lend_walk(self.vocab)
        return self._reference

    def __repr__(self) -> str:
        return f"NativeRegexGrammar({self.source!r}, states={self.dfa.num_states}, vocab={self.vocab.size})"

    def matcher(self) -> "NativeMatcher":
        return NativeMatcher(self, self._native.matcher())


def _core_cfg(ir: CfgIR, vocab: Vocabulary, max_lexer_states: int):
    """The core's `CfgGrammar` of ``ir``'s tables (its item counts, if any, left to the caller), or
    its `EarleyGrammar` for a grammar parsed by Earley (`guided.ir.cfg` rule 10)."""
    if ir.earley and any(t.count is not None for t in ir.terminals):
        raise SpecError("malformed IR: a grammar parsed by Earley (guided.ir.cfg rule 10) has no counted terminals")
    if any(t.count is not None for t in ir.terminals):
        # Counted terminals (`guided.ir.Count`): the core reads their capped expansions and the
        # tables that put a configuration back on its exact count (`guided.engine.cfg.counting`).
        from guided.engine.cfg.counting import Counting

        counting = Counting(ir, vocab)
        args = lower_cfg(counting.ir)
        args["counted"] = counting.native_tables()
    else:
        args = lower_cfg(ir)
    if ir.earley:  # rule 10: the core's Earley table stands where its LR stacks stand
        return _require().earley_grammar(native_trie(vocab), native_shared(vocab), max_lexer_states=max_lexer_states,
                                         **args)
    return _require().cfg_grammar(native_trie(vocab), native_shared(vocab), max_lexer_states=max_lexer_states, **args)


class NativeCfgGrammar:
    """A `CfgIR` compiled against a vocabulary by the native core."""

    engine = "native"

    def __init__(self, ir: CfgIR, vocab: Vocabulary, *, max_lexer_states: int = 200_000):
        if ir.item_counts is not None:
            # Its tables alone accept arrays of any length: refuse rather than mask a superset.
            raise SpecError("this IR has item counts (guided.ir.ItemCounts): compile it with NativeCountsGrammar "
                            "(guided.compile does so by itself)")
        self.ir = ir
        self.vocab = vocab
        self._max_lexer_states = max_lexer_states
        self._native = _core_cfg(ir, vocab, max_lexer_states)
        self._reference: CfgGrammar | None = None

    def __repr__(self) -> str:
        parser = "earley" if self.ir.earley else f"lr_states={self.ir.num_states}"
        return (f"NativeCfgGrammar({self.ir.source!r}, {parser}, "
                f"lexer_states={self._native.lexer_states} built, vocab={self.vocab.size})")

    def matcher(self) -> "NativeMatcher":
        if self.ir.earley:
            self._restart_when_full()
        return NativeMatcher(self, self._native.matcher())

    def _restart_when_full(self) -> None:
        """The core keeps every Earley column while its grammar lives (matchers and later columns
        point to them), and columns are rarely shared between texts (origins differ): past
        `INTERN_LIMIT` columns, new matchers get a fresh core grammar, as the Python engine restarts
        its table (`guided.engine.cfg.earley`).  That costs cache misses only (the lexer data shared
        per vocabulary stays), and the old core grammar is freed with its last matcher."""
        from guided.engine import tuning

        if self._native.stack_nodes >= tuning.INTERN_LIMIT:
            self._native = _core_cfg(self.ir, self.vocab, self._max_lexer_states)

    def walk_stats(self) -> dict[str, int]:
        """Lexer states met so far whose data took a walk of the whole trie (``full``) or only of the
        paths where they differ from a reference state (``derived``)."""
        return {"full": self._native.full_walks, "derived": self._native.derived_walks}

    def reference(self):
        """The Python engine on the same IR (for what the core does not compute yet: the verified
        completions, and budget masks where terminals are counted)."""
        if self._reference is None:
            from guided.engine.cfg import CfgGrammar

            self._reference = CfgGrammar(self.ir, self.vocab)
            _lend_walk(self.vocab)
        return self._reference


class NativeCountsGrammar:
    """A `CfgIR` with item counts (`guided.ir.ItemCounts`, rule 12) compiled by the native core."""

    engine = "native"

    def __init__(self, ir: CfgIR, vocab: Vocabulary, *, max_lexer_states: int = 200_000):
        counts = ir.item_counts
        if counts is None:
            raise SpecError(f"NativeCountsGrammar needs a CfgIR with item_counts ({ir.source[:80]!r} has none)")
        try:  # the core checks every index; here only that the rows are numbers
            bounds = [(int(q), int(lo), -1 if hi is None else int(hi)) for q, lo, hi in counts.bounds]
            sets = [sorted(int(x) for x in s) for s in (counts.item_rules, counts.separator_states,
                                                         counts.close_states)]
        except (TypeError, ValueError) as e:
            raise SpecError(f"malformed IR: item_counts is not rows of integers ({e})") from None
        if any(not -(2 ** 31) <= x < 2 ** 62 for row in bounds for x in row) or \
                any(not -(2 ** 31) <= x < 2 ** 31 for s in sets for x in s):
            raise SpecError("malformed IR: item_counts has a state, rule or bound out of range")
        self.ir = ir
        self.vocab = vocab
        cfg = _core_cfg(ir, vocab, max_lexer_states)
        self._native = _require().counts_grammar(cfg, bounds, *sets)
        self._reference: CountsGrammar | None = None

    def __repr__(self) -> str:
        return f"NativeCountsGrammar({self.ir.source!r}, lr_states={self.ir.num_states}, vocab={self.vocab.size})"

    def matcher(self) -> "NativeMatcher":
        return NativeMatcher(self, self._native.matcher())

    def reference(self):
        """The Python engine on the same IR (for what the core does not compute yet: budget masks)."""
        if self._reference is None:
            from guided.engine.counts import CountsGrammar

            self._reference = CountsGrammar(self.ir, self.vocab)
            _lend_walk(self.vocab)
        return self._reference


class NativeUniqueGrammar:
    """A `CfgIR` with unique items (`guided.ir.UniqueItems`, rule 9) compiled by the native core."""

    engine = "native"

    def __init__(self, ir: CfgIR, vocab: Vocabulary, *, max_lexer_states: int = 200_000):
        unique = ir.unique_items
        if unique is None:
            raise SpecError(f"NativeUniqueGrammar needs a CfgIR with unique_items ({ir.source[:80]!r} has none)")
        if ir.item_counts is not None or ir.matched_names is not None:
            raise SpecError("malformed IR: unique_items cannot be combined with item_counts or matched_names")
        try:  # the core checks every index; here only that they are numbers
            sets = [sorted(int(x) for x in s) for s in (unique.open_states, unique.item_rules)]
        except (TypeError, ValueError) as e:
            raise SpecError(f"malformed IR: unique_items is not sets of integers ({e})") from None
        if any(not -(2 ** 31) <= x < 2 ** 31 for s in sets for x in s):
            raise SpecError("malformed IR: unique_items has a state or rule out of range")
        self.ir = ir
        self.vocab = vocab
        cfg = _core_cfg(ir, vocab, max_lexer_states)
        self._native = _require().unique_grammar(cfg, *sets, int(unique.COMPLETIONS))
        self._reference: UniqueGrammar | None = None

    def __repr__(self) -> str:
        return f"NativeUniqueGrammar({self.ir.source!r}, lr_states={self.ir.num_states}, vocab={self.vocab.size})"

    def matcher(self) -> "NativeMatcher":
        return NativeMatcher(self, self._native.matcher())

    def reference(self):
        """The Python engine on the same IR (for what the core does not compute yet: budget masks)."""
        if self._reference is None:
            from guided.engine.unique import UniqueGrammar

            self._reference = UniqueGrammar(self.ir, self.vocab)
            _lend_walk(self.vocab)
        return self._reference


class NativeXmlGrammar:
    """A `CfgIR` with matched names (XML's close tags, `guided.ir.MatchedNames`) compiled by the native core."""

    engine = "native"

    def __init__(self, ir: CfgIR, vocab: Vocabulary, *, max_lexer_states: int = 200_000):
        from guided.engine.xml import check_matched_names

        check_matched_names(ir)
        names = ir.matched_names
        assert names is not None  # checked just above
        self.ir = ir
        self.vocab = vocab
        core = _require()
        cfg = core.cfg_grammar(native_trie(vocab), native_shared(vocab), max_lexer_states=max_lexer_states,
                               **lower_cfg(ir))
        self._native = core.xml_grammar(cfg, native_xml_risk(vocab, names.name_bytes), names.name, names.open_start,
                                        names.open_end, names.empty_end, names.close_start,
                                        bool(names.unique_attributes))
        self._reference: XmlGrammar | None = None

    def __repr__(self) -> str:
        return f"NativeXmlGrammar(vocab={self.vocab.size})"

    def matcher(self) -> "NativeMatcher":
        return NativeMatcher(self, self._native.matcher())

    def reference(self):
        """The Python engine on the same IR (for what the core does not compute yet: budget masks)."""
        if self._reference is None:
            from guided.engine.xml import XmlGrammar

            self._reference = XmlGrammar(self.ir, self.vocab)
            _lend_walk(self.vocab)
        return self._reference


class NativeMatcher:
    """A matcher of the native core, behind the `guided.Matcher` protocol."""

    __slots__ = ("grammar", "_m", "_tokens", "_twin")

    def __init__(self, grammar, matcher, tokens: tuple = (), twin=None):
        self.grammar = grammar
        self._m = matcher
        self._tokens = tokens  # persistent (token, rest) list, for the budget masks of grammars
        self._twin = twin  # (tokens node, Python matcher there): budget masks replay from it

    def __repr__(self) -> str:
        return f"NativeMatcher({type(self._m).__name__}, tokens={self._m.num_tokens})"

    @property
    def num_tokens(self) -> int:
        return self._m.num_tokens

    def words(self) -> np.ndarray:
        """The packed int32 mask (a fresh array)."""
        return self._m.words()

    def mask(self) -> np.ndarray:
        return unpack(self._m.words(), self.grammar.vocab.size)

    def fill_bitmask(self, bitmask, row: int = 0) -> None:
        self._m.fill_bitmask(bitmask, row)

    def is_allowed(self, token_id: int) -> bool:
        if not 0 <= token_id < self.grammar.vocab.size:
            return False
        return bool((int(self._m.words()[token_id >> 5]) >> (token_id & 31)) & 1)

    def advance(self, token_id: int) -> None:
        token_id = token_index(token_id)
        self._m.advance(token_id)
        self._tokens = (token_id, self._tokens)

    def rollback(self, n: int = 1) -> None:
        n = count_of(n, "rollback(n)")
        if not 0 <= n <= self._m.num_tokens:
            raise UsageError(f"cannot roll back {n} tokens: only {self._m.num_tokens} consumed")
        self._m.rollback(n)
        tokens = self._tokens
        for _ in range(n):
            tokens = tokens[1]
        self._tokens = tokens

    def copy(self) -> "NativeMatcher":
        return NativeMatcher(self.grammar, self._m.copy(), self._tokens, self._twin)

    def accepts_eos(self) -> bool:
        return self._m.accepts_eos()

    def is_finished(self) -> bool:
        return self._m.is_finished()

    def forced_bytes(self) -> bytes:
        return self._m.forced_bytes()

    # Budget-aware closing (`guided.engine.closing`).  LALR grammars without counted terminals
    # answer the budget mask and the closing lower bound in the core (src/guided_native/closing.h,
    # bit for bit the Python engine's).  The rest is not native yet: a regex is bounded by the
    # Python engine on the same DFA at the core's state; Earley grammars, item counts, unique items,
    # XML, counted terminals and every grammar's verified completions (closing distance and tokens)
    # by a Python twin matcher that follows the tokens (advanced only by the tokens since its last
    # use, so steps cost no replay), with the native mask as the plain mask (the same bits).

    def _regex_state(self) -> int:
        state = self._m.state
        return FINISHED if state < 0 else int(state)

    def _native_closing(self) -> bool:
        """Are the budget mask and the lower bound native for this grammar?"""
        g = self.grammar
        return isinstance(g, NativeCfgGrammar) and not g.ir.earley and not g._native.counting

    def budget_mask(self, remaining: int) -> np.ndarray:
        g = self.grammar
        if isinstance(g, NativeRegexGrammar):
            return g.reference().budget_allowed(self._regex_state(), remaining)
        if self._native_closing():
            # Past the bounds' range every bound fits: clamped, so the core's int64 never overflows.
            remaining = max(0, min(count_of(remaining, "budget_mask(remaining)"), 2 ** 62 + 1))
            return unpack(self._m.budget_words(remaining), g.vocab.size)
        config = self._twin_matcher()._history[0]
        plain = unpack(self._m.words(), g.vocab.size) if config is not None and remaining >= 1 else None
        if isinstance(g, (NativeCountsGrammar, NativeUniqueGrammar)):
            from guided.engine.cfg.matcher import budget_allowed

            ref = g.reference()  # the CFG's bounds, with the checks' own end of sequence (as CheckedStackMatcher)
            allowed = budget_allowed(ref.cfg, None if config is None else (config.stack, config.lex), plain,
                                     remaining)
            if config is not None:
                allowed[ref.cfg.table.eos_ids] = ref.accepts_end(config)
            return allowed
        if isinstance(g, NativeXmlGrammar):
            from guided.engine.xml import budget_allowed as xml_budget_allowed

            return xml_budget_allowed(g.reference(), config, plain, remaining)
        from guided.engine.cfg.matcher import budget_allowed

        return budget_allowed(g.reference(), config, plain, remaining)

    def closing_lower_bound(self) -> int:
        g = self.grammar
        if isinstance(g, NativeRegexGrammar):
            state = self._regex_state()
            return 0 if state == FINISHED else g.reference().lower_bound(state)
        if self._native_closing():
            return self._m.closing_lower_bound()
        return self._twin_matcher().closing_lower_bound()

    def closing_distance(self) -> int:
        g = self.grammar
        if isinstance(g, NativeRegexGrammar):
            state = self._regex_state()
            return 0 if state == FINISHED else g.reference().upper_bound(state)
        return self._twin_matcher().closing_distance()

    def closing_tokens(self) -> np.ndarray:
        g = self.grammar
        if isinstance(g, NativeRegexGrammar):
            return g.reference().closing_tokens(self._regex_state())
        return self._twin_matcher().closing_tokens()

    def _twin_matcher(self):
        node, pending = self._tokens, []
        twin = self._twin
        while twin is not None and node is not twin[0] and node:
            pending.append(node[0])
            node = node[1]
        if twin is not None and node is twin[0]:
            matcher = twin[1].copy()
        else:
            matcher = self.grammar.reference().matcher()
            pending = self.tokens()[::-1]
        for token in reversed(pending):
            matcher.advance(token)
        self._twin = (self._tokens, matcher)
        return matcher

    def tokens(self) -> list[int]:
        """The tokens consumed so far, oldest first."""
        out = []
        node = self._tokens
        while node:
            out.append(node[0])
            node = node[1]
        return out[::-1]


def fill_bitmasks(matchers: Sequence[Any], bitmask, threads: int | None = None) -> None:
    """Fill row ``i`` of a packed int32 ``[batch, ceil(V/32)]`` bitmask (numpy array or CPU torch
    tensor) with ``matchers[i]``'s mask, in native threads with the GIL released.

    ``threads=None`` uses one thread per core (at most one per distinct matcher).  Matchers of the
    Python engines are filled in this thread, before the native ones.
    """
    native, rows = [], []
    for i, m in enumerate(matchers):
        if isinstance(m, NativeMatcher):
            native.append(m._m)
            rows.append(i)
        else:
            m.fill_bitmask(bitmask, i)
    if not native:
        return
    if threads is None:
        threads = os.cpu_count() or 1
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    if len(rows) == len(matchers):
        _require().fill_bitmasks(native, bitmask, threads)
        return
    # Mixed engines: fill the native rows into a compact buffer, then scatter them.
    words = bitmask.shape[1]
    tmp = np.zeros((len(native), words), np.int32)
    _require().fill_bitmasks(native, tmp, threads)
    target = np.asarray(bitmask)  # a CPU torch tensor: a view of its memory
    target[rows] = tmp
