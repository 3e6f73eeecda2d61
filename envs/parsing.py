"""Parse a normalised answer into a small syntax tree, with a token whitelist and limits.

Model output never reaches ``eval``, ``sympify`` or ``parse_expr``: this module tokenises
the text against a fixed grammar of numbers, single-letter symbols, known function names
and LaTeX commands, and builds a tree of plain tuples. Anything else raises
:class:`ParseError`. The tree is what crosses to the sympy worker process.

Node kinds (all tuples, first element the kind):

``("num", "3.5")``, ``("sym", "x")``, ``("const", "pi" | "E" | "I" | "oo")``,
``("add", (terms...))``, ``("mul", (factors...))``, ``("neg", a)``, ``("div", a, b)``,
``("pow", a, b)``, ``("fact", a)``, ``("func", name, (args...))``, ``("abs", a)``,
``("rel", op, a, b)`` with op one of ``= < <= > >= !=``,
``("tuple", opening, closing, (items...))`` for brackets such as ``(1, 2]``,
``("set", (items...))``, ``("list", (items...))`` for a bare comma list,
``("union", (items...))`` and ``("pm", a, b)`` for ``a \\pm b``.

Conventions: ``i`` is the imaginary unit, ``e`` is Euler's number, a juxtaposition such as
``2x`` or ``x(y-z)`` is a product, and an unknown word of two or three letters is a product
of single-letter symbols while a longer unknown word is not math (``ParseError``).
"""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "MAX_DEPTH",
    "MAX_TOKENS",
    "Node",
    "ParseError",
    "has_decimal",
    "parse_answer",
]

Node = tuple[Any, ...]

MAX_TOKENS = 400
MAX_DEPTH = 60


class ParseError(ValueError):
    """Raised when an answer is not in the supported math grammar or exceeds a limit."""


# Function names the grammar accepts; extraction also treats them as math, not prose.
FUNCTION_NAMES = frozenset(
    [
        "sin",
        "cos",
        "tan",
        "sec",
        "csc",
        "cot",
        "arcsin",
        "arccos",
        "arctan",
        "sinh",
        "cosh",
        "tanh",
        "log",
        "ln",
        "exp",
        "sqrt",
    ]
)
_CONSTANT_WORDS = {"pi": "pi", "infty": "oo", "infinity": "oo", "inf": "oo", "oo": "oo"}
_GREEK = frozenset(
    [
        "alpha",
        "beta",
        "gamma",
        "delta",
        "epsilon",
        "varepsilon",
        "zeta",
        "eta",
        "theta",
        "vartheta",
        "iota",
        "kappa",
        "lambda",
        "mu",
        "nu",
        "xi",
        "rho",
        "sigma",
        "tau",
        "upsilon",
        "phi",
        "varphi",
        "chi",
        "psi",
        "omega",
        "Gamma",
        "Delta",
        "Theta",
        "Lambda",
        "Xi",
        "Sigma",
        "Phi",
        "Psi",
        "Omega",
    ]
)
_RELATION_COMMANDS = {
    "\\le": "<=",
    "\\leq": "<=",
    "\\leqslant": "<=",
    "\\ge": ">=",
    "\\geq": ">=",
    "\\geqslant": ">=",
    "\\lt": "<",
    "\\gt": ">",
    "\\ne": "!=",
    "\\neq": "!=",
}
_PRODUCT_COMMANDS = frozenset({"\\cdot", "\\times", "*"})
_TOKEN = re.compile(
    r"\s*(?:"
    r"(?P<num>\d+\.\d*|\.\d+|\d+)"
    r"|(?P<cmd>\\[a-zA-Z]+|\\[{}|])"
    r"|(?P<word>[a-zA-Z]+)"
    r"|(?P<op><=|>=|!=|\*\*|[-+*/^_()\[\]{}=,!|<>])"
    r")"
)


