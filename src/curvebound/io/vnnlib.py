"""VNN-LIB 1.0 reader for the VNN-COMP subset, producing :class:`curvebound.spec.Property`.

Accepted language (SMT-LIB syntax, ``;`` comments):

* ``(declare-const X_i Real)`` / ``(declare-const Y_j Real)``: inputs ``X_0..X_{n-1}``, outputs
  ``Y_0..Y_{m-1}`` (indices must be contiguous; declare before use).
* ``(assert F)``: all asserts are conjoined. ``F`` is built from ``and``, ``or`` (any nesting),
  ``true``/``false`` and comparisons ``(op t1 t2 ...)`` with op in ``<= >= < >`` (chained as in
  SMT-LIB; strict is read as non-strict, i.e. the closure of the unsafe set).
* Terms are linear: numbers, variables, ``+``, ``-`` (unary and n-ary), ``*`` with at most one
  non-constant factor, ``/`` by non-zero constants.
* ``check-sat``, ``get-model``, ``exit``, ``set-logic``, ``set-info`` and ``set-option`` commands are ignored.

The conjunction of asserts is expanded to disjunctive normal form (at most ``MAX_DNF_TERMS`` terms).
In each term, every comparison either involves only constants (then it is evaluated), is a bound on one
input ``a*X_i <= c`` (becomes part of the term's box), or involves only outputs (becomes a row
``C y <= rhs``). Terms are grouped by identical box; each box must bound every ``X_i`` finitely. Terms
whose box is empty (some lower > upper) cannot be violated and are dropped, so an unsatisfiable file gives
``Property(boxes=[])``.

Speed: one regex pass tokenizes the file; a maximal run of declarations, of ``(assert (op a b))``
commands or of simple comparisons ``(op a b)`` is a single token whose fields are split out with
``str.split`` and converted in bulk, so the usual VNN-COMP files (thousands of simple bounds) never
loop in Python per character and rarely per atom. The s-expression reader and the DNF and term
evaluators are iterative, so nesting depth never meets Python's recursion limit. Error locations are
recovered only on failure, by re-scanning the text.
"""

from __future__ import annotations

import gzip
import itertools
import logging
import math
import os
import re
import sys
from typing import NoReturn

import numpy as np

from curvebound.errors import SpecError
from curvebound.spec import Disjunct, InputBox, Property

logger = logging.getLogger(__name__)

MAX_DNF_TERMS = 100_000

# One declaration (groups: name, sort) and one simple comparison (groups: operator, left, right).
_DECL_RE = re.compile(r"\(\s*declare-const\s+([^\s()]+)\s+([^\s()]+)\s*\)", re.ASCII)
_ATOM_RE = re.compile(r"\(\s*([<>]=?)\s+([^\s()]+)\s+([^\s()]+)\s*\)", re.ASCII)
# Possessive quantifiers (Python >= 3.11) make the tokenizer about 1.5x faster; same matches either way.
_P = "+" if sys.version_info >= (3, 11) else ""
_DECL = rf"\(\s*{_P}declare-const\s+{_P}[^\s()]+{_P}\s+{_P}[^\s()]+{_P}\s*{_P}\)"
_ATOM = rf"\(\s*{_P}[<>]=?\s+{_P}[^\s()]+{_P}\s+{_P}[^\s()]+{_P}\s*{_P}\)"
# Token groups: a run of declarations, a run of (assert ATOM) commands, a run of ATOMs, a lone
# parenthesis, any other symbol or number. Only (ASCII) whitespace is skipped between tokens.
_TOKEN_RE = re.compile(
    rf"((?:{_DECL}\s*{_P})+{_P})|((?:\(\s*assert\s+{_ATOM}\s*\)\s*{_P})+{_P})|((?:{_ATOM}\s*{_P})+{_P})"
    r"|([()])|([^\s()]+)",
    re.ASCII,
)
_DECLS, _ASSERTS, _ATOMS, _PAREN, _SYM = range(5)
# Stripping ";...\n" keeps every remaining token at its original line and column.
_COMMENT_RE = re.compile(r";[^\n]*")
_VAR_RE = re.compile(r"([XY])_(\d+)", re.ASCII)
_NAMES_RE = re.compile(r"(?:[XY]_\d+\n)*", re.ASCII)  # newline-joined names, validated in one call
_SPLIT_TABLE = str.maketrans("()", "  ")

