"""VNN-LIB 2.0 reader (the query language of VNN-COMP 2026), producing :class:`curvebound.spec.Property`.

VNN-LIB 2.0 (VNNLIB/VNNLIB-Standard, chapter "Query Language") replaces 1.0's flat ``X_i``/``Y_j``
constants by typed tensor variables declared per network::

    (vnnlib-version <2.0>)                       ; optional header
    (declare-network f
        (declare-input  X float32 [1,5])         ; name, element type, shape, optional "onnx name"
        (declare-output Y float32 [1,5]))
    (assert (and (>= X[0,0] -0.1) (<= X[0,0] 0.1)))
    (assert (or (>= Y[0,1] Y[0,0]) (== Y[0,2] 1.0)))

Assertions use SMT-LIB prefix syntax over tensor elements ``V[i,j,...]`` (zero based, one index per
dimension; a single row-major flat index is accepted too, and a scalar ``[]`` variable is written
bare), constants, ``+ - *`` (``/`` by constants is accepted as in 1.0), comparisons
``<= >= < > == = !=`` and ``and``/``or``. Variable names are global and unique; the network name is
never used inside assertions.

Supported subset (curvebound verifies one single-input, single-output ONNX network): exactly one
``declare-network`` with one ``declare-input`` and one ``declare-output``. Hidden nodes
(``declare-hidden``), several networks (``equal-to``/``isomorphic-to``), several inputs or outputs raise
:class:`SpecError` naming the construct. Element types are recorded but not enforced (bounds are
computed over the reals, which covers every float type).

How: each 2.0 query is translated, token by token, into the 1.0 language (``X[0,i]`` becomes ``X_k`` with
``k`` the row-major flat index; ``==`` becomes a conjunction of ``<=`` and ``>=``; ``!=`` a disjunction of
``<`` and ``>``) and handed to :func:`curvebound.io.vnnlib.parse_vnnlib_text`, so both versions share one
DNF expansion (conjunctions of separate ``or`` asserts become their cross product) and one normal form.
Each translated assert sits on the line of its source assert, so errors found by the 1.0 reader still
name the right line; name, index and declaration errors are reported here with line and column.

:func:`parse_query` reads either version, detected from the text: a ``vnnlib-version`` or
``declare-network`` command means 2.0.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import NoReturn

from curvebound.errors import SpecError
from curvebound.io.vnnlib import parse_vnnlib_text, read_spec_text
from curvebound.spec import Property

__all__ = ["parse_query", "parse_query_text", "parse_vnnlib2", "parse_vnnlib2_text", "is_vnnlib2", "Variable"]

# Tokens: a parenthesis, a bracketed index/shape list, a quoted string, any other atom.
_TOKEN_RE = re.compile(r'(\()|(\))|(\[[^\]]*\])|("[^"]*")|([^\s()\[\]";]+)')
_COMMENT_RE = re.compile(r";[^\n]*")
_V2_RE = re.compile(r"\(\s*(?:vnnlib-version|declare-network)\b")
_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_COMPARISONS = frozenset({"<=", ">=", "<", ">", "==", "=", "!="})
_CONNECTIVES = frozenset({"and", "or"})
_ARITHMETIC = frozenset({"+", "-", "*", "/"})


@dataclass
class Variable:
    """A declared tensor variable: ``kind`` is "input" or "output"; ``offset`` is its first flat index
    in the property's input or output vector (always 0 in the supported single-variable subset)."""

    name: str
    kind: str
    element_type: str
    shape: tuple[int, ...]
    network: str
    onnx_name: str | None = None
    offset: int = 0

    @property
    def size(self) -> int:
        return math.prod(self.shape)


# A token: (kind, text, offset in the comment-stripped text); kind is "(", ")", "[", "str" or "atom".
_Tok = tuple[str, str, int]


def is_vnnlib2(text: str) -> bool:
    """True iff ``text`` is a VNN-LIB 2.0 query (has a ``vnnlib-version`` or ``declare-network`` command)."""
    return _V2_RE.search(_COMMENT_RE.sub("", text)) is not None


def _read_text(path: str | os.PathLike) -> tuple[str, str]:
    return read_spec_text(path)


def parse_query(path: str | os.PathLike) -> Property:
    """Read a VNN-LIB 1.0 or 2.0 file (optionally ``.gz``) into the normal form; the version is detected."""
    text, source = _read_text(path)
    return parse_query_text(text, source)


