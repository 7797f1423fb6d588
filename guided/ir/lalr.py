"""LALR(1) parse tables, built fast enough to run per request, for every grammar guided compiles.

A JSON Schema is compiled once per request into a fresh grammar of a few hundred rules, where
Lark's analysis takes 10-30 ms in pure Python; and Lark's analysis recurses and repeats passes
as deep as a grammar's longest chain of rules (a minute, then a RecursionError, for 3,000), so
Lark grammars get their tables here too.  This is the same construction, DeRemer and
Pennello's LALR(1) lookaheads over the LR(0) automaton, on integers and without recursion:
items are ints, terminal sets are int bitsets, and conflicts are resolved as Lark resolves
them (shift over reduce; between reductions, the rule listed first, or the one of highest
priority), so the tables are those Lark would build.
The construction runs in the native core's compiled twin where one is lent
(`guided.ir.dfa.CompiledKernels.lalr`), which builds the same tables state for state, every
dict in the same order, so the serialised IR does not depend on which ran.

>>> t = lalr_tables([("start", ("list",)), ("list", ("NUM",)), ("list", ("list", "COMMA", "NUM"))],
...                 {"NUM": 0, "COMMA": 1}, "start")
>>> t.actions[t.start_state][0] >= 0  # NUM is shifted first
True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from guided.ir import END
from guided.ir.dfa import CompiledKernels

CHECK_WORK = 4_000
"""Units of work (items, rule symbols, edges) between two calls of a construction's ``check``:
a few milliseconds of CPU at most, so a deadline is met within a few milliseconds."""


@dataclass(frozen=True)
class Tables:
    """The `guided.ir.CfgIR` fields of a grammar, plus each state's kernel items."""

    actions: tuple[dict[int, int], ...]
    gotos: tuple[dict[int, int], ...]
    rules: tuple[tuple[int, int], ...]
    nonterminals: tuple[str, ...]
    rule_names: tuple[str, ...]
    start_state: int
    end_state: int
    kernels: tuple[tuple[tuple[int, int], ...], ...]  # state -> its (rule, dot) kernel items
    # (state, terminal, rules) for each reduce/reduce conflict that ``priority`` left undecided.
    conflicts: tuple[tuple[int, int, tuple[int, ...]], ...] = ()
    # Every rule's right-hand side (terminal t as t, nonterminal A as ~A), for `CfgIR.rule_rhs`.
    rhs: tuple[tuple[int, ...], ...] = ()
    # (state, terminal) where the LR(0) automaton has more than one action (shift/reduce or
    # reduce/reduce), however resolved: where the tables may refuse sentences of the grammar.
    collisions: tuple[tuple[int, int], ...] = ()

    def ir_fields(self) -> dict:
        return dict(actions=self.actions, gotos=self.gotos, rules=self.rules, nonterminals=self.nonterminals,
                    rule_names=self.rule_names, start_state=self.start_state, end_state=self.end_state)


