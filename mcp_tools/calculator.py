"""Calculator MCP server: exact arithmetic on integers, decimals and fractions, parsed (never evaluated as code).

Numbers are exact rationals: ``0.1 + 0.2`` is exactly ``0.3`` and ``1/3 * 3``
is ``1``. Functions whose values are irrational (sqrt of a non-square, ln,
sin, pi, ...) are computed with ``precision`` significant digits and the
result says it is not exact. Every operation is bounded: a result may have
at most ``max_digits`` digits, an exponent at most ``max_exponent``, and the
expression at most ``max_length`` characters and ``max_depth`` nesting, so no
input can make the server work for long; such input gets a tool error that
says which limit it hit.
"""

import functools
import math
import re
import sys
from dataclasses import dataclass
from decimal import Context, Decimal, localcontext
from fractions import Fraction
from typing import Annotated, Callable

import anyio
from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from mcp_tools._common import ToolSettings, add_tool

# Expressions up to this long are computed on the event loop; longer ones (which may chain
# many operations on numbers of thousands of digits) in a worker thread.
INLINE_LENGTH = 200
# Angles up to 10^this keep trigonometry fast: reducing them needs this many more digits of pi.
MAX_TRIG_DIGITS = 100


class Settings(ToolSettings):
    max_digits: int = Field(4000, ge=10, le=100_000, description="most digits a number (numerator or denominator) may have")
    max_exponent: int = Field(100_000, ge=1, description="largest |exponent| accepted by ^")
    max_length: int = Field(1000, ge=10, le=100_000, description="longest expression accepted, in characters")
    max_depth: int = Field(64, ge=4, le=500, description="deepest nesting of parentheses and operators")
    max_precision: int = Field(100, ge=10, le=1000, description="most significant digits of an approximate result")


class CalculationError(ToolError):
    """The expression is invalid or would exceed a limit; the message says where and why."""


@dataclass(frozen=True)
class Number:
    """An exact rational, or a rational approximation of an irrational value (exact=False)."""

    value: Fraction
    exact: bool = True


class Calculation(BaseModel):
    expression: str = Field(description="the expression as parsed, with explicit operators")
    result: str = Field(description="the value: an integer, a terminating decimal, or a fraction p/q when exact; "
                                    "otherwise a decimal rounded to `precision` significant digits")
    exact: bool = Field(description="false when an irrational function or constant made the result approximate")
    fraction: str | None = Field(description="the exact value as p/q (null when not exact)")
    decimal: str = Field(description="the value as a decimal with up to `precision` significant digits")


GRAMMAR = """\
Numbers: 42, -7, 3.14, .5, 1e-3, 6.02e23 (all exact). A fraction is a division: 1/3.
Operators, loosest first: + -; * / // (floor division) % (remainder); unary + -;
^ or ** (power, right-associative: 2^3^2 = 2^9); n! (factorial). Parentheses group.
Constants (approximate): pi, e, tau.
Exact functions: abs(x), floor(x), ceil(x), round(x[, digits]), trunc(x), min(a, b, ...),
max(a, b, ...), gcd(a, b, ...), lcm(a, b, ...), factorial(n), comb(n, k), perm(n, k),
mod(a, b), numerator(x), denominator(x), sqrt(x) and root(x, n) (exact for perfect powers).
Approximate functions: exp(x), ln(x), log(x) (base 10), log(x, base), log2(x),
sin(x), cos(x), tan(x) (radians), deg(x), rad(x).
"""

_TOKEN = re.compile(
    r"\s*(?:(?P<number>(?:\d[\d_]*)?\.?\d[\d_]*(?:[eE][+-]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z_0-9]*)"
    r"|(?P<op>\*\*|//|[-+*/%^!(),\u00d7\u00f7\u2212]))"
)
_UNICODE_OPS = {"\u00d7": "*", "\u00f7": "/", "\u2212": "-"}


