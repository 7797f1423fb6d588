"""The engine's tuning thresholds, in one place, each with the measurement that chose it.

None of these changes what a mask contains: they decide how much is computed ahead of time,
when a walk leaves numpy for plain Python, and how much the caches hold.  Figures are from the
commit that set the value (``git log -S NAME -- guided/engine``); MaskBench figures are the
300-case SmolLM2 sample (``benchmarks/maskbench.py --sample 300``) unless said otherwise.  Where
no measurement was recorded the entry says so: those values are educated guesses, and
re-measuring them is a good first task for whoever changes the code around them.
"""

# -- caches --------------------------------------------------------------------------------

MASK_CACHE_SIZE = 4096
"""Finished masks a CFG or XML grammar keeps (LRU, per configuration).  Set with the first CFG
engine (798d458); no measurement recorded.  At SmolLM2's 49k tokens a mask is 6 KiB, so the
cache holds at most ~25 MiB per grammar."""

INTERN_LIMIT = 200_000
"""Parser stack nodes (and XML name-stack nodes) a grammar interns before it starts over, which
costs only cache misses.  Set in f5dfb9c; no measurement recorded (a bound on memory: a node
with its feed memo is a few hundred bytes)."""

SHARE_LIMIT = 64
"""Lexer sub-automata up to this many states get a canonical key and share their per-state mask
data between grammars (fdc47e0).  In the 300-case sample the keys paid for themselves: 7,480
hits for 660 computations (docs/json-schema-coverage.md, "Limits known today")."""

SHARED_LIMIT = 100_000
"""Entries in the per-vocabulary cache of shared lexer-state data before it is cleared (d119c5c);
no measurement recorded (a bound on memory)."""

# -- the lexer table -----------------------------------------------------------------------

EAGER_ROWS = 16
"""Union rows filled when a parser context's lexer is first built; the rest when a walk first
reads them.  e228d8c made rows lazy past the first 64: a context of 84 property names had
30,820 rows built in 430 ms, of which a document reads a few dozen; 5f13796 lowered it to 16
(with other changes: TBM p90/p99 0.35/1.55 -> 0.33/1.41 ms, passing unchanged)."""

EAGER_BLOCK = 16
"""Terminal DFAs up to this many states are copied whole into the lexer table when first
reached (e228d8c); no separate measurement recorded."""

WHOLE_BLOCK = 256
"""Terminal DFAs up to this many states are copied whole when one of their rows is first read
(d119c5c: one copy instead of one per visit; with the other changes of that commit, TBM
p90/p99/p99.9 0.48/1.89/6.9 -> 0.35/1.55/6.5 ms, TTFM p50 10.0 -> 8.6 ms)."""

BLOCK_CHUNK = 32
"""Larger terminal DFAs are filled by aligned chunks of this many rows, since a walk reads
states numbered close together (fb9579e); no measurement recorded."""

SPARSE_FILL = 48
"""Union rows whose components live on at most this many bytes in all are built in Python from
memoised sparse rows (21e8022: checked byte for byte against the vectorised construction on a
120-case sample, 2.66M entries; TBM p90/p99 0.33/1.38 -> 0.32/1.31 ms, TTFM p50 8.7 -> 8.2 ms)."""

FRESH_PAGES_BYTES = 1 << 20
"""Lexer arrays at least this large are mapped on fresh anonymous pages instead of ``np.zeros``,
which could clear a whole reused block per grammar (17d7716: TTFM p50 +0.7 ms before)."""

UNION_ROWS_MARGIN = 4096
"""Rows reserved for union states beyond every terminal's block when a lexer table is created,
so that growing it (a copy, inside one mask) is rare (e228d8c); no separate measurement."""

# -- lexer states derived from a similar state ---------------------------------------------

REFERENCE_MIN_BYTES = 32
"""A lexer state that moves to one other state on at least this many bytes is derived from that
state's data, walking only the trie paths where the two differ (e228d8c: identical results on
all 3,827 such states of the 300-case sample, at a fifth of the cost)."""

DIVERGENCE_BUDGET = 4000
"""Trie nodes such a derivation may visit before it falls back to a full walk (e228d8c, same
measurement)."""

# -- trie walks (`guided.engine.token_table`) ----------------------------------------------

SCALAR_WORK = 400
"""A trie walk whose remaining subtrees hold at most this many nodes finishes in Python, not
numpy (e96d887 chose scalar walks by subtree size; d119c5c: stack walk time 27% -> 8% of slow
masks)."""

NARROW_BYTES = 8
"""A lexer state leaving on at most this many bytes is first walked in Python (d119c5c: 0.09 ->
0.02-0.04 ms for a state inside a property name)."""

NARROW_BUDGET = 600
"""Trie children such a Python walk may look at before it hands back to numpy (d119c5c)."""

SCALAR_DIVERGENCE = 32
"""A diverging frontier of at most this many nodes is finished in Python by `walk_divergence`
(5f13796; with the other changes there, TBM p90/p99 0.35/1.55 -> 0.33/1.41 ms)."""

SCALAR_DIVERGENCE_WORK = 1500
"""Children that Python finish may look at before handing back to numpy (5f13796)."""

# -- closing -------------------------------------------------------------------------------