_COMPARISONS = frozenset({"<=", ">=", "<", ">"})
_LEFT_IS_UPPER = {"<=": True, "<": True, ">=": False, ">": False}  # (op v c): v <= c or v >= c
_TERM_OPS = frozenset({"+", "-", "*", "/"})
_IGNORED_COMMANDS = frozenset({"check-sat", "get-model", "exit", "set-logic", "set-info", "set-option"})

# Kinds of a single comparison after normalisation.
_TRUE, _FALSE, _INPUT, _ROW = range(4)

# A node of the read tree is a token index (int) or a list [index of "(", child, child, ...].
# Linear term: ({variable code: coefficient}, constant). Code i >= 0 is X_i, code ~j (< 0) is Y_j.
Lin = tuple[dict[int, float], float]
# Input bound: (i, is_upper, value) meaning X_i <= value (is_upper) or X_i >= value.
Bound = tuple[int, bool, float]
# Output row: ({j: c_j}, rhs) meaning sum_j c_j * Y_j <= rhs.
Row = tuple[dict[int, float], float]
# DNF term: (input bounds, output rows), a conjunction; a DNF is a list of terms (empty list = false).
Term = tuple[list[Bound], list[Row]]
# Where an error points: (token index, regex group, index of the element inside a run token or -1).
Where = tuple[int, int, int]


def parse_vnnlib(path: str | os.PathLike) -> Property:
    """Read a ``.vnnlib`` (or ``.vnnlib.gz``) file into the normal form; raises SpecError on bad input."""
    text, source = read_spec_text(path)
    return parse_vnnlib_text(text, source=source)


def read_spec_text(path: str | os.PathLike) -> tuple[str, str]:
    """``(text, source)`` of a spec file (``.gz`` allowed); an unreadable file is a SpecError."""
    source = os.fspath(path)
    try:
        if source.endswith(".gz"):
            with gzip.open(source, "rb") as f:
                data = f.read()
        else:
            with open(source, "rb") as f:
                data = f.read()
    except OSError as e:
        raise SpecError(source, 1, 1, f"cannot read file: {e.strerror or e}") from e
    return data.decode("utf-8", errors="replace"), source


def parse_vnnlib_text(text: str, source: str = "<string>") -> Property:
    """Parse VNN-LIB text; ``source`` names it in error messages and in ``Property.source``."""
    return _Parser(text, source).parse()


def _var_name(code: int) -> str:
    return f"X_{code}" if code >= 0 else f"Y_{~code}"


def _fields(run: str) -> list[str]:
    """The blank-separated fields of a run token with its parentheses removed."""
    return run.translate(_SPLIT_TABLE).split()