def tokenize(text: str) -> list[tuple[str, str, int]]:
    """(kind, text, position) for each token; refuses any character that is not part of the grammar."""
    tokens = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            bad = text[position:].lstrip()[:1]
            where = len(text) - len(text[position:].lstrip())
            raise CalculationError(f"unexpected character {bad!r} at position {where + 1}")
        kind = match.lastgroup
        value = match.group(kind)
        tokens.append((kind, _UNICODE_OPS.get(value, value), match.start(kind)))
        position = match.end()
    return tokens


class Calculator:
    """Parses and computes one expression within the limits of ``settings``."""

    def __init__(self, settings: Settings, precision: int) -> None:
        self.settings = settings
        self.precision = precision
        self.tokens: list[tuple[str, str, int]] = []
        self.index = 0
        self.depth = 0

    @functools.cached_property
    def functions(self) -> dict[str, tuple[int, int | None, Callable[..., Number]]]:
        """name -> (fewest arguments, most arguments or None, implementation); built on first use."""
        return {
            "abs": (1, 1, lambda x: Number(abs(x.value), x.exact)),
            "floor": (1, 1, lambda x: Number(Fraction(math.floor(x.value)), x.exact)),
            "ceil": (1, 1, lambda x: Number(Fraction(math.ceil(x.value)), x.exact)),
            "trunc": (1, 1, lambda x: Number(Fraction(math.trunc(x.value)), x.exact)),
            "round": (1, 2, self._round),
            "min": (1, None, lambda *xs: min(xs, key=lambda x: x.value)),
            "max": (1, None, lambda *xs: max(xs, key=lambda x: x.value)),
            "gcd": (1, None, lambda *xs: self._integers_op("gcd", math.gcd, xs)),
            "lcm": (1, None, lambda *xs: self._integers_op("lcm", math.lcm, xs)),
            "factorial": (1, 1, self._factorial),
            "comb": (2, 2, lambda n, k: self._combinatoric("comb", math.comb, n, k)),
            "perm": (2, 2, lambda n, k: self._combinatoric("perm", math.perm, n, k)),
            "mod": (2, 2, lambda a, b: self._binary("%", a, b)),
            "numerator": (1, 1, lambda x: Number(Fraction(x.value.numerator), x.exact)),
            "denominator": (1, 1, lambda x: Number(Fraction(x.value.denominator), x.exact)),
            "sqrt": (1, 1, lambda x: self._root(x, Number(Fraction(2)))),
            "root": (2, 2, self._root),
            "exp": (1, 1, self._exp),
            "ln": (1, 1, lambda x: self._log(x, None)),
            "log": (1, 2, lambda x, base=Number(Fraction(10)): self._log(x, base)),
            "log2": (1, 1, lambda x: self._log(x, Number(Fraction(2)))),
            "sin": (1, 1, lambda x: self._trig(x, "sin")),
            "cos": (1, 1, lambda x: self._trig(x, "cos")),
            "tan": (1, 1, lambda x: self._trig(x, "tan")),
            "deg": (1, 1, lambda x: self._checked(Number(x.value * 180 / self._pi(x), False))),
            "rad": (1, 1, lambda x: self._checked(Number(x.value * self._pi(x) / 180, False))),
        }

    @functools.cached_property
    def constants(self) -> dict[str, Callable[[], Number]]:
        return {
            "pi": lambda: Number(self._pi(), False),
            "tau": lambda: Number(2 * self._pi(), False),
            "e": lambda: self._exp(Number(Fraction(1))),
        }

    # -- parsing: a recursive-descent parser over the token list --------------------------------

    def evaluate(self, text: str) -> tuple[Number, str]:
        if len(text) > self.settings.max_length:
            raise CalculationError(f"the expression is {len(text)} characters long; the limit is {self.settings.max_length}")
        if not text.strip():
            raise CalculationError("the expression is empty")
        self.tokens = tokenize(text)
        self.index = 0
        value, shown = self._sum()
        if self.index < len(self.tokens):
            _, token, position = self.tokens[self.index]
            raise CalculationError(f"unexpected {token!r} at position {position + 1}")
        return value, shown

    def _peek(self) -> str | None:
        return self.tokens[self.index][1] if self.index < len(self.tokens) else None

    def _take(self) -> tuple[str, str, int]:
        if self.index >= len(self.tokens):
            raise CalculationError("the expression ends too early")
        token = self.tokens[self.index]
        self.index += 1
        return token

    def _expect(self, text: str) -> None:
        kind, token, position = self._take()
        if token != text:
            raise CalculationError(f"expected {text!r} at position {position + 1}, found {token!r}")

    def _nested(self) -> None:
        self.depth += 1
        if self.depth > self.settings.max_depth:
            raise CalculationError(f"the expression is nested more than {self.settings.max_depth} levels deep")

    def _sum(self) -> tuple[Number, str]:
        # Not a level of its own: its callers (a parenthesis, a function call) count one each,
        # so max_depth is the number of nested parentheses a user can write.
        value, shown = self._product()
        while self._peek() in ("+", "-"):
            op = self._take()[1]
            right, right_shown = self._product()
            value, shown = self._binary(op, value, right), f"{shown} {op} {right_shown}"
        return value, shown

    def _product(self) -> tuple[Number, str]:
        value, shown = self._unary()
        while self._peek() in ("*", "/", "//", "%"):
            op = self._take()[1]
            right, right_shown = self._unary()
            value, shown = self._binary(op, value, right), f"{shown} {op} {right_shown}"
        return value, shown

    def _unary(self) -> tuple[Number, str]:
        if self._peek() in ("-", "+"):
            op = self._take()[1]
            self._nested()
            value, shown = self._unary()
            self.depth -= 1
            return (Number(-value.value, value.exact) if op == "-" else value), f"{op}{shown}"
        return self._power()

    def _power(self) -> tuple[Number, str]:
        base, shown = self._postfix()
        if self._peek() in ("^", "**"):
            self._take()
            self._nested()
            exponent, exponent_shown = self._unary()  # right-associative; 2^-1 is allowed
            self.depth -= 1
            return self._pow(base, exponent), f"{shown}^{exponent_shown}"
        return base, shown

    def _postfix(self) -> tuple[Number, str]:
        value, shown = self._primary()
        while self._peek() == "!":
            self._take()
            value, shown = self._factorial(value), f"{shown}!"
        return value, shown

    def _primary(self) -> tuple[Number, str]:
        kind, token, position = self._take()
        if kind == "number":
            return self._literal(token, position), token
        if token == "(":
            self._nested()
            value, shown = self._sum()
            self.depth -= 1
            self._expect(")")
            return value, f"({shown})"
        if kind == "name":
            name = token.lower()
            if self._peek() == "(":
                return self._call(name, position)
            if name in self.constants:
                return self.constants[name](), name
            if name in self.functions:
                raise CalculationError(f"{name} is a function: write {name}(...)")
            raise CalculationError(f"unknown name {token!r} at position {position + 1} (see the calculator://grammar resource)")
        raise CalculationError(f"unexpected {token!r} at position {position + 1}")

    def _literal(self, token: str, position: int) -> Number:
        mantissa, _, exponent = token.replace("_", "").lower().partition("e")
        if not exponent:
            return self._checked(Number(Fraction(int(mantissa)) if mantissa.isdigit() else Fraction(mantissa)))
        if abs(int(exponent)) > self.settings.max_digits:
            raise CalculationError(f"the number {token} at position {position + 1} has more than {self.settings.max_digits} digits")
        return self._checked(Number(Fraction(mantissa) * Fraction(10) ** int(exponent)))

    def _call(self, name: str, position: int) -> tuple[Number, str]:
        if name not in self.functions:
            raise CalculationError(f"unknown function {name!r} at position {position + 1}")
        low, high, function = self.functions[name]
        self._expect("(")
        self._nested()
        args, shown = [], []
        if self._peek() != ")":
            while True:
                value, text = self._sum()
                args.append(value)
                shown.append(text)
                if self._peek() != ",":
                    break
                self._take()
        self.depth -= 1
        self._expect(")")
        if len(args) < low or (high is not None and len(args) > high):
            wanted = str(low) if low == high else (f"{low} or more" if high is None else f"{low} to {high}")
            raise CalculationError(f"{name}() takes {wanted} arguments, got {len(args)}")
        return self._checked(function(*args)), f"{name}({', '.join(shown)})"

    # -- arithmetic -------------------------------------------------------------------------------

    def _checked(self, number: Number) -> Number:
        """Refuses numbers with more digits than allowed (checked after every operation, so none grows unbounded)."""
        limit = self.settings.max_digits
        for part in (number.value.numerator, number.value.denominator):
            if _digits(part) > limit:
                raise CalculationError(f"a number in this calculation would have more than {limit} digits")
        return number

    def _binary(self, op: str, a: Number, b: Number) -> Number:
        exact = a.exact and b.exact
        if op == "+":
            return self._checked(Number(a.value + b.value, exact))
        if op == "-":
            return self._checked(Number(a.value - b.value, exact))
        if op == "*":
            return self._checked(Number(a.value * b.value, exact))
        if b.value == 0:
            raise CalculationError("division by zero")
        if op == "/":
            return self._checked(Number(a.value / b.value, exact))
        if op == "//":
            return Number(Fraction(a.value // b.value), exact)
        return self._checked(Number(a.value % b.value, exact))

    def _pow(self, base: Number, exponent: Number) -> Number:
        exact = base.exact and exponent.exact
        e = exponent.value
        if abs(e) > self.settings.max_exponent:
            raise CalculationError(f"the exponent {_short(e)} is too large: the limit is {self.settings.max_exponent}")
        if base.value == 0:
            if e < 0:
                raise CalculationError("division by zero (0 to a negative power)")
            return Number(Fraction(1 if e == 0 else 0), exact)
        # Refuse before computing: the digits of base^e are about |e| * digits(base).
        estimate = float(abs(e)) * max(_log10(base.value.numerator), _log10(base.value.denominator))
        if estimate > self.settings.max_digits:
            raise CalculationError(
                f"{_short(base.value)}^{_short(e)} would have about {estimate:,.0f} digits; the limit is {self.settings.max_digits}")
        if e.denominator == 1:
            return self._checked(Number(base.value ** int(e), exact))
        # A rational exponent p/q: an exact q-th root when there is one, else an approximation.
        root = self._exact_root(base.value, e.denominator) if exact else None
        if root is not None:
            return self._pow(Number(root), Number(Fraction(e.numerator)))
        if base.value < 0:
            if e.denominator % 2 == 0 or not exponent.exact:
                raise CalculationError(f"{_short(base.value)}^{_short(e)} is not a real number")
            magnitude = self._approximate(lambda: _dec(-base.value) ** _dec(e))
            return self._checked(Number(-magnitude, False))
        return self._checked(Number(self._approximate(lambda: _dec(base.value) ** _dec(e)), False))

    def _exact_root(self, value: Fraction, n: int) -> Fraction | None:
        if n > 10_000 or (value < 0 and n % 2 == 0):
            return None
        sign = -1 if value < 0 else 1
        num, den = _integer_root(abs(value.numerator), n), _integer_root(value.denominator, n)
        if num is None or den is None:
            return None
        return sign * Fraction(num, den)

    def _root(self, x: Number, n: Number) -> Number:
        if n.value.denominator != 1 or n.value < 1 or not n.exact:
            raise CalculationError("root(x, n) needs a whole number n >= 1")
        if x.value < 0 and int(n.value) % 2 == 0:
            raise CalculationError(f"the {_ordinal(int(n.value))} root of a negative number is not real")
        return self._pow(x, Number(1 / n.value))

    def _integers(self, name: str, values: tuple[Number, ...]) -> list[int]:
        if any(v.value.denominator != 1 or not v.exact for v in values):
            raise CalculationError(f"{name}() takes whole numbers")
        return [int(v.value) for v in values]

    def _integers_op(self, name: str, op: Callable[..., int], values: tuple[Number, ...]) -> Number:
        return self._checked(Number(Fraction(op(*self._integers(name, values)))))

    def _factorial(self, x: Number) -> Number:
        (n,) = self._integers("factorial", (x,))
        if n < 0:
            raise CalculationError("factorial() is defined for whole numbers >= 0")
        if n > 10**7:
            raise CalculationError(f"{_short(Fraction(n))}! would have more than {self.settings.max_digits} digits")
        digits = math.lgamma(n + 1) / math.log(10)
        if digits > self.settings.max_digits:
            raise CalculationError(f"{n}! would have about {digits:,.0f} digits; the limit is {self.settings.max_digits}")
        return Number(Fraction(math.factorial(n)))

    def _combinatoric(self, name: str, op: Callable[[int, int], int], n: Number, k: Number) -> Number:
        a, b = self._integers(name, (n, k))
        if a < 0 or b < 0:
            raise CalculationError(f"{name}() takes whole numbers >= 0")
        if a > 10**7:
            raise CalculationError(f"{name}() with n = {_short(Fraction(a))} is beyond this calculator's limits")
        if b <= a:
            size = (math.lgamma(a + 1) - math.lgamma(a - b + 1)) / math.log(10)
            if size > self.settings.max_digits:
                raise CalculationError(f"{name}({a}, {b}) would have about {size:,.0f} digits; the limit is {self.settings.max_digits}")
        return Number(Fraction(op(a, b)))

    def _round(self, x: Number, digits: Number = Number(Fraction(0))) -> Number:
        (places,) = self._integers("round's digits", (digits,))
        if abs(places) > self.settings.max_digits:
            raise CalculationError(f"round() to {places} digits is beyond the limit of {self.settings.max_digits}")
        return Number(Fraction(round(x.value, places)), x.exact)  # half to even, as Fraction rounds

    # -- approximations with Decimal at precision + guard digits ---------------------------------

    def _context(self, extra: int = 0) -> Context:
        return Context(prec=self.precision + 10 + extra, Emax=10**9, Emin=-(10**9))

    def _approximate(self, compute: Callable[[], Decimal], extra: int = 0) -> Fraction:
        with localcontext(self._context(extra)):
            return Fraction(+compute())

    def _exp(self, x: Number) -> Number:
        if abs(x.value) > 2 * self.settings.max_digits:
            raise CalculationError(f"exp({_short(x.value)}) would have more than {self.settings.max_digits} digits")
        return self._checked(Number(self._approximate(lambda: _dec(x.value).exp()), False))

    def _log(self, x: Number, base: Number | None) -> Number:
        if x.value <= 0:
            raise CalculationError("logarithms are defined for numbers > 0")
        if base is not None and (base.value <= 0 or base.value == 1):
            raise CalculationError("a logarithm's base must be > 0 and not 1")
        if base is not None and x.exact and base.exact:
            exact = _exact_log(x.value, base.value)
            if exact is not None:
                return Number(exact)
        if base is None:
            return Number(self._approximate(lambda: _dec(x.value).ln()), False)
        return Number(self._approximate(lambda: _dec(x.value).ln() / _dec(base.value).ln()), False)

    def _pi(self, scale: Number | None = None) -> Fraction:
        extra = _digits(abs(int(scale.value))) if scale is not None else 0
        if extra > MAX_TRIG_DIGITS:
            raise CalculationError(f"angles over 10^{MAX_TRIG_DIGITS} are refused (they need too many digits of pi)")
        with localcontext(self._context(extra)):
            return Fraction(_pi_decimal())

    def _trig(self, x: Number, name: str) -> Number:
        if x.value == 0 and x.exact:
            return Number(Fraction(0 if name != "cos" else 1))
        extra = _digits(abs(int(x.value)))  # argument reduction needs that many more digits of pi
        if extra > MAX_TRIG_DIGITS:
            raise CalculationError(f"{name}() of a number over 10^{MAX_TRIG_DIGITS} is refused: "
                                   "its value would depend on more digits of pi than this calculator computes")
        pi = self._pi(x)

        def compute() -> Decimal:
            reduced = _dec(x.value % (2 * pi))
            sin, cos = _sin_cos(reduced)
            if name == "sin":
                return sin
            if name == "cos":
                return cos
            if abs(cos) < Decimal(10) ** -(self.precision + 5):
                raise CalculationError(f"tan({_short(x.value)}) is undefined (cos is 0)")
            return sin / cos

        return Number(self._approximate(compute, extra), False)


def _dec(value: Fraction) -> Decimal:
    return Decimal(value.numerator) / Decimal(value.denominator)


def _digits(n: int) -> int:
    """Decimal digits of |n|, without converting huge integers to text."""
    n = abs(n)
    if n < 10:
        return 1
    estimate = int(n.bit_length() * 0.30102999566398120) + 1
    return estimate if n >= 10 ** (estimate - 1) else estimate - 1


def _log10(n: int) -> float:
    n = abs(n)
    return 0.0 if n <= 1 else math.log10(n)  # exact enough for any size: math.log10 takes big integers


def _integer_root(n: int, k: int) -> int | None:
    """The exact integer k-th root of n >= 0, or None."""
    if n < 2:
        return n
    if k == 1:
        return n
    guess = math.isqrt(n) if k == 2 else int(round(math.exp(math.log(n) / k))) if n.bit_length() < 1000 else None
    if guess is None:  # too big for floats: Newton's method on integers
        guess = 1 << ((n.bit_length() + k - 1) // k)
        while True:
            better = ((k - 1) * guess + n // guess ** (k - 1)) // k
            if better >= guess:
                break
            guess = better
    for candidate in (guess - 1, guess, guess + 1):
        if candidate >= 0 and candidate**k == n:
            return candidate
    return None


def _exact_log(x: Fraction, base: Fraction) -> Fraction | None:
    """log_base(x) when it is a whole number (log(1000) = 3, log2(1/8) = -3), else None."""
    if x == 1:
        return Fraction(0)
    if base.denominator == 1 and base.numerator > 1 and x > 0:
        for value, sign in ((x, 1), (1 / x, -1)):
            if value.denominator == 1 and value.numerator > 1:
                n, k = value.numerator, 0
                while n % base.numerator == 0:
                    n //= base.numerator
                    k += 1
                if n == 1:
                    return Fraction(sign * k)
    return None


def _pi_decimal() -> Decimal:
    """pi to the current Decimal precision (Machin's formula)."""
    from decimal import getcontext

    def arctan_inverse(n: int) -> Decimal:
        total = term = Decimal(1) / n
        n2, k, sign = n * n, 1, -1
        threshold = Decimal(10) ** -(getcontext().prec + 2)
        while abs(term) > threshold:
            term /= n2
            k += 2
            total += sign * term / k
            sign = -sign
        return total

    return 4 * (4 * arctan_inverse(5) - arctan_inverse(239))


def _sin_cos(x: Decimal) -> tuple[Decimal, Decimal]:
    """sin and cos of x (|x| < 2*pi + 1) by their Taylor series at the current precision."""
    from decimal import getcontext

    threshold = Decimal(10) ** -(getcontext().prec + 2)
    sin, cos = Decimal(0), Decimal(0)
    term, n = Decimal(1), 0  # x^n / n!
    while True:
        if n % 4 == 0:
            cos += term
        elif n % 4 == 1:
            sin += term
        elif n % 4 == 2:
            cos -= term
        else:
            sin -= term
        n += 1
        term = term * x / n
        if abs(term) < threshold and n > 2:
            return sin, cos


def _short(value: Fraction) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:18] + "..." + text[-18:]


def _ordinal(n: int) -> str:
    return {2: "square", 3: "cube"}.get(n, f"{n}th")


def format_result(number: Number, precision: int) -> Calculation:
    value = number.value
    decimal = _decimal_text(value, precision)
    if not number.exact:
        return Calculation(expression="", result=decimal, exact=False, fraction=None, decimal=decimal)
    fraction = f"{value.numerator}/{value.denominator}" if value.denominator != 1 else str(value.numerator)
    terminating = _terminating_decimal(value, 2 * precision + 20)
    result = terminating if terminating is not None and len(terminating) <= 2 * precision + 20 else fraction
    return Calculation(expression="", result=result, exact=True, fraction=fraction, decimal=decimal)


def _terminating_decimal(value: Fraction, max_places: int) -> str | None:
    """The exact decimal text of value when its denominator has no prime factors but 2 and 5 (and it has
    at most ``max_places`` decimals: 1/2^13000 has 13,000, not worth building to throw away)."""
    den = value.denominator
    twos = fives = 0
    while den % 2 == 0:
        den //= 2
        twos += 1
    while den % 5 == 0:
        den //= 5
        fives += 1
    if den != 1:
        return None
    places = max(twos, fives)
    if places > max_places:
        return None
    scaled = abs(value.numerator) * 10**places // value.denominator
    digits = str(scaled).rjust(places + 1, "0")
    text = digits if places == 0 else f"{digits[:-places]}.{digits[-places:]}"
    return ("-" if value < 0 else "") + text


def _decimal_text(value: Fraction, precision: int) -> str:
    if value.denominator == 1 and _digits(value.numerator) <= precision:
        return str(value.numerator)
    with localcontext(Context(prec=precision, Emax=10**9, Emin=-(10**9))):
        approx = (Decimal(value.numerator) / Decimal(value.denominator)).normalize()
        return format(approx, "f") if -30 < approx.adjusted() < precision else format(approx, "E")


def compute(expression: str, precision: int, settings: Settings) -> Calculation:
    calculator = Calculator(settings, precision)
    try:
        value, shown = calculator.evaluate(expression)
        calculation = format_result(value, precision)
    except RecursionError:
        raise CalculationError("the expression is nested too deeply for this server (lower max_depth)") from None
    except (ArithmeticError, ValueError) as exc:  # never an empty "Error executing tool": say what went wrong
        raise CalculationError(f"cannot compute this: {exc}") from None
    calculation.expression = shown
    return calculation


def create_server(settings: Settings) -> MCPServer:
    # Python refuses int <-> str conversions over 4300 digits by default.
    if sys.get_int_max_str_digits() and sys.get_int_max_str_digits() < settings.max_digits + 10:
        sys.set_int_max_str_digits(settings.max_digits + 10)
    server = MCPServer(
        "calculator",
        title="Calculator",
        instructions="Exact arithmetic. Use the calculate tool for any computation instead of doing it yourself.",
        version="1.0.0",
    )

    # The limits of ``settings`` go into the input schema, so this function is defined here.
    async def calculate(
        expression: Annotated[str, Field(
            min_length=1, max_length=settings.max_length,
            description="An arithmetic expression, e.g. '(1/3 + 0.25) * 12', '2^100', 'sqrt(2)', '10!', 'gcd(84, 36)'.",
        )],
        precision: Annotated[int, Field(
            ge=1, le=settings.max_precision,
            description="Significant digits for decimal output and for approximate (irrational) results.",
        )] = 30,
    ) -> Annotated[CallToolResult, Calculation]:
        """Compute an arithmetic expression exactly.

        Integers, decimals and fractions are exact rationals (0.1 + 0.2 = 0.3 exactly).
        Operators: + - * / // % ^ (or **) and n!. Functions: abs floor ceil round trunc min max gcd lcm
        factorial comb perm mod numerator denominator sqrt root exp ln log log2 sin cos tan deg rad;
        constants pi, e, tau. Irrational results are approximate and marked exact=false.
        Returns the parsed expression, the result, its fraction and decimal forms.
        """
        if len(expression) > INLINE_LENGTH:
            calculation = await anyio.to_thread.run_sync(compute, expression, precision, settings)
        else:
            calculation = compute(expression, precision, settings)  # bounded and short: not worth a thread
        text = f"{calculation.expression} = {calculation.result}" + ("" if calculation.exact else " (approximate)")
        return CallToolResult(content=[TextContent(type="text", text=text)],
                              structured_content=calculation.model_dump(mode="json"))

    add_tool(
        server, calculate, title="Calculate",
        annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False),
    )

    @server.resource("calculator://grammar", name="grammar", title="Calculator grammar", mime_type="text/plain",
                     description="The numbers, operators, functions and constants the calculate tool accepts.")
    def grammar() -> str:
        limits = (f"Limits: {settings.max_length} characters, {settings.max_depth} levels of nesting, "
                  f"{settings.max_digits} digits per number, exponents up to {settings.max_exponent}.\n")
        return GRAMMAR + limits

    return server


if __name__ == "__main__":
    from mesh.tools.runner import run_module

    run_module(__spec__.name)