CLOSING_MAX_POPS = 5_000
"""Parser stacks all the searches of one closing completion may expand together (exact search,
rules in progress, layers): the bound on the time of one budget mask.  20,000 for the exact
search alone from f7e5873 (no measurement) to the fuzz finding of issue 18: on a fuzzed grammar
with brackets nested five deep every budget mask spent them without finding a completion,
0.6 s each, and 2.5 s after nine documents, since the stacks made stayed alive (now freed with
the interned table, `guided.engine.cfg.stacks`).  At 5,000 the longest walk step of that
grammar's fuzz examples is 0.21 s of CPU (``tests/test_fuzz.py``, busy 2-core machine), and
the shipped grammars' budget tests pass (``tests/test_cfg.py``)."""

CLOSING_EXACT_POPS = 1_000
"""Of those, the stacks the search for the cheapest closing sequence (over terminals) expands
before the search over rules in progress (`guided.engine.cfg.derivations`) and then the layered
search take over with the rest (`guided.engine.cfg.closing.Closer._closing_terminals`).  The
shipped ``tool_call`` grammar needs more than 1,000 to close ``</tool_call>`` after nested
arrays, which the search over rules finds in a few dozen; no other measurement recorded."""

FORCED_BYTES_LIMIT = 4096
"""Bytes `forced_bytes` follows at most (a bound on one jump-forward step); no measurement
recorded."""

# -- closing (token counts of completions, guided.engine.closing) --------------------------

MANDATORY_MAX_SYMBOLS = 256
"""Length at which a mandatory subsequence is cut (a prefix of one is still mandatory, so the
bound stays true, only less tight).  A guess: deep enough for 60 close tags or 250 brackets."""

COMPLETION_MEMO = 65_536
"""Configurations whose verified completion (and its token count) a grammar keeps
(`guided.engine.cfg.closing`); past it the memo starts over, so a long-lived server grammar
stays bounded.  A guess: a few MB; one document visits a few hundred configurations."""

TOKEN_BOUNDS_MEMO = 64
"""Regex states whose live tokens and their token bounds a grammar keeps for budget masks
(`guided.engine.automaton`, an LRU): at most 16 bytes a live token, so under 50 MB for a 49k
vocabulary at worst, and a regex document visits a few dozen states.  Measured: the e2e regex
run (benchmarks/e2e.py) spent 7 ms a step walking the vocabulary again without it."""

ADVANCES_MEMO = 128
"""Token advances into a mandatory subsequence kept per vocabulary (`SubsequenceCover.advances`,
an LRU): 98 KB each for a 49k vocabulary, so under 13 MB; the budget masks of one JSON document
revisit a few dozen subsequences (one per grammar state on the way to its end).  Measured: the
e2e JSON Schema run (benchmarks/e2e.py) asks for 2 walks a step, nearly all repeats."""

MANDATORY_MAX_STATES = 4096
"""States a search for a cut byte (a string's closing quote) may visit in one automaton before
it gives up (sound: the subsequence just stops there).  A guess that covers maxLength-bounded
strings of a few hundred characters."""

AUTOMATON_EXACT_STATES = 1024
"""Automata up to this many states get exact token distances to acceptance (one token walk per
state, ~1-3 ms each at SmolLM2's 49k tokens, so at most a few seconds, once per grammar and only
when a budget gets close); larger ones use mandatory-subsequence lower bounds.  A guess."""

CLOSING_REFINE_TOKENS = 48
"""When a budget mask keeps at most this many tokens, each is stepped and bounded by its own
configuration (tighter: it counts what the token opens, a minus sign that still needs a digit);
above, the bound is what the token leaves of the current configuration's mandatory subsequence.
Measured: a stepped token costs 0.1-70 ms (the closers search of a new parser stack dominates:
66 ms per stack in the arithmetic grammar), so 256 made the budget masks of a 109-token
arithmetic document take 54 s in all; the last steps of a budget keep far fewer tokens."""

CLOSER_SEARCH_LIMIT = 4000
"""Relative stacks the search for the closers of a parser stack may visit
(`guided.engine.cfg.closing.Closer._closers`); past it the closers are left out (sound, looser).
A guess: JSON Schema objects and tool calls stay in the hundreds."""

REQUIRED_SEARCH_STACKS = 8192
"""Parser stacks the search for terminals every completion shifts (a required element after
optional ones, `guided.engine.cfg.closing.Closer._required_terminals`) may visit; past it none
is claimed (sound, looser).  Measured:
the XML of a model with 4 optional fields before a required one reaches 6,742 stacks (0.6 s
once, then memoised per branch point); recursive grammars (free JSON) reach the limit."""

CLOSING_SEARCH_TOKENS = 16
"""When a budget mask keeps at most this many tokens, each one's own bound includes the
required-terminal search (`REQUIRED_SEARCH_STACKS`); above, it leaves it out.  A guess that keeps
the search to the last steps of a budget (the tiny model's XML with optional fields needed it at
13 tokens)."""

CLOSING_REFINE_ADVANCING = 1024
"""Above `CLOSING_REFINE_TOKENS`, the tokens stepped are those that reach into the mandatory
part (a closing quote, a bracket), up to this many (past it the rest keep the vectorised bound:
sound, looser).  A guess: SmolLM2 has a few hundred tokens that hold a '"'."""