class _Parser:
    """One-shot parser state: tokens, declarations and the growing conjunction of asserts.

    Invariant: the property so far is ``base_bounds AND product over factors`` where each factor is a
    DNF (list of terms); input bounds of single-term asserts go straight to ``base_bounds``."""

    def __init__(self, text: str, source: str):
        self.source = source
        self.text = _COMMENT_RE.sub("", text) if ";" in text else text
        self.toks: list[tuple[str, ...]] = _TOKEN_RE.findall(self.text)
        self.vars: dict[str, int] = {}
        self.decl_where: dict[int, Where] = {}  # variable code -> where it was declared
        self.base_bounds: list[Bound] = []
        self.factors: list[list[Term]] = []
        self.single_rows: list[Term] | None = None  # last factor if it collects single-term rows
        self.n_terms = 1
        self.unsat = False

    # ---- errors -------------------------------------------------------------------------------------
    def fail(self, k: int, message: str, group: int = 0, element: int = -1) -> NoReturn:
        """Raise SpecError at token ``k`` (regex ``group``; inside a run token, of its ``element``-th
        declaration or comparison), found by re-scanning the text."""
        pos = len(self.text)
        if 0 <= k < len(self.toks):
            match = next(itertools.islice(_TOKEN_RE.finditer(self.text), k, None))
            pos = match.start()
            if element >= 0:
                sub_re = _DECL_RE if match.group(_DECLS + 1) else _ATOM_RE
                sub = next(itertools.islice(sub_re.finditer(self.text, pos, match.end()), element, None))
                pos = sub.start(group)
        line = self.text.count("\n", 0, pos) + 1
        column = pos - self.text.rfind("\n", 0, pos)
        raise SpecError(self.source, line, column, message)

    def fail_at(self, where: Where, message: str) -> NoReturn:
        k, group, element = where
        self.fail(k, message, group, element)

    @staticmethod
    def loc(node: int | list) -> int:
        return node if type(node) is int else node[0]

    # ---- reading ------------------------------------------------------------------------------------
    def read(self) -> list:
        """Build the tree of top-level items; iterative, so any nesting depth is fine."""
        top: list = []
        cur = top
        stack: list[list] = []
        for k, tok in enumerate(self.toks):
            paren = tok[_PAREN]
            if paren == "(":
                node = [k]
                cur.append(node)
                stack.append(cur)
                cur = node
            elif paren == ")":
                if not stack:
                    self.fail(k, "unbalanced parentheses: ')' without a matching '('")
                cur = stack.pop()
            else:
                cur.append(k)
        if stack:
            outermost = stack[1] if len(stack) > 1 else cur
            self.fail(outermost[0], "unbalanced parentheses: this '(' is never closed")
        return top

    # ---- commands -----------------------------------------------------------------------------------
    def parse(self) -> Property:
        toks = self.toks
        for item in self.read():
            if type(item) is not int:
                self.command(item)
            elif toks[item][_DECLS]:
                self.declare_run(item)
            elif toks[item][_ASSERTS]:
                self.conjoin_atoms(item)
            elif toks[item][_ATOMS]:
                self.fail(item, "a comparison must be inside (assert ...)")
            else:
                self.fail(item, "expected a command such as (assert ...) or (declare-const ...)")
        return self.assemble()

    def head(self, node: list) -> str:
        """The operator symbol of a list node, or a SpecError."""
        if len(node) < 2:
            self.fail(node[0], "empty expression '()'")
        first = node[1]
        if type(first) is not int or not self.toks[first][_SYM]:
            self.fail(self.loc(first), "expected an operator name after '('")
        return self.toks[first][_SYM]

    def command(self, node: list) -> None:
        name = self.head(node)
        if name == "assert":
            if len(node) != 3:
                self.fail(node[0], f"assert takes exactly one formula, got {len(node) - 2}")
            body = node[2]
            if type(body) is int and self.toks[body][_ATOMS]:
                n_atoms = len(self.run_fields(body)[0])
                if n_atoms != 1:
                    self.fail(node[0], f"assert takes exactly one formula, got {n_atoms}")
                self.conjoin_atoms(body)
            else:
                self.conjoin(self.formula(body), node[0])
        elif name == "declare-const":
            if len(node) != 4 or not all(type(c) is int and self.toks[c][_SYM] for c in node[2:]):
                self.fail(node[0], "declare-const takes a name and a sort, e.g. (declare-const X_0 Real)")
            self.declare(self.toks[node[2]][_SYM], self.toks[node[3]][_SYM], (node[2], 0, -1), (node[3], 0, -1))
        elif name not in _IGNORED_COMMANDS:
            self.fail(node[1], f"unknown command {name!r}")

    def declare(self, name: str, sort: str, name_where: Where, sort_where: Where) -> None:
        match = _VAR_RE.fullmatch(name)
        if match is None:
            self.fail_at(name_where, f"unsupported variable name {name!r}: inputs are X_i and outputs Y_i")
        if sort != "Real":
            self.fail_at(sort_where, f"unsupported sort {sort!r} for {name}: only Real is supported")
        index = int(match[2])
        code = index if match[1] == "X" else ~index
        if code in self.decl_where:
            self.fail_at(name_where, f"{name} is declared twice")
        self.vars[name] = code
        self.decl_where[code] = name_where

    def declare_run(self, k: int) -> None:
        """Declare every variable of a run of declarations; in bulk when all are new X_i/Y_i Real."""
        fields = _fields(self.toks[k][_DECLS])  # declare-const name sort, declare-const name sort, ...
        names, sorts = fields[1::3], fields[2::3]
        if sorts.count("Real") == len(sorts) and _NAMES_RE.fullmatch("\n".join(names) + "\n"):
            codes = [int(name[2:]) if name[0] == "X" else ~int(name[2:]) for name in names]
            if len(set(codes)) == len(codes) and self.decl_where.keys().isdisjoint(codes):
                self.vars.update(zip(names, codes, strict=True))
                self.decl_where.update((code, (k, 1, i)) for i, code in enumerate(codes))
                return
        for i, (name, sort) in enumerate(zip(names, sorts, strict=True)):
            self.declare(name, sort, (k, 1, i), (k, 2, i))

    def add_single_rows(self, rows: list[Row]) -> None:
        if self.single_rows is not None and self.factors and self.factors[-1] is self.single_rows:
            self.single_rows[0][1].extend(rows)
        else:
            self.single_rows = [([], list(rows))]
            self.factors.append(self.single_rows)

    def conjoin_atoms(self, k: int) -> None:
        """AND a run token's comparisons (all top-level or all inside one assert) into the property."""
        conjunction = self.run_conjunction(k)
        if conjunction is None:
            self.unsat = True
            return
        bounds, rows = conjunction
        self.base_bounds.extend(bounds)
        if rows:
            self.add_single_rows(rows)

    def conjoin(self, dnf: list[Term], k: int) -> None:
        """AND one assert's DNF into the property (k: its '(' for the size error)."""
        if not dnf:
            self.unsat = True
        elif len(dnf) == 1:
            bounds, rows = dnf[0]
            self.base_bounds.extend(bounds)
            if rows:
                self.add_single_rows(rows)
        else:
            self.n_terms *= len(dnf)
            if self.n_terms > MAX_DNF_TERMS:
                self.fail(k, f"the disjunctive normal form has more than {MAX_DNF_TERMS} terms")
            self.factors.append(dnf)

    # ---- comparisons in run tokens -------------------------------------------------------------------
    def run_fields(self, k: int) -> tuple[list[str], list[str], list[str]]:
        """Operators, left and right operands of the comparisons of an assert-run or atom-run token."""
        tok = self.toks[k]
        if tok[_ASSERTS]:
            fields = _fields(tok[_ASSERTS])  # assert op left right, assert op left right, ...
            return fields[1::4], fields[2::4], fields[3::4]
        fields = _fields(tok[_ATOMS])
        return fields[0::3], fields[1::3], fields[2::3]

    def run_conjunction(self, k: int) -> Term | None:
        """The conjunction of a run token's comparisons as one term, or None if one is constant false.
        Bulk path when every comparison is (op variable number)."""
        ops, lefts, rights = self.run_fields(k)
        codes = list(map(self.vars.get, lefts))
        if None not in codes:
            try:
                values = list(map(float, rights))
            except ValueError:
                values = []
            if values and all(map(math.isfinite, values)) and "_" not in "".join(rights):
                if min(codes) >= 0:
                    return list(zip(codes, map(_LEFT_IS_UPPER.__getitem__, ops), values, strict=True)), []
                triples = list(zip(codes, map(_LEFT_IS_UPPER.__getitem__, ops), values, strict=True))
                return ([t for t in triples if t[0] >= 0],
                        [({~c: 1.0}, v) if upper else ({~c: -1.0}, 0.0 - v) for c, upper, v in triples if c < 0])
        bounds, rows = [], []
        for kind, value in self.run_atoms(k):
            if kind == _FALSE:
                return None
            if kind == _INPUT:
                bounds.append(value)
            elif kind == _ROW:
                rows.append(value)
        return bounds, rows

    def run_atoms(self, k: int) -> list[tuple[int, object]]:
        """Each comparison of a run token classified on its own (kind, bound or row)."""
        ops, lefts, rights = self.run_fields(k)
        return [self.simple_atom(op, left, right, k, i)
                for i, (op, left, right) in enumerate(zip(ops, lefts, rights, strict=True))]

    def simple_atom(self, op: str, left: str, right: str, k: int, i: int) -> tuple[int, object]:
        """Classify (op left right), the i-th comparison of run token k (groups: 2 left, 3 right)."""
        code_left = self.vars.get(left)
        code_right = self.vars.get(right)
        if code_left is not None and code_right is None:
            value = self.number(right, (k, 3, i))
            code, upper = code_left, _LEFT_IS_UPPER[op]
        elif code_right is not None and code_left is None:
            value = self.number(left, (k, 2, i))
            code, upper = code_right, not _LEFT_IS_UPPER[op]
        else:
            lin_left = self.leaf_linear(left, (k, 2, i))
            lin_right = self.leaf_linear(right, (k, 3, i))
            return self.compare(op, lin_left, lin_right, (k, 0, i))
        if code >= 0:
            return _INPUT, (code, upper, value)
        if upper:
            return _ROW, ({~code: 1.0}, value)
        return _ROW, ({~code: -1.0}, 0.0 - value)

    # ---- formulas -----------------------------------------------------------------------------------
    def formula(self, root: int | list) -> list[Term]:
        """DNF of a formula, iteratively. Frame: [node, is_and, next child, bounds, rows, dnfs, false];
        an ``and`` frame collects single-term children into (bounds, rows) and the others into dnfs,
        an ``or`` frame collects its terms into dnfs."""
        if type(root) is int:
            return self.leaf_dnf(root)
        op = self.head(root)
        if op in _COMPARISONS:
            return self.comparison(root, op)
        stack = [self.frame(root, op)]
        while True:
            frame = stack[-1]
            node, is_and, i = frame[0], frame[1], frame[2]
            if i < len(node):
                frame[2] = i + 1
                child = node[i]
                if type(child) is int and self.toks[child][_ATOMS]:
                    if is_and:
                        conjunction = self.run_conjunction(child)
                        if conjunction is None:
                            frame[6] = True
                        else:
                            frame[3].extend(conjunction[0])
                            frame[4].extend(conjunction[1])
                    else:
                        for kind, value in self.run_atoms(child):
                            self.add_to_frame(frame, _atom_dnf(kind, value))
                elif type(child) is int:
                    self.add_to_frame(frame, self.leaf_dnf(child))
                else:
                    child_op = self.head(child)
                    if child_op in _COMPARISONS:
                        self.add_to_frame(frame, self.comparison(child, child_op))
                    else:
                        stack.append(self.frame(child, child_op))
                continue
            stack.pop()
            dnf = self.finish_and(frame) if is_and else frame[5]
            if not stack:
                return dnf
            self.add_to_frame(stack[-1], dnf)

    def frame(self, node: list, op: str) -> list:
        if op in ("and", "or"):
            return [node, op == "and", 2, [], [], [], False]
        if op in ("not", "=>", "=", "distinct", "xor", "ite"):
            self.fail(node[1], f"unsupported operator {op!r}: only and, or, <=, >=, <, > are supported")
        self.fail(node[1], f"unknown operator {op!r} in a formula")

    def add_to_frame(self, frame: list, dnf: list[Term]) -> None:
        if not frame[1]:  # or
            frame[5].extend(dnf)
            if len(frame[5]) > MAX_DNF_TERMS:
                self.fail(frame[0][0], f"the disjunctive normal form has more than {MAX_DNF_TERMS} terms")
        elif not dnf:
            frame[6] = True
        elif len(dnf) == 1:
            frame[3].extend(dnf[0][0])
            frame[4].extend(dnf[0][1])
        else:
            frame[5].append(dnf)

    def finish_and(self, frame: list) -> list[Term]:
        """Cross product of an and-frame: its collected term times each multi-term child DNF."""
        if frame[6]:
            return []
        result: list[Term] = [(frame[3], frame[4])]
        for dnf in frame[5]:
            if len(result) * len(dnf) > MAX_DNF_TERMS:
                self.fail(frame[0][0], f"the disjunctive normal form has more than {MAX_DNF_TERMS} terms")
            result = [(b1 + b2, r1 + r2) for b1, r1 in result for b2, r2 in dnf]
        return result

    def leaf_dnf(self, k: int) -> list[Term]:
        """DNF of a single-token formula: a run of comparisons (conjoined), true or false."""
        tok = self.toks[k]
        if tok[_ATOMS]:
            conjunction = self.run_conjunction(k)
            return [] if conjunction is None else [conjunction]
        if tok[_SYM] == "true":
            return [([], [])]
        if tok[_SYM] == "false":
            return []
        self.fail(k, f"expected a formula, found {self.token_text(k)}")

    def comparison(self, node: list, op: str) -> list[Term]:
        """DNF (0 or 1 term) of a general comparison (op t1 t2 ...) = AND_i (t_i op t_{i+1})."""
        if len(node) < 4:
            self.fail(node[1], f"{op!r} needs at least two arguments")
        terms = [self.linear(child) for child in node[2:]]
        bounds: list[Bound] = []
        rows: list[Row] = []
        for left, right in zip(terms[:-1], terms[1:], strict=True):
            kind, value = self.compare(op, left, right, (node[0], 0, -1))
            if kind == _FALSE:
                return []
            if kind == _INPUT:
                bounds.append(value)
            elif kind == _ROW:
                rows.append(value)
        return [(bounds, rows)]

    def compare(self, op: str, left: Lin, right: Lin, where: Where) -> tuple[int, object]:
        """Normalise ``left op right`` to ``sum c_v v <= bound`` and classify it."""
        if op[0] == ">":
            left, right = right, left
        coeffs = dict(left[0])
        for code, c in right[0].items():
            coeffs[code] = coeffs.get(code, 0.0) - c
        coeffs = {code: c for code, c in coeffs.items() if c != 0.0}
        bound = right[1] - left[1]
        if not coeffs:
            return (_TRUE if bound >= 0.0 else _FALSE), None
        inputs = [code for code in coeffs if code >= 0]
        if inputs:
            if len(coeffs) > 1:
                ordered = sorted(coeffs, key=lambda c: (c < 0, c if c >= 0 else ~c))
                names = ", ".join(_var_name(code) for code in ordered)
                what = "input and output variables" if len(inputs) < len(coeffs) else "several inputs"
                self.fail_at(where, f"unsupported input constraint over {names}: it mixes {what}; only "
                                    "bounds on a single X_i are supported")
            (code, a), = coeffs.items()
            return _INPUT, (code, a > 0.0, bound / a)
        return _ROW, ({~code: c for code, c in coeffs.items()}, bound)

    # ---- terms --------------------------------------------------------------------------------------
    def number(self, text: str, where: Where) -> float:
        """A finite decimal literal, or a SpecError naming what the token is instead."""
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if math.isfinite(value) and "_" not in text:
            return value
        if _VAR_RE.fullmatch(text):
            self.fail_at(where, f"undeclared variable {text}")
        if text[0] in "0123456789+-.":
            self.fail_at(where, f"malformed number {text!r}")
        self.fail_at(where, f"unknown token {text!r}")

    def leaf_linear(self, text: str, where: Where) -> Lin:
        code = self.vars.get(text)
        if code is not None:
            return {code: 1.0}, 0.0
        return {}, self.number(text, where)

    def token_text(self, k: int) -> str:
        tok = self.toks[k]
        if tok[_ATOMS]:
            return "a comparison"
        if tok[_DECLS] or tok[_ASSERTS]:
            return "a command"
        return repr(tok[_SYM] or tok[_PAREN])

    def term_leaf(self, k: int) -> Lin:
        text = self.toks[k][_SYM]
        if not text:
            self.fail(k, f"expected a term, found {self.token_text(k)}")
        return self.leaf_linear(text, (k, 0, -1))

    def term_head(self, node: list) -> str:
        op = self.head(node)
        if op not in _TERM_OPS:
            self.fail(node[1], f"unknown operator {op!r} in a term (expected +, -, * or /)")
        return op

    def linear(self, root: int | list) -> Lin:
        """Evaluate a linear term iteratively: frames are [node, operator, next child, child values]."""
        if type(root) is int:
            return self.term_leaf(root)
        stack = [[root, self.term_head(root), 2, []]]
        while True:
            frame = stack[-1]
            node, op, i, values = frame
            if i < len(node):
                frame[2] = i + 1
                child = node[i]
                if type(child) is int:
                    values.append(self.term_leaf(child))
                else:
                    stack.append([child, self.term_head(child), 2, []])
                continue
            stack.pop()
            value = self.apply(node, op, values)
            if not stack:
                return value
            stack[-1][3].append(value)

    def apply(self, node: list, op: str, values: list[Lin]) -> Lin:
        if not values:
            self.fail(node[1], f"{op!r} needs at least one argument")
        if op == "+" or (op == "-" and len(values) > 1):
            coeffs = dict(values[0][0])
            const = values[0][1]
            sign = 1.0 if op == "+" else -1.0
            for term_coeffs, term_const in values[1:]:
                for code, c in term_coeffs.items():
                    coeffs[code] = coeffs.get(code, 0.0) + sign * c
                const += sign * term_const
            return coeffs, const
        if op == "-":
            return {code: -c for code, c in values[0][0].items()}, -values[0][1]
        if op == "*":
            scale = 1.0
            linear_part: Lin | None = None
            for i, value in enumerate(values):
                if value[0]:
                    if linear_part is not None:
                        self.fail(self.loc(node[2 + i]), "non-linear term: product of two variable terms")
                    linear_part = value
                else:
                    scale *= value[1]
            if linear_part is None:
                return {}, scale
            return {code: c * scale for code, c in linear_part[0].items()}, linear_part[1] * scale
        # op == "/": left-associative division by constants
        coeffs, const = dict(values[0][0]), values[0][1]
        for i, (divisor_coeffs, divisor) in enumerate(values[1:], start=1):
            if divisor_coeffs:
                self.fail(self.loc(node[2 + i]), "non-linear term: division by a variable term")
            if divisor == 0.0:
                self.fail(self.loc(node[2 + i]), "division by zero")
            coeffs = {code: c / divisor for code, c in coeffs.items()}
            const /= divisor
        return coeffs, const

    # ---- assembly -----------------------------------------------------------------------------------
    def count_declared(self, kind: str) -> int:
        is_input = kind == "X"
        codes = sorted((code if is_input else ~code) for code in self.decl_where if (code >= 0) == is_input)
        for expected, index in enumerate(codes):
            if index != expected:
                code = index if is_input else ~index
                self.fail_at(self.decl_where[code], f"{kind}_{expected} is not declared but {kind}_{index} is: "
                                               f"variables must be {kind}_0, {kind}_1, ... without gaps")
        return len(codes)

    def assemble(self) -> Property:
        n_inputs = self.count_declared("X")
        n_outputs = self.count_declared("Y")
        if n_inputs == 0:
            self.fail(len(self.toks), "no input variables declared (expected (declare-const X_0 Real) ...)")
        if self.unsat:
            return Property(boxes=[], n_inputs=n_inputs, n_outputs=n_outputs, source=self.source)

        lower = np.full(n_inputs, -np.inf)
        upper = np.full(n_inputs, np.inf)
        _apply_bounds(self.base_bounds, lower, upper)
        base_key = (lower.tobytes(), upper.tobytes())
        groups: dict[tuple[bytes, bytes], tuple[np.ndarray, np.ndarray, list[list[Row]]]] = {}
        for combination in itertools.product(*self.factors):
            bounds = [b for term in combination for b in term[0]]
            rows = [r for term in combination for r in term[1]]
            lo, hi, key = lower, upper, base_key
            if bounds:
                lo, hi = lower.copy(), upper.copy()
                _apply_bounds(bounds, lo, hi)
                key = (lo.tobytes(), hi.tobytes())
            groups.setdefault(key, (lo, hi, []))[2].append(rows)

        boxes: list[InputBox] = []
        for lo, hi, row_lists in groups.values():
            for side, values in (("lower", lo), ("upper", hi)):
                missing = np.flatnonzero(~np.isfinite(values))
                if missing.size:
                    index = int(missing[0])
                    where = f" in one of the {len(groups)} input boxes" if len(groups) > 1 else ""
                    self.fail_at(self.decl_where[index], f"X_{index} has no finite {side} bound{where}")
            if np.any(lo > hi):
                logger.debug("%s: dropping an empty input box (%d disjuncts)", self.source, len(row_lists))
                continue
            boxes.append(InputBox(lo, hi, [_disjunct(rows, n_outputs) for rows in row_lists]))
        return Property(boxes=boxes, n_inputs=n_inputs, n_outputs=n_outputs, source=self.source)