def lalr_tables(rules: list[tuple[str, tuple[str, ...]]], terminals: dict[str, int], start: str,
                check: Callable[[], None] | None = None, priority: Sequence[int] | None = None) -> Tables:
    """Tables for ``rules`` (lhs, right-hand side); symbols in ``terminals`` are terminals, mapped to ids.

    Shifts win shift/reduce conflicts.  Reduce/reduce conflicts: the earlier rule wins; or, with
    ``priority`` (one number per rule, as Lark's rule priorities), the rule of highest priority,
    and a tie is listed in `Tables.conflicts` (Lark refuses such a grammar).  ``check`` is called
    now and then during the construction (to enforce a deadline: it raises to stop).
    """
    check = check or (lambda: None)
    # ``check`` runs once per CHECK_WORK units of work (items, rules, symbols visited), not per
    # so many states: a state of a large grammar can close over thousands of items, and 256 of
    # them took 4.7 s between two checks in a fuzzed grammar of 4,209 rules.
    work = 0
    names = list(dict.fromkeys([start] + [lhs for lhs, _ in rules]))
    nt_id = {name: i for i, name in enumerate(names)}
    n_nt = len(names)
    # Symbols: terminal t is t, nonterminal A is bias + A; END is bit end_bit of a terminal bitset.
    bias = max(terminals.values(), default=-1) + 2
    end_bit = bias - 1
    # One lookup per symbol; a terminal's id wins over a nonterminal of the same name.
    symbol_id = {name: bias + i for name, i in nt_id.items()}
    symbol_id.update(terminals)
    lhs_of = [nt_id[lhs_name] for lhs_name, _ in rules]
    try:
        rhs_syms = [tuple(map(symbol_id.__getitem__, rhs)) for _, rhs in rules]
    except KeyError as e:
        raise ValueError(f"symbol {e.args[0]!r} is neither a terminal nor defined by a rule") from None
    twin = CompiledKernels.lalr
    # The compiled twin (the same tables, state for state) takes terminal ids below 2**20.
    if twin is not None and bias <= 1 << 20:
        actions_, gotos_, kernels_, conflicts_, collisions_, end_state = twin(
            lhs_of, rhs_syms, n_nt, bias, nt_id[start], [] if priority is None else list(priority), check)
        return Tables(
            actions=actions_, gotos=gotos_, rules=tuple((lhs_of[r], len(rhs_syms[r])) for r in range(len(rules))),
            nonterminals=tuple(names), rule_names=tuple(f"<{lhs} : {' '.join(rhs)}>" for lhs, rhs in rules),
            start_state=0, end_state=end_state, kernels=kernels_, conflicts=conflicts_,
            rhs=_signed_rhs(rhs_syms, bias),
            collisions=collisions_)
    # The augmented rule: accept = the start symbol shifted from the start state.
    aug = len(rules)
    lhs_of.append(n_nt)
    rhs_syms.append((bias + nt_id[start],))
    by_lhs: list[list[int]] = [[] for _ in range(n_nt + 1)]
    for r, lhs in enumerate(lhs_of):
        by_lhs[lhs].append(r)

    nullable = [False] * (n_nt + 1)
    changed = True
    while changed:
        changed = False
        for r, syms in enumerate(rhs_syms):
            if not nullable[lhs_of[r]] and all(s >= bias and nullable[s - bias] for s in syms):
                nullable[lhs_of[r]] = changed = True

    # Rules whose start items join a closure when a nonterminal is next (transitively).
    closure_of: list[tuple[int, ...]] = []
    for a in range(n_nt + 1):
        if work > CHECK_WORK:
            check()
            work = 0
        seen = {a}
        todo = [a]
        found: list[int] = []
        while todo:
            x = todo.pop()
            for r in by_lhs[x]:
                found.append(r)
                syms = rhs_syms[r]
                if syms and syms[0] >= bias and syms[0] - bias not in seen:
                    seen.add(syms[0] - bias)
                    todo.append(syms[0] - bias)
        work += len(found)
        closure_of.append(tuple(found))

    # -- the LR(0) automaton -----------------------------------------------------------------
    kernels: list[tuple[tuple[int, int], ...]] = [((aug, 0),)]
    state_of: dict[tuple, int] = {kernels[0]: 0}
    transitions: list[dict[int, int]] = []
    completed: list[list[int]] = []  # state -> rules whose item is complete in it
    i = 0
    while i < len(kernels):
        if work > CHECK_WORK:
            check()
            work = 0
        items = list(kernels[i])
        added: set[int] = set()
        expanded: set[int] = set()  # a nonterminal's closure is added once per state
        for r, dot in kernels[i]:
            syms = rhs_syms[r]
            if dot < len(syms) and syms[dot] >= bias and syms[dot] not in expanded:
                expanded.add(syms[dot])
                closure = closure_of[syms[dot] - bias]
                work += len(closure)
                for r2 in closure:
                    if r2 not in added:
                        added.add(r2)
                        items.append((r2, 0))
        moves: dict[int, list[tuple[int, int]]] = {}
        done = []
        for r, dot in items:
            syms = rhs_syms[r]
            if dot < len(syms):
                moves.setdefault(syms[dot], []).append((r, dot + 1))
            else:
                done.append(r)
        row = {}
        for sym, kernel in moves.items():
            key = tuple(sorted(kernel))
            target = state_of.get(key)
            if target is None:
                target = state_of[key] = len(kernels)
                kernels.append(key)
            row[sym] = target
        work += len(items)
        transitions.append(row)
        completed.append(done)
        i += 1
    n_states = len(kernels)

    # -- lookaheads (DeRemer & Pennello) -----------------------------------------------------
    # Nonterminal transitions (p, A) are numbered; each gets Read and Follow terminal bitsets.
    nt_trans: dict[tuple[int, int], int] = {}
    check()
    for p in range(n_states):
        for sym in transitions[p]:
            if sym >= bias:
                nt_trans[(p, sym)] = len(nt_trans)
    pairs = list(nt_trans)
    direct = [0] * len(pairs)
    reads: list[list[int]] = [[] for _ in pairs]
    for x, (p, sym) in enumerate(pairs):
        if work > CHECK_WORK:
            check()
            work = 0
        r = transitions[p][sym]
        work += len(transitions[r])
        bits = 0
        for s2, _ in transitions[r].items():
            if s2 < bias:
                bits |= 1 << s2
            elif nullable[s2 - bias]:
                reads[x].append(nt_trans[(r, s2)])
        direct[x] = bits
    direct[nt_trans[(0, bias + nt_id[start])]] |= 1 << end_bit
    read_sets = _digraph(direct, reads, check)

    includes: list[list[int]] = [[] for _ in pairs]
    lookback: dict[tuple[int, int], list[int]] = {}
    for x, (p, sym) in enumerate(pairs):
        if work > CHECK_WORK:
            check()
            work = 0
        for r in by_lhs[sym - bias]:
            syms = rhs_syms[r]
            work += len(syms) + 1
            # The symbols from `empty_from` on can all derive the empty string.
            empty_from = len(syms)
            while empty_from and syms[empty_from - 1] >= bias and nullable[syms[empty_from - 1] - bias]:
                empty_from -= 1
            q = p
            for k, s in enumerate(syms):
                if s >= bias and k + 1 >= empty_from:
                    includes[nt_trans[(q, s)]].append(x)
                q = transitions[q][s]
            lookback.setdefault((q, r), []).append(x)
    follow = _digraph(read_sets, includes, check)

    # -- the action table ----------------------------------------------------------------------
    actions: list[dict[int, int]] = []
    gotos: list[dict[int, int]] = []
    conflicts: list[tuple[int, int, tuple[int, ...]]] = []
    collisions: list[tuple[int, int]] = []
    for p in range(n_states):
        if work > CHECK_WORK:
            check()
            work = 0
        work += len(transitions[p]) + len(completed[p])
        acts: dict[int, int] = {}
        gos: dict[int, int] = {}
        for sym, target in transitions[p].items():
            if sym >= bias:
                gos[sym - bias] = target
            else:
                acts[sym] = target
        # Lowest rule index first, so an earlier rule wins each reduce/reduce conflict.
        reductions: dict[int, list[int]] = {}
        for r in sorted(completed[p]):
            if r == aug:
                continue
            bits = 0
            for x in lookback.get((p, r), ()):
                bits |= follow[x]
            while bits:
                low = bits & -bits
                t = low.bit_length() - 1
                bits ^= low
                reductions.setdefault(END if t == end_bit else t, []).append(r)
        for lookahead, candidates in reductions.items():
            if len(candidates) > 1 or lookahead in acts:
                collisions.append((p, lookahead))
            chosen = candidates[0]
            if priority is not None and len(candidates) > 1:
                best = max(priority[r] for r in candidates)
                top = tuple(r for r in candidates if priority[r] == best)
                if len(top) > 1:
                    conflicts.append((p, lookahead, top))
                chosen = top[0]
            if lookahead not in acts:
                acts[lookahead] = -chosen - 1
        actions.append(acts)
        gotos.append(gos)
    start_state = 0
    return Tables(
        actions=tuple(actions),
        gotos=tuple(gotos),
        rules=tuple((lhs_of[r], len(rhs_syms[r])) for r in range(len(rules))),
        nonterminals=tuple(names),
        rule_names=tuple(f"<{lhs} : {' '.join(rhs)}>" for lhs, rhs in rules),
        start_state=start_state,
        end_state=transitions[start_state][bias + nt_id[start]],
        kernels=tuple(kernels),
        conflicts=tuple(conflicts),
        rhs=tuple(tuple(s if s < bias else ~(s - bias) for s in rhs_syms[r]) for r in range(len(rules))),
        collisions=tuple(collisions),
    )