def _tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    position = 0
    text = text.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            offset = len(text) - len(text[position:].lstrip())
            raise ParseError(f"unsupported character {text[offset]!r} at offset {offset}")
        position = match.end()
        token = match.group("num") or match.group("cmd") or match.group("word") or match.group("op")
        if token is None:
            break
        tokens.append("^" if token == "**" else token)
        if len(tokens) > MAX_TOKENS:
            raise ParseError(f"answer has more than {MAX_TOKENS} tokens")
    return tokens


class _Parser:
    """Recursive-descent parser over a token list; see the module docstring for the grammar."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.position = 0
        self.depth = 0

    # -- token helpers --------------------------------------------------------------------

    def peek(self, offset: int = 0) -> str | None:
        index = self.position + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise ParseError("unexpected end of answer")
        self.position += 1
        return token

    def expect(self, token: str) -> None:
        found = self.peek()
        if found != token:
            raise ParseError(f"expected {token!r}, got {found!r}")
        self.position += 1

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ParseError(f"answer is nested deeper than {MAX_DEPTH} levels")

    def leave(self) -> None:
        self.depth -= 1

    # -- grammar --------------------------------------------------------------------------

    def parse_top(self, closing: frozenset[str] = frozenset()) -> tuple[list[Node], bool]:
        """Parse comma-separated items until a token in ``closing`` or the end."""
        items = [self.parse_union()]
        had_comma = False
        while self.peek() == ",":
            self.take()
            had_comma = True
            if self.peek() is None or self.peek() in closing:
                break  # a trailing comma, as in "(1, 2,)"
            items.append(self.parse_union())
        return items, had_comma

    def parse_union(self) -> Node:
        items = [self.parse_relation()]
        while self.peek() == "\\cup":
            self.take()
            items.append(self.parse_relation())
        return items[0] if len(items) == 1 else ("union", tuple(items))

    def parse_relation(self) -> Node:
        left = self.parse_expression()
        token = self.peek()
        op = _RELATION_COMMANDS.get(token or "", token)
        if op in ("=", "<", "<=", ">", ">=", "!="):
            self.take()
            right = self.parse_expression()
            following = self.peek()
            if following in ("=", "<", "<=", ">", ">=", "!=") or following in _RELATION_COMMANDS:
                raise ParseError("chained relations are not supported")
            return ("rel", op, left, right)
        return left

    def parse_expression(self) -> Node:
        self.enter()
        if self.peek() == "\\pm":
            self.take()
            node: Node = ("pm", ("num", "0"), self.parse_term())
        else:
            node = self.parse_term()
        terms = [node]
        while self.peek() in ("+", "-", "\\pm", "\\mp"):
            op = self.take()
            term = self.parse_term()
            if op == "+":
                terms.append(term)
            elif op == "-":
                terms.append(("neg", term))
            else:
                left = terms[0] if len(terms) == 1 else ("add", tuple(terms))
                terms = [("pm", left, term)]
        self.leave()
        return terms[0] if len(terms) == 1 else ("add", tuple(terms))

    def starts_atom(self, token: str | None) -> bool:
        if token is None:
            return False
        if token[0].isdigit() or token[0] == "." or token[0].isalpha():
            return True
        if token in ("(", "{", "\\{"):
            return True
        if token.startswith("\\") and token not in _RELATION_COMMANDS:
            return token not in _PRODUCT_COMMANDS and token not in (
                "\\div",
                "\\pm",
                "\\mp",
                "\\cup",
                "\\}",
                "\\rfloor",
                "\\rceil",
            )
        return False

    def parse_term(self) -> Node:
        factors = [self.parse_unary()]
        while True:
            token = self.peek()
            if token in _PRODUCT_COMMANDS:
                self.take()
                factors.append(self.parse_unary())
            elif token in ("/", "\\div"):
                self.take()
                divisor = self.parse_unary()
                numerator = factors[0] if len(factors) == 1 else ("mul", tuple(factors))
                factors = [("div", numerator, divisor)]
            elif self.starts_atom(token):
                factors.append(self.parse_power())
            else:
                break
        return factors[0] if len(factors) == 1 else ("mul", tuple(factors))

    def parse_unary(self) -> Node:
        token = self.peek()
        if token == "-":
            self.take()
            self.enter()
            node = ("neg", self.parse_unary())
            self.leave()
            return node
        if token == "+":
            self.take()
            return self.parse_unary()
        return self.parse_power()

    def parse_power(self) -> Node:
        self.enter()
        base = self.parse_postfix()
        if self.peek() == "^":
            self.take()
            exponent = self.parse_exponent()
            base = ("pow", base, exponent)
            while self.peek() == "!":
                self.take()
                base = ("fact", base)
        self.leave()
        return base

    def parse_exponent(self) -> Node:
        token = self.peek()
        if token == "{":
            self.take()
            node = self.parse_group("}")
            return node
        if token in ("-", "+"):
            self.take()
            inner = self.parse_exponent()
            return ("neg", inner) if token == "-" else inner
        return self.parse_power()

    def parse_postfix(self) -> Node:
        node = self.parse_atom()
        while self.peek() == "!":
            self.take()
            node = ("fact", node)
        return node

    def parse_group(self, closing: str) -> Node:
        """Parse the inside of a grouping bracket up to ``closing`` (a single value)."""
        items, had_comma = self.parse_top(frozenset({closing}))
        self.expect(closing)
        if had_comma or len(items) > 1:
            return ("list", tuple(items))
        return items[0]

    def parse_argument(self) -> Node:
        """Parse a LaTeX macro argument: a braced group or a single digit or token."""
        token = self.peek()
        if token == "{":
            self.take()
            return self.parse_group("}")
        if token is not None and token[0].isdigit():
            # \frac12 means \frac{1}{2}: an unbraced argument is one digit.
            self.take()
            if len(token) > 1:
                self.tokens.insert(self.position, token[1:])
            return ("num", token[0])
        if token is not None and token.isalpha() and len(token) > 1:
            self.take()
            self.tokens.insert(self.position, token[1:])
            return self.word_to_node(token[0])
        return self.parse_atom()

    def parse_function_argument(self) -> Node:
        token = self.peek()
        if token in ("(", "{"):
            return self.parse_atom()
        return self.parse_power()

    def word_to_node(self, word: str) -> Node:
        if word in _CONSTANT_WORDS:
            return ("const", _CONSTANT_WORDS[word])
        if word == "e":
            return ("const", "E")
        if word == "i":
            return ("const", "I")
        return ("sym", word)

    def parse_subscript(self, name: str) -> str:
        self.take()  # "_"
        token = self.take()
        if token == "{":
            parts = []
            while self.peek() not in ("}", None):
                part = self.take()
                if not part.isalnum():
                    raise ParseError(f"unsupported subscript token {part!r}")
                parts.append(part)
            self.expect("}")
            subscript = "".join(parts)
        else:
            subscript = token
        if not subscript.isalnum():
            raise ParseError(f"unsupported subscript {subscript!r}")
        return f"{name}_{subscript}"

    def parse_function(self, name: str) -> Node:
        power: Node | None = None
        base: Node | None = None
        if name == "log" and self.peek() == "_":
            self.take()
            base = self.parse_argument()
        if self.peek() == "^":
            self.take()
            power = self.parse_exponent()
        argument = self.parse_function_argument()
        args = (argument,) if base is None else (argument, base)
        node: Node = ("func", name, args)
        if power is not None:
            node = ("pow", node, power)
        return node

    def parse_word(self, word: str) -> Node:
        if word in FUNCTION_NAMES:
            return self.parse_function(word)
        if word in _CONSTANT_WORDS:
            return ("const", _CONSTANT_WORDS[word])
        if len(word) > 3:
            raise ParseError(f"unknown word {word!r}")
        if len(word) > 1:
            # "ab" is a product of single-letter symbols; the rest goes back on the stream.
            self.tokens.insert(self.position, word[1:])
            return self.word_to_node(word[0])
        if self.peek() == "_":
            return ("sym", self.parse_subscript(word))
        return self.word_to_node(word)

    def parse_bracket(self, opening: str) -> Node:
        items, had_comma = self.parse_top(frozenset({")", "]"}))
        closing = self.take()
        if closing not in (")", "]"):
            raise ParseError(f"expected ')' or ']', got {closing!r}")
        if not had_comma and len(items) == 1:
            if opening == "(" and closing == ")":
                return items[0]
            raise ParseError(f"unbalanced brackets {opening}...{closing}")
        return ("tuple", opening, closing, tuple(items))

    def parse_command(self, command: str) -> Node:
        name = command[1:]
        if name == "frac":
            numerator = self.parse_argument()
            denominator = self.parse_argument()
            return ("div", numerator, denominator)
        if name == "sqrt":
            if self.peek() == "[":
                self.take()
                index = self.parse_group("]")
                return ("func", "root", (self.parse_argument(), index))
            return ("func", "sqrt", (self.parse_argument(),))
        if name == "binom":
            return ("func", "binomial", (self.parse_argument(), self.parse_argument()))
        if name in FUNCTION_NAMES:
            return self.parse_function(name)
        if name in ("lfloor", "lceil"):
            inner = self.parse_expression()
            self.expect("\\rfloor" if name == "lfloor" else "\\rceil")
            return ("func", "floor" if name == "lfloor" else "ceiling", (inner,))
        if name == "{":
            if self.peek() == "\\}":
                self.take()
                return ("set", ())
            items, _ = self.parse_top(frozenset({"\\}"}))
            self.expect("\\}")
            return ("set", tuple(items))
        if name in ("emptyset", "varnothing"):
            return ("set", ())
        if name == "pi":
            return ("const", "pi")
        if name == "infty":
            return ("const", "oo")
        if name in _GREEK:
            return ("sym", name)
        if name == "|":
            inner = self.parse_expression()
            self.expect("\\|")
            return ("abs", inner)
        raise ParseError(f"unsupported LaTeX command {command!r}")

    def parse_atom(self) -> Node:
        self.enter()
        token = self.take()
        if token[0].isdigit() or token[0] == ".":
            node: Node = ("num", token)
            if self.peek() == "_":
                # A number in another base, such as 204_5, is kept as an opaque symbol.
                node = ("sym", self.parse_subscript(token))
        elif token[0].isalpha():
            node = self.parse_word(token)
        elif token in ("(", "["):
            node = self.parse_bracket(token)
        elif token == "{":
            node = self.parse_group("}")
        elif token == "|":
            inner = self.parse_expression()
            self.expect("|")
            node = ("abs", inner)
        elif token.startswith("\\"):
            node = self.parse_command(token)
        else:
            raise ParseError(f"unexpected token {token!r}")
        self.leave()
        return node


def parse_answer(text: str) -> Node:
    """Parse a normalised answer into a syntax tree; raise :class:`ParseError` on failure."""
    if not text:
        raise ParseError("empty answer")
    tokens = _tokenize(text)
    if not tokens:
        raise ParseError("empty answer")
    parser = _Parser(tokens)
    try:
        items, had_comma = parser.parse_top()
    except RecursionError as error:
        raise ParseError("answer is nested too deeply") from error
    if parser.position != len(parser.tokens):
        raise ParseError(f"unexpected token {parser.peek()!r} after the answer")
    if had_comma or len(items) > 1:
        return ("list", tuple(items))
    return items[0]


def has_decimal(node: Any) -> bool:
    """Return whether a tree contains a decimal literal such as ``0.5``."""
    if isinstance(node, tuple | list):
        if len(node) == 2 and node[0] == "num":
            return "." in node[1]
        return any(has_decimal(child) for child in node)
    return False