def parse_query_text(text: str, source: str = "<string>") -> Property:
    """Parse VNN-LIB text of either version (see :func:`is_vnnlib2`)."""
    if is_vnnlib2(text):
        return parse_vnnlib2_text(text, source)
    return parse_vnnlib_text(text, source)


def parse_vnnlib2(path: str | os.PathLike) -> Property:
    """Read a VNN-LIB 2.0 file (optionally ``.gz``) into the normal form; raises SpecError on bad input."""
    text, source = _read_text(path)
    return parse_vnnlib2_text(text, source)


def parse_vnnlib2_text(text: str, source: str = "<string>") -> Property:
    """Parse VNN-LIB 2.0 text; ``source`` names it in error messages and in ``Property.source``."""
    translator = _Translator(text, source)
    v1_text = translator.translate()
    prop = parse_vnnlib_text(v1_text, source=source)
    return prop


def declared_variables(text: str, source: str = "<string>") -> list[Variable]:
    """The declared variables of a 2.0 query, in declaration order (used by the 2.0 result writer)."""
    translator = _Translator(text, source)
    translator.translate()
    return translator.variables


class _Translator:
    """Translate a 2.0 query into an equivalent 1.0 query whose asserts keep their source lines."""

    def __init__(self, text: str, source: str):
        self.source = source
        self.text = _COMMENT_RE.sub(lambda m: " " * len(m.group(0)), text)  # keeps offsets
        self.toks: list[_Tok] = []
        for m in _TOKEN_RE.finditer(self.text):
            kind = ("(", ")", "[", "str", "atom")[m.lastindex - 1]
            self.toks.append((kind, m.group(m.lastindex), m.start()))
        self.variables: list[Variable] = []
        self.by_name: dict[str, Variable] = {}
        self.networks: list[str] = []

    # ---- errors -------------------------------------------------------------------------------------
    def fail(self, pos: int, message: str) -> NoReturn:
        line = self.text.count("\n", 0, pos) + 1
        column = pos - self.text.rfind("\n", 0, pos)
        raise SpecError(self.source, line, column, message)

    def line_of(self, pos: int) -> int:
        return self.text.count("\n", 0, pos) + 1

    # ---- reading ------------------------------------------------------------------------------------
    def read(self) -> list:
        """Nested lists of tokens; a list node is ``[open-token, child, ...]`` (iterative)."""
        top: list = []
        cur = top
        stack: list[list] = []
        for tok in self.toks:
            if tok[0] == "(":
                node: list = [tok]
                cur.append(node)
                stack.append(cur)
                cur = node
            elif tok[0] == ")":
                if not stack:
                    self.fail(tok[2], "unbalanced parentheses: ')' without a matching '('")
                cur = stack.pop()
            else:
                cur.append(tok)
        if stack:
            self.fail((stack[1] if len(stack) > 1 else cur)[0][2], "unbalanced parentheses: this '(' is never closed")
        return top

    def head(self, node: list) -> str:
        if len(node) < 2 or isinstance(node[1], list) or node[1][0] != "atom":
            self.fail(node[0][2], "expected an operator or command name after '('")
        return node[1][1]

    @staticmethod
    def pos(node: list | _Tok) -> int:
        return node[0][2] if isinstance(node, list) else node[2]

    # ---- translation --------------------------------------------------------------------------------
    def translate(self) -> str:
        lines = [""] * (self.text.count("\n") + 1)
        seen_assert = False
        for item in self.read():
            if not isinstance(item, list):
                self.fail(item[2], f"expected a command such as (declare-network ...) or (assert ...), got {item[1]!r}")
            name = self.head(item)
            if name == "vnnlib-version":
                version = "".join(t[1] for t in item[2:] if not isinstance(t, list)).strip("<>")
                if not version.startswith("2."):
                    self.fail(item[0][2], f"unsupported VNN-LIB version {version!r} (this reader handles 2.x)")
            elif name == "declare-network":
                if seen_assert:
                    self.fail(item[0][2], "declare-network after an assert: declarations must come first")
                self.declare_network(item)
            elif name == "assert":
                seen_assert = True
                if len(item) != 3:
                    self.fail(item[0][2], f"assert takes exactly one formula, got {len(item) - 2}")
                line = self.line_of(item[0][2])
                lines[line - 1] += f" (assert {self.formula(item[2])})"
            elif name in ("check-sat", "get-model", "exit", "set-info", "set-option", "set-logic"):
                continue
            else:
                self.fail(item[1][2], f"unknown command {name!r}")
        inputs = [v for v in self.variables if v.kind == "input"]
        outputs = [v for v in self.variables if v.kind == "output"]
        if not inputs:
            self.fail(len(self.text), "no network input declared "
                                      "(expected (declare-network N (declare-input X ...) ...))")
        decls = [f"(declare-const X_{i} Real)" for i in range(inputs[0].size)]
        decls += [f"(declare-const Y_{j} Real)" for j in range(outputs[0].size)] if outputs else []
        lines[0] = " ".join(decls) + lines[0]
        return "\n".join(lines)

    def declare_network(self, node: list) -> None:
        if len(node) < 3 or isinstance(node[2], list) or node[2][0] != "atom":
            self.fail(node[0][2], "declare-network needs a name, e.g. (declare-network f (declare-input ...) ...)")
        net = node[2][1]
        if self.networks:
            self.fail(node[0][2], f"a second network {net!r}: curvebound verifies queries over one network only")
        self.networks.append(net)
        counts = {"input": 0, "output": 0}
        for decl in node[3:]:
            if not isinstance(decl, list):
                self.fail(decl[2], f"expected (declare-input ...) or (declare-output ...), got {decl[1]!r}")
            kind = self.head(decl)
            if kind in ("equal-to", "isomorphic-to"):
                self.fail(decl[0][2], f"({kind} ...) relates several networks: not supported by curvebound")
            if kind == "declare-hidden":
                self.fail(decl[0][2], "declare-hidden (constraints on hidden nodes) is not supported by curvebound")
            if kind not in ("declare-input", "declare-output"):
                self.fail(decl[1][2], f"unknown network declaration {kind!r}")
            role = kind.split("-")[1]
            args = decl[2:]
            if len(args) not in (3, 4) or any(isinstance(a, list) for a in args) or args[0][0] != "atom" \
                    or args[1][0] != "atom" or args[2][0] != "[" or (len(args) == 4 and args[3][0] != "str"):
                self.fail(decl[0][2], f"{kind} takes a name, an element type, a shape and optionally an ONNX "
                                      f'name, e.g. ({kind} X float32 [1,5] "input")')
            name = args[0][1]
            if not _NAME_RE.match(name):
                self.fail(args[0][2], f"invalid variable name {name!r}: letters, digits and '_', "
                                      "starting with a letter")
            if name in self.by_name:
                self.fail(args[0][2], f"variable {name!r} is declared twice")
            if role == "input" and counts["output"]:
                self.fail(decl[0][2], "inputs must be declared before outputs")
            counts[role] += 1
            if counts[role] > 1:
                self.fail(decl[0][2], f"a second network {role}: curvebound supports one input and one output")
            shape = self.shape(args[2])
            var = Variable(name, role, args[1][1], shape, net, args[3][1][1:-1] if len(args) == 4 else None)
            self.variables.append(var)
            self.by_name[name] = var
        if not counts["input"]:
            self.fail(node[0][2], f"network {net!r} declares no input")

    def shape(self, tok: _Tok) -> tuple[int, ...]:
        body = tok[1][1:-1].replace(",", " ").split()
        try:
            dims = tuple(int(d) for d in body)
        except ValueError:
            self.fail(tok[2], f"a shape is a list of non-negative integers, got {tok[1]}")
        if any(d <= 0 for d in dims):
            self.fail(tok[2], f"shape dimensions must be positive, got {tok[1]}")
        return dims

    # ---- formulas and terms -------------------------------------------------------------------------
    def formula(self, node: list | _Tok) -> str:
        """1.0 text of a boolean formula; iterative over connectives (deep nesting is fine)."""
        if not isinstance(node, list):
            if node[1] in ("true", "false"):
                return node[1]
            self.fail(node[2], f"expected a formula such as (<= a b), got {node[1]!r}")
        out: list[str] = []
        stack: list[tuple[list, int]] = [(node, 0)]
        while stack:
            cur, i = stack.pop()
            op = self.head(cur)
            if op in _CONNECTIVES:
                if i == 0:
                    if len(cur) < 3:
                        self.fail(cur[0][2], f"{op!r} needs at least one argument")
                    out.append(f"({op}")
                if i < len(cur) - 2:
                    stack.append((cur, i + 1))
                    child = cur[2 + i]
                    if isinstance(child, list):
                        stack.append((child, 0))
                    elif child[1] in ("true", "false"):
                        out.append(child[1])
                    else:
                        self.fail(child[2], f"expected a formula such as (<= a b), got {child[1]!r}")
                else:
                    out.append(")")
            elif op in _COMPARISONS:
                out.append(self.comparison(cur, op))
            else:
                self.fail(cur[1][2], f"expected 'and', 'or' or a comparison, got {op!r}")
        return " ".join(out)

    def comparison(self, node: list, op: str) -> str:
        args = self.terms(node[2:])
        if len(args) < 2:
            self.fail(node[0][2], f"comparison {op!r} needs at least two arguments")
        if op in ("==", "="):
            return f"(and (<= {' '.join(args)}) (>= {' '.join(args)}))"
        if op == "!=":
            if len(args) != 2:
                self.fail(node[0][2], "'!=' takes exactly two arguments")
            return f"(or (< {args[0]} {args[1]}) (> {args[0]} {args[1]}))"
        return f"({op} {' '.join(args)})"

    def term(self, node: list | _Tok) -> str:
        if not isinstance(node, list):
            return self.atom(node, None)
        op = self.head(node)
        if op not in _ARITHMETIC:
            self.fail(node[1][2], f"expected an arithmetic term (+, -, *, a number or a variable), got {op!r}")
        parts = self.terms(node[2:])
        if not parts:
            self.fail(node[0][2], f"{op!r} needs at least one argument")
        return f"({op} {' '.join(parts)})"

    def terms(self, children: list) -> list[str]:
        """1.0 text of each argument term; a variable and its index list are one term (``X[0,1]``)."""
        parts: list[str] = []
        k = 0
        while k < len(children):
            child = children[k]
            nxt = children[k + 1] if k + 1 < len(children) else None
            if not isinstance(child, list) and nxt is not None and not isinstance(nxt, list) and nxt[0] == "[":
                parts.append(self.atom(child, nxt))
                k += 2
            else:
                parts.append(self.term(child))
                k += 1
        return parts

    def atom(self, tok: _Tok, index_tok: _Tok | None) -> str:
        if tok[0] == "[":
            self.fail(tok[2], f"an index {tok[1]} must follow a variable name")
        if tok[0] != "atom":
            self.fail(tok[2], f"unexpected {tok[1]!r} in a term")
        text = tok[1]
        try:
            float(text)
            return text
        except ValueError:
            pass
        name = text
        index_text = None if index_tok is None else index_tok[1][1:-1]
        var = self.by_name.get(name)
        if var is None:
            self.fail(tok[2], f"unknown variable {name!r} (declare it in (declare-network ...) first)")
        flat = self.flat_index(var, index_text, tok[2])
        return f"{'X' if var.kind == 'input' else 'Y'}_{var.offset + flat}"

    def flat_index(self, var: Variable, index_text: str | None, pos: int) -> int:
        if index_text is None:
            if var.size == 1:
                return 0
            zeros = ",".join("0" * len(var.shape))
            self.fail(pos, f"{var.name} has shape {list(var.shape)}: index it, e.g. {var.name}[{zeros}]")
        try:
            idx = [int(i) for i in index_text.replace(",", " ").split()]
        except ValueError:
            self.fail(pos, f"indices of {var.name} must be integers, got [{index_text}]")
        if len(idx) == 1 and len(var.shape) != 1:
            if not 0 <= idx[0] < var.size:
                self.fail(pos, f"flat index {idx[0]} of {var.name} is outside 0..{var.size - 1}")
            return idx[0]
        if len(idx) != len(var.shape):
            self.fail(pos, f"{var.name} has {len(var.shape)} dimensions {list(var.shape)}, indexed with {len(idx)}")
        flat = 0
        for i, d in zip(idx, var.shape):
            if not 0 <= i < d:
                self.fail(pos, f"index {idx} is outside the shape {list(var.shape)} of {var.name}")
            flat = flat * d + i
        return flat