def _atom_dnf(kind: int, value: object) -> list[Term]:
    if kind == _TRUE:
        return [([], [])]
    if kind == _FALSE:
        return []
    if kind == _INPUT:
        return [([value], [])]  # type: ignore[list-item]
    return [([], [value])]  # type: ignore[list-item]


def _apply_bounds(bounds: list[Bound], lower: np.ndarray, upper: np.ndarray) -> None:
    """Intersect the box (lower, upper) with each bound X_i <= v / X_i >= v, in place; -0.0 becomes 0.0
    so that equal boxes have equal bytes."""
    if bounds:
        table = np.array(bounds, dtype=np.float64)  # [n_bounds, 3]: index, is_upper, value
        index = table[:, 0].astype(np.intp)
        is_upper = table[:, 1] != 0.0
        np.minimum.at(upper, index[is_upper], table[is_upper, 2])
        np.maximum.at(lower, index[~is_upper], table[~is_upper, 2])
    lower += 0.0
    upper += 0.0


def _disjunct(rows: list[Row], n_outputs: int) -> Disjunct:
    """Stack sparse rows sum_j c_j Y_j <= rhs into dense C [rows, n_outputs] and rhs [rows]."""
    C = np.zeros((len(rows), n_outputs), dtype=np.float64)
    rhs = np.empty(len(rows), dtype=np.float64)
    for r, (coeffs, bound) in enumerate(rows):
        for j, c in coeffs.items():
            C[r, j] = c
        rhs[r] = bound
    return Disjunct(C, rhs)