def _digraph(base: list[int], edges: list[list[int]], check: Callable[[], None] | None = None) -> list[int]:
    """F(x) = base(x) | F(y) for every edge x -> y; a strongly connected part shares one set.

    DeRemer and Pennello's traversal (Tarjan's), iterative so that deep grammars do not reach
    Python's recursion limit.
    """
    n = len(base)
    result = list(base)
    mark = [0] * n
    done = n + 1
    stack: list[int] = []
    work = 0
    for root in range(n):
        if check is not None and work > CHECK_WORK:
            check()
            work = 0
        if mark[root]:
            continue
        stack.append(root)
        mark[root] = len(stack)
        frames = [[root, len(stack), 0]]
        while frames:
            work += 1
            frame = frames[-1]
            x, height, k = frame
            out = edges[x]
            if k < len(out):
                frame[2] = k + 1
                y = out[k]
                if not mark[y]:
                    stack.append(y)
                    mark[y] = len(stack)
                    frames.append([y, len(stack), 0])
                    continue
                if mark[y] < mark[x]:
                    mark[x] = mark[y]
                result[x] |= result[y]
                continue
            frames.pop()
            if mark[x] == height:
                while True:
                    z = stack.pop()
                    mark[z] = done
                    result[z] = result[x]
                    if z == x:
                        break
            if frames:
                parent = frames[-1][0]
                if mark[x] < mark[parent]:
                    mark[parent] = mark[x]
                result[parent] |= result[x]
    return result


def _signed_rhs(rhs_syms: list[tuple[int, ...]], bias: int) -> tuple[tuple[int, ...], ...]:
    """`Tables.rhs`: each right-hand side with terminal t as t and nonterminal ``bias + A`` as ~A,
    through one lookup list (``bias`` is below 2**20 where it is called)."""
    n_nt = max((max(syms, default=0) for syms in rhs_syms), default=0) - bias + 1
    signed = list(range(bias)) + [~a for a in range(max(0, n_nt))]
    return tuple(tuple(map(signed.__getitem__, syms)) for syms in rhs_syms)
