"""guided.ir.lalr builds the tables Lark builds: same automaton, same actions, same conflict resolution."""

from __future__ import annotations

import json
import pathlib

import lark
import pytest
from lark.common import ParserConf
from lark.grammar import NonTerminal, Rule, RuleOptions, Terminal
from lark.parsers.lalr_analysis import LALR_Analyzer, Shift

from guided.frontends.jsonschema import JsonSchema
from guided.frontends.jsonschema.options import Options
from guided.frontends.jsonschema.rules import RuleEmitter
from guided.ir import END
from guided.ir.lalr import lalr_tables

ROOT = pathlib.Path(__file__).resolve().parent.parent
MASKBENCH = ROOT.parent / "shared" / "data" / "maskbench"


def lark_ir_tables(table, terminal_index: dict[str, int]) -> dict:
    """Lark's LALR(1) parse table as `CfgIR` fields (actions, gotos, rules, names)."""
    nonterminals: dict[str, int] = {}
    rules: dict[object, int] = {}
    rule_list: list[tuple[int, int]] = []
    rule_names: list[str] = []
    actions: list[dict[int, int]] = []
    gotos: list[dict[int, int]] = []
    for state in range(len(table.states)):
        acts: dict[int, int] = {}
        gos: dict[int, int] = {}
        for symbol, (action, arg) in table.states[state].items():
            if symbol == "$END" or symbol in terminal_index:
                key = END if symbol == "$END" else terminal_index[symbol]
                if action is Shift:
                    acts[key] = arg
                else:
                    if arg not in rules:
                        lhs = nonterminals.setdefault(arg.origin.name, len(nonterminals))
                        rules[arg] = len(rule_list)
                        rule_list.append((lhs, len(arg.expansion)))
                        rule_names.append(str(arg))
                    acts[key] = -rules[arg] - 1
            else:
                gos[nonterminals.setdefault(symbol, len(nonterminals))] = arg
        actions.append(acts)
        gotos.append(gos)
    return {"actions": tuple(actions), "gotos": tuple(gotos), "rules": tuple(rule_list),
                "nonterminals": tuple(sorted(nonterminals, key=nonterminals.get)), "rule_names": tuple(rule_names)}


def lark_tables(rules, terminals, start):
    """Lark's own analysis of the same rules, priorities by order as guided resolves conflicts."""
    n = len(rules)
    lark_rules = [Rule(NonTerminal(lhs), [Terminal(s) if s in terminals else NonTerminal(s) for s in rhs],
                       order=i, options=RuleOptions(priority=n - i)) for i, (lhs, rhs) in enumerate(rules)]
    analyzer = LALR_Analyzer(ParserConf(lark_rules, {}, [start]), debug=False, strict=False)
    analyzer.compute_lalr()
    table = analyzer.parse_table
    fields = lark_ir_tables(table, terminals)
    return fields, table.start_states[start], table.end_states[start]


def assert_isomorphic(rules, terminals, start):
    """Walk both automata from their start states in step; every action and goto must agree."""
    mine = lalr_tables(rules, terminals, start)
    theirs, start_state, end_state = lark_tables(rules, terminals, start)
    pairs = {start_state: mine.start_state}
    todo = [start_state]
    while todo:
        a = todo.pop()
        b = pairs[a]
        la, lb = theirs["actions"][a], mine.actions[b]
        assert set(la) == set(lb), (theirs["rule_names"], a, b)
        targets = []
        for symbol, action in la.items():
            other = lb[symbol]
            if action >= 0:
                assert other >= 0, (symbol, action, other)
                targets.append((action, other))
            else:
                assert theirs["rule_names"][-action - 1] == mine.rule_names[-other - 1]
        ga = {theirs["nonterminals"][k]: v for k, v in theirs["gotos"][a].items()}
        gb = {mine.nonterminals[k]: v for k, v in mine.gotos[b].items()}
        assert set(ga) == set(gb)
        targets += [(v, gb[k]) for k, v in ga.items()]
        for x, y in targets:
            if x in pairs:
                assert pairs[x] == y
            else:
                pairs[x] = y
                todo.append(x)
    assert pairs[end_state] == mine.end_state
    assert len(set(pairs.values())) == len(pairs) == len(mine.actions)


@pytest.mark.parametrize("name", ["json", "sql", "arithmetic", "python_call", "tool_call", "xml"])
def test_shipped_grammars(name):
    parser = lark.Lark.open(str(ROOT / "grammars" / f"{name}.lark"), parser="lalr", lexer="basic")
    terminal_names = sorted({s.name for r in parser.rules for s in r.expansion if s.is_term})
    rules = [(r.origin.name, tuple(s.name for s in r.expansion)) for r in parser.rules]
    assert_isomorphic(rules, {t: i for i, t in enumerate(terminal_names)}, "start")


def test_empty_rules_and_conflicts():
    # nullable symbols (reads and includes through them) and a reduce/reduce conflict won by the first rule
    rules = [("start", ("a", "b", "X")), ("a", ()), ("a", ("Y",)), ("b", ()), ("b", ("Z",)),
             ("start", ("c", "X")), ("c", ("Y",))]
    assert_isomorphic(rules, {"X": 0, "Y": 1, "Z": 2}, "start")


def _schema_rules(schema):
    spec = JsonSchema(schema)
    grammar, _ = RuleEmitter(json.loads(spec.schema), Options(spec)).emit()
    return grammar.productive_rules(), grammar.terminal_ids()


@pytest.mark.parametrize("path", sorted((ROOT / "schemas").glob("*.json")), ids=lambda p: p.stem)
def test_schema_grammars(path):
    rules, terminals = _schema_rules(json.loads(path.read_text()))
    assert_isomorphic(rules, terminals, "start")


@pytest.mark.skipif(not MASKBENCH.exists(), reason="../shared/data/maskbench is not beside the repo")
def test_maskbench_grammars():
    from guided.errors import GuidedError

    checked = 0
    for path in sorted(MASKBENCH.glob("*.json"))[::150]:
        try:
            rules, terminals = _schema_rules(json.loads(path.read_text())["schema"])
        except GuidedError:
            continue
        assert_isomorphic(rules, terminals, "start")
        checked += 1
    assert checked >= 20
