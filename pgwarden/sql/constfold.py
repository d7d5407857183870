"""A small three-valued evaluator of constant expressions, to spot WHEREs that filter nothing.

``fold(node)`` evaluates an expression (a node of the JSON parse tree, see ``_nodes``) to a
Python value when the value does not depend on any row: ``None`` (SQL NULL), ``bool``,
``int``, ``Decimal``, ``str``, ``Lit`` (an untyped string literal, which PostgreSQL coerces to
the other operand's type) or ``UNKNOWN``.
It is deliberately incomplete: anything it does not understand is ``UNKNOWN``, and a column
makes the result ``UNKNOWN`` (except for a few patterns that are true for every non-NULL value:
``x = x``, ``x OR NOT x``, ``x IS NULL OR x IS NOT NULL``, ``x LIKE '%'``, ``ctid IS NOT NULL``).

``where_kind(clause)`` turns a WHERE clause into ``absent``, ``tautology`` or ``present``:

- no clause: ``absent``; ``WHERE CURRENT OF cursor``: ``present``;
- the clause folds to true: ``tautology`` (``true``, ``1=1``, ``'a'='a'``, ``x OR true``,
  ``NOT false``, ``1 IN (1)``, ``coalesce(null, true)``, ``'t'``, ``1::bool``, ``id = id``, ...);
- the clause folds to false or NULL: ``present`` (it matches no row: harmless);
- the clause is unknown but mentions no column at all (``WHERE $1``, ``WHERE now() IS NOT NULL``,
  ``WHERE EXISTS (SELECT 1 FROM t)``): ``tautology``, because it selects every row or none;
- otherwise ``present``.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from pgwarden.sql._nodes import as_node, equal, items, iter_nodes, sval

__all__ = ["UNKNOWN", "Lit", "fold", "mentions_columns", "truth", "where_kind"]


class _Unknown:
    _instance: _Unknown | None = None

    def __new__(cls) -> _Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Final = _Unknown()


class Lit(str):
    """An untyped string literal ('abc'): coerced to the other operand's type when compared."""

    __slots__ = ()


_SYSTEM_COLUMNS = frozenset({"ctid", "xmin", "xmax", "cmin", "cmax", "tableoid"})
_INT_TYPES = frozenset({"int2", "int4", "int8", "int", "integer", "smallint", "bigint"})
_NUM_TYPES = frozenset({"numeric", "decimal", "float4", "float8", "real", "float", "double"})
_TEXT_TYPES = frozenset({"text", "varchar", "bpchar", "char", "name", "character", "citext"})
_BOOL_TYPES = frozenset({"bool", "boolean"})
_COMPLEMENT = {"=": "<>", "<>": "=", "<": ">=", ">=": "<", ">": "<=", "<=": ">"}
_VOLATILE = frozenset({"random", "random_normal", "nextval", "clock_timestamp", "timeofday"})


def parse_bool(text: str) -> bool | _Unknown:
    """PostgreSQL's boolin: 't', 'true', 'yes', 'on', '1' (and unique prefixes), any case."""
    s = text.strip().lower()
    if s == "1":
        return True
    if s == "0":
        return False
    if not s:
        return UNKNOWN
    t = any(w.startswith(s) for w in ("true", "yes", "on"))
    f = any(w.startswith(s) for w in ("false", "no", "off"))
    if t != f:
        return t
    return UNKNOWN


def _is_num(v: object) -> bool:
    return isinstance(v, int | Decimal) and not isinstance(v, bool)


def _to_bool(v: object) -> bool | _Unknown | None:
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, Lit):
        return parse_bool(v)
    return UNKNOWN


def _to_num(v: object) -> int | Decimal | _Unknown:
    if _is_num(v):
        return v  # type: ignore[return-value]
    if isinstance(v, Lit):
        text = v.strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            d = Decimal(text)
        except (InvalidOperation, ValueError):
            return UNKNOWN
        return d if d.is_finite() else UNKNOWN
    return UNKNOWN


def _coerce_pair(a: object, b: object) -> tuple[object, object] | None:
    """Bring two non-NULL known values to comparable Python values, or None if unsure."""
    if isinstance(a, Lit) and isinstance(b, Lit):
        return str(a), str(b)
    if isinstance(a, bool) or isinstance(b, bool):
        x, y = _to_bool(a), _to_bool(b)
        if isinstance(x, bool) and isinstance(y, bool):
            return x, y
        return None
    if _is_num(a) or _is_num(b):
        x2, y2 = _to_num(a), _to_num(b)
        if x2 is UNKNOWN or y2 is UNKNOWN:
            return None
        return x2, y2
    if isinstance(a, str) and isinstance(b, str):
        return str(a), str(b)
    return None


def _compare(op: str, a: object, b: object) -> object:
    if a is UNKNOWN or b is UNKNOWN:
        return UNKNOWN
    if a is None or b is None:
        return None
    pair = _coerce_pair(a, b)
    if pair is None:
        return UNKNOWN
    x: Any
    y: Any
    x, y = pair
    try:
        if op == "=":
            return bool(x == y)
        if op == "<>":
            return bool(x != y)
        if op == "<":
            return bool(x < y)
        if op == ">":
            return bool(x > y)
        if op == "<=":
            return bool(x <= y)
        if op == ">=":
            return bool(x >= y)
    except TypeError:
        return UNKNOWN
    return UNKNOWN


def _arith(op: str, a: object, b: object) -> object:
    if a is UNKNOWN or b is UNKNOWN:
        return UNKNOWN
    if a is None or b is None:
        return None
    if op == "||":
        ta, tb = _text(a), _text(b)
        if isinstance(ta, str) and isinstance(tb, str) and isinstance(a, str) | isinstance(b, str):
            return ta + tb
        return UNKNOWN
    x, y = _to_num(a), _to_num(b)
    if isinstance(x, _Unknown) or isinstance(y, _Unknown):
        return UNKNOWN
    try:
        if op == "+":
            return x + y
        if op == "-":
            return x - y
        if op == "*":
            return x * y
        if op == "/":
            if y == 0:
                return UNKNOWN
            if isinstance(x, int) and isinstance(y, int):
                q = abs(x) // abs(y)
                return q if (x >= 0) == (y >= 0) else -q
            return Decimal(x) / Decimal(y)
        if op == "%":
            if y == 0 or not (isinstance(x, int) and isinstance(y, int)):
                return UNKNOWN
            r = abs(x) % abs(y)
            return r if x >= 0 else -r
    except (ArithmeticError, ValueError):
        return UNKNOWN
    return UNKNOWN


def _text(v: object) -> Any:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return str(v)
    if _is_num(v):
        return str(v)
    return UNKNOWN


def _like(value: object, pattern: object, *, icase: bool) -> object:
    if isinstance(pattern, str) and pattern and set(pattern) == {"%"}:
        # matches every non-NULL string
        return None if value is None else True
    if value is UNKNOWN or pattern is UNKNOWN:
        return UNKNOWN
    if value is None or pattern is None:
        return None
    if not isinstance(value, str) or not isinstance(pattern, str):
        return UNKNOWN
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if c == "%" else "." if c == "_" else re.escape(c))
        i += 1
    flags = re.DOTALL | (re.IGNORECASE if icase else 0)
    return re.fullmatch("".join(out), value, flags) is not None


def _regex(value: object, pattern: object, *, icase: bool) -> object:
    if isinstance(pattern, str) and pattern in ("", ".*", "^", "$", "^.*$", "^.*", ".*$"):
        return None if value is None else True
    if value is UNKNOWN or pattern is UNKNOWN:
        return UNKNOWN
    if value is None or pattern is None:
        return None
    if not isinstance(value, str) or not isinstance(pattern, str):
        return UNKNOWN
    try:
        return re.search(pattern, value, re.IGNORECASE if icase else 0) is not None
    except re.error:
        return UNKNOWN


def _op_name(names: Any) -> str:
    parts = items(names)
    return sval(parts[-1]) if parts else ""


def _type_name(tn: Any) -> str | None:
    node = as_node(tn, "TypeName")
    if node is None or node[1].get("arrayBounds"):
        return None
    names = [sval(n) for n in items(node[1].get("names"))]
    return names[-1].lower() if names else None


def _cast(value: object, type_name: str | None) -> object:
    t = type_name
    if value is None:
        return None
    if value is UNKNOWN or t is None:
        return UNKNOWN
    if t in _BOOL_TYPES:
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            return parse_bool(value)
        if isinstance(value, int):
            return value != 0
        return UNKNOWN
    if t in _INT_TYPES:
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, int):
            return value
        if isinstance(value, Decimal):
            return int(value.to_integral_value())
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                return UNKNOWN
        return UNKNOWN
    if t in _NUM_TYPES:
        if isinstance(value, bool):
            return UNKNOWN
        if isinstance(value, int | Decimal):
            return Decimal(value)
        if isinstance(value, str):
            try:
                return Decimal(value.strip())
            except (InvalidOperation, ValueError):
                return UNKNOWN
        return UNKNOWN
    if t in _TEXT_TYPES:
        return _text(value)
    return UNKNOWN


def _func_name(fields: dict[str, Any]) -> str:
    names = [sval(n).lower() for n in items(fields.get("funcname"))]
    if len(names) == 2 and names[0] == "pg_catalog":
        names = names[1:]
    return ".".join(names)


def _is_volatile(value: Any) -> bool:
    return any(
        tag == "FuncCall" and _func_name(f).rsplit(".", 1)[-1] in _VOLATILE
        for tag, f in iter_nodes(value)
    )


def _same(a: Any, b: Any) -> bool:
    """Structurally equal expressions (source positions ignored)."""
    return a is not None and b is not None and equal(a, b)


_BOOLTEST_PAIRS = {
    frozenset({"IS_TRUE", "IS_NOT_TRUE"}),
    frozenset({"IS_FALSE", "IS_NOT_FALSE"}),
    frozenset({"IS_UNKNOWN", "IS_NOT_UNKNOWN"}),
}


def _complementary(a: Any, b: Any) -> bool:
    """True if b is the negation of a (ignoring NULLs)."""
    na, nb = as_node(a), as_node(b)
    if na is None or nb is None:
        return False
    for (ta, fa), other in ((na, b), (nb, a)):
        if ta == "BoolExpr" and fa.get("boolop") == "NOT_EXPR":
            args = items(fa.get("args"))
            if len(args) == 1 and _same(args[0], other):
                return True
    (ta, fa), (tb, fb) = na, nb
    if ta != tb:
        return False
    if ta == "A_Expr" and fa.get("kind", "AEXPR_OP") == fb.get("kind", "AEXPR_OP") == "AEXPR_OP":
        oa, ob = _op_name(fa.get("name")), _op_name(fb.get("name"))
        if (
            _COMPLEMENT.get(oa) == ob
            and _same(fa.get("lexpr"), fb.get("lexpr"))
            and _same(fa.get("rexpr"), fb.get("rexpr"))
        ):
            return not _is_volatile(a)
    if ta == "NullTest":
        return fa.get("nulltesttype", "IS_NULL") != fb.get("nulltesttype", "IS_NULL") and _same(
            fa.get("arg"), fb.get("arg")
        )
    if ta == "BooleanTest":
        key = frozenset({fa.get("booltesttype", "IS_TRUE"), fb.get("booltesttype", "IS_TRUE")})
        return key in _BOOLTEST_PAIRS and _same(fa.get("arg"), fb.get("arg"))
    return False


def _has_complementary_pair(args: list[Any]) -> bool:
    if len(args) > 64:  # quadratic; long OR lists are IN-lists in disguise, not tricks
        return False
    for i, a in enumerate(args):
        for b in args[i + 1 :]:
            if _complementary(a, b):
                return True
    return False


def truth(value: Any) -> bool | _Unknown | None:
    """The three-valued truth of a boolean expression: True, False, None (NULL) or UNKNOWN."""
    return _to_bool(fold(value))


def _fold_const(f: dict[str, Any]) -> object:
    if f.get("isnull"):
        return None
    if "ival" in f:
        return int(f["ival"].get("ival", 0))
    if "fval" in f:
        try:
            return Decimal(str(f["fval"].get("fval", "0")))
        except (InvalidOperation, ValueError):
            return UNKNOWN
    if "boolval" in f:
        return bool(f["boolval"].get("boolval", False))
    if "sval" in f:
        return Lit(f["sval"].get("sval", ""))
    return UNKNOWN


def fold(value: Any) -> object:
    """Evaluate an expression if its value does not depend on a row; else UNKNOWN."""
    node = as_node(value)
    if node is None:
        return UNKNOWN
    tag, f = node
    if tag == "A_Const":
        return _fold_const(f)
    if tag == "TypeCast":
        return _cast(fold(f.get("arg")), _type_name(f.get("typeName")))
    if tag == "CollateClause":
        return fold(f.get("arg"))
    if tag == "BoolExpr":
        return _fold_bool(f)
    if tag == "A_Expr":
        return _fold_a_expr(f)
    if tag == "NullTest":
        return _fold_null_test(f)
    if tag == "BooleanTest":
        return _fold_boolean_test(f)
    if tag == "CoalesceExpr":
        for arg in items(f.get("args")):
            v = fold(arg)
            if v is UNKNOWN:
                return UNKNOWN
            if v is not None:
                return v
        return None
    if tag == "MinMaxExpr":
        return _fold_minmax(f)
    if tag == "CaseExpr":
        return _fold_case(f)
    if tag == "SubLink":
        return _fold_sublink(f)
    if tag == "FuncCall":
        return _fold_func(f)
    return UNKNOWN


def _fold_bool(f: dict[str, Any]) -> object:
    args = items(f.get("args"))
    op = f.get("boolop", "AND_EXPR")
    if op == "NOT_EXPR":
        v = truth(args[0]) if args else UNKNOWN
        if isinstance(v, bool):
            return not v
        return v
    vals = [truth(a) for a in args]
    # x AND NOT x, x OR NOT x: decided only when x depends on the row (and ignoring NULLs);
    # when everything is known, three-valued logic gives the exact answer. Only the operands
    # not already known are paired: the parser flattens `(NULL OR NOT NULL) OR id > 10` into
    # one OR, whose NULL pair must not make it always true.
    unknown = [a for a, v in zip(args, vals, strict=True) if v is UNKNOWN]
    if op == "AND_EXPR":
        if any(v is False for v in vals):
            return False
        if all(v is True for v in vals):
            return True
        if all(v is True or v is None for v in vals):
            return None
        return False if _has_complementary_pair(unknown) else UNKNOWN
    if any(v is True for v in vals):
        return True
    if all(v is False for v in vals):
        return False
    if all(v is False or v is None for v in vals):
        return None
    return True if _has_complementary_pair(unknown) else UNKNOWN


def _negate(v: object) -> object:
    return (not v) if isinstance(v, bool) else v


def _fold_a_expr(f: dict[str, Any]) -> object:
    op = _op_name(f.get("name"))
    kind = f.get("kind", "AEXPR_OP")
    lexpr, rexpr = f.get("lexpr"), f.get("rexpr")
    if kind == "AEXPR_OP":
        if lexpr is None:  # prefix operator
            v = fold(rexpr)
            if op == "-" and _is_num(v):
                return -v  # type: ignore[operator]
            if op == "+" and _is_num(v):
                return v
            return UNKNOWN if v is not None else None
        left, right = fold(lexpr), fold(rexpr)
        if op in ("=", "<>", "<", ">", "<=", ">="):
            result = _compare(op, left, right)
            if result is UNKNOWN and _same(lexpr, rexpr) and not _is_volatile(lexpr):
                return op in ("=", "<=", ">=")  # reflexive: x = x (true for non-NULL x)
            return result
        if op in ("+", "-", "*", "/", "%", "||"):
            return _arith(op, left, right)
        if op in ("~~", "!~~", "~~*", "!~~*"):
            r = _like(left, right, icase="*" in op)
            return _negate(r) if op.startswith("!") else r
        if op in ("~", "!~", "~*", "!~*"):
            r = _regex(left, right, icase="*" in op)
            return _negate(r) if op.startswith("!") else r
        return UNKNOWN
    if kind in ("AEXPR_DISTINCT", "AEXPR_NOT_DISTINCT"):
        left, right = fold(lexpr), fold(rexpr)
        distinct: object
        if left is UNKNOWN or right is UNKNOWN:
            same = _same(lexpr, rexpr) and not _is_volatile(lexpr)
            distinct = False if same else UNKNOWN
        elif left is None or right is None:
            distinct = not (left is None and right is None)
        else:
            distinct = _negate(_compare("=", left, right))
        return _negate(distinct) if kind == "AEXPR_NOT_DISTINCT" else distinct
    if kind == "AEXPR_NULLIF":
        left, right = fold(lexpr), fold(rexpr)
        eq = _compare("=", left, right)
        if eq is True:
            return None
        if eq is False or (eq is None and left is not UNKNOWN):
            return left
        return UNKNOWN
    if kind == "AEXPR_IN":
        left = fold(lexpr)
        elements = items(rexpr) or [rexpr]
        results = [_compare("=", left, fold(e)) for e in elements]
        reflexive = any(_same(e, lexpr) for e in elements) and not _is_volatile(lexpr)
        found: object
        if any(r is True for r in results) or (reflexive and left is UNKNOWN):
            found = True
        elif all(r is False for r in results):
            found = False
        elif all(r is False or r is None for r in results):
            found = None
        else:
            found = UNKNOWN
        return _negate(found) if op == "<>" else found
    if kind in ("AEXPR_OP_ANY", "AEXPR_OP_ALL"):
        left = fold(lexpr)
        arr = as_node(rexpr)
        if arr is None or arr[0] != "A_ArrayExpr" or op not in _COMPLEMENT:
            return UNKNOWN
        results = [_compare(op, left, fold(e)) for e in items(arr[1].get("elements"))]
        if kind == "AEXPR_OP_ANY":
            if any(r is True for r in results):
                return True
            if all(r is False for r in results):
                return False
        else:
            if all(r is True for r in results):
                return True
            if any(r is False for r in results):
                return False
        return UNKNOWN
    if kind in ("AEXPR_BETWEEN", "AEXPR_NOT_BETWEEN", "AEXPR_BETWEEN_SYM", "AEXPR_NOT_BETWEEN_SYM"):
        bounds = items(rexpr)
        if len(bounds) != 2:
            return UNKNOWN
        v, lo, hi = fold(lexpr), fold(bounds[0]), fold(bounds[1])
        if kind.endswith("_SYM"):
            swap = _compare(">", lo, hi)
            if swap is True:
                lo, hi = hi, lo
            elif swap is not False:
                return UNKNOWN
        a, b = _compare(">=", v, lo), _compare("<=", v, hi)
        if a is UNKNOWN and _same(lexpr, bounds[0]) and not _is_volatile(lexpr):
            a = True  # x BETWEEN x AND ...
        if b is UNKNOWN and _same(lexpr, bounds[1]) and not _is_volatile(lexpr):
            b = True
        inside: object
        if a is False or b is False:
            inside = False
        elif a is True and b is True:
            inside = True
        elif a is UNKNOWN or b is UNKNOWN:
            inside = UNKNOWN
        else:
            inside = None
        return _negate(inside) if "NOT_" in kind else inside
    if kind in ("AEXPR_LIKE", "AEXPR_ILIKE"):
        r = _like(fold(lexpr), fold(rexpr), icase=kind == "AEXPR_ILIKE")
        return _negate(r) if op.startswith("!") else r
    return UNKNOWN


def _fold_null_test(f: dict[str, Any]) -> object:
    v = fold(f.get("arg"))
    is_null = f.get("nulltesttype", "IS_NULL") == "IS_NULL"
    if v is UNKNOWN:
        arg = as_node(f.get("arg"))
        if arg is not None and arg[0] == "ColumnRef":
            fields = items(arg[1].get("fields"))
            if fields and sval(fields[-1]).lower() in _SYSTEM_COLUMNS:
                return not is_null  # system columns are never NULL
        return UNKNOWN
    return (v is None) if is_null else (v is not None)


def _fold_boolean_test(f: dict[str, Any]) -> object:
    v = truth(f.get("arg"))
    if v is UNKNOWN:
        return UNKNOWN
    bt = f.get("booltesttype", "IS_TRUE")
    if bt == "IS_TRUE":
        return v is True
    if bt == "IS_NOT_TRUE":
        return v is not True
    if bt == "IS_FALSE":
        return v is False
    if bt == "IS_NOT_FALSE":
        return v is not False
    if bt == "IS_UNKNOWN":
        return v is None
    return v is not None  # IS NOT UNKNOWN


def _fold_minmax(f: dict[str, Any]) -> object:
    vals = [fold(a) for a in items(f.get("args"))]
    if any(v is UNKNOWN for v in vals):
        return UNKNOWN
    known = [v for v in vals if v is not None]
    if not known:
        return None
    best = known[0]
    greatest = f.get("op", "IS_GREATEST") == "IS_GREATEST"
    for v in known[1:]:
        r = _compare(">" if greatest else "<", v, best)
        if r is UNKNOWN:
            return UNKNOWN
        if r is True:
            best = v
    return best


def _fold_case(f: dict[str, Any]) -> object:
    whens = [w[1] for w in (as_node(x) for x in items(f.get("args"))) if w is not None]
    has_arg = f.get("arg") is not None
    base = fold(f.get("arg")) if has_arg else None
    default = f.get("defresult")
    for when in whens:
        cond: object
        if has_arg:
            cond = _compare("=", base, fold(when.get("expr")))
        else:
            cond = truth(when.get("expr"))
        if cond is True:
            return fold(when.get("result"))
        if cond is UNKNOWN:
            # unknown branch taken: true anyway if every possible result is true
            results = [truth(w.get("result")) for w in whens]
            results.append(truth(default) if default is not None else None)
            return True if all(r is True for r in results) else UNKNOWN
    return fold(default) if default is not None else None


def _simple_select(value: Any) -> dict[str, Any] | None:
    """A SELECT with no FROM, no WHERE other than true, no LIMIT/HAVING/set operation."""
    node = as_node(value)
    if node is None or node[0] != "SelectStmt":
        return None
    f = node[1]
    for key in (
        "fromClause", "larg", "rarg", "valuesLists", "withClause", "havingClause",
        "limitCount", "limitOffset", "groupClause",
    ):  # fmt: skip
        if f.get(key):
            return None
    if f.get("whereClause") is not None and truth(f["whereClause"]) is not True:
        return None
    return f


def _fold_sublink(f: dict[str, Any]) -> object:
    kind = f.get("subLinkType", "EXISTS_SUBLINK")
    sel = _simple_select(f.get("subselect"))
    if sel is None:
        return UNKNOWN
    if kind == "EXISTS_SUBLINK":
        return True
    if kind == "EXPR_SUBLINK":
        targets = items(sel.get("targetList"))
        if len(targets) == 1:
            target = as_node(targets[0])
            if target is not None:
                return fold(target[1].get("val"))
    return UNKNOWN


def _fold_func(f: dict[str, Any]) -> object:
    if f.get("agg_star") or f.get("over") is not None or f.get("agg_filter") is not None:
        return UNKNOWN
    name = _func_name(f)
    args = [fold(a) for a in items(f.get("args"))]
    if name == "concat":
        if any(a is UNKNOWN for a in args):
            return UNKNOWN
        parts = [_text(a) for a in args if a is not None]
        if any(p is UNKNOWN for p in parts):
            return UNKNOWN
        return "".join(parts)
    if len(args) != 1:
        return UNKNOWN
    (v,) = args
    if v is None:
        return None
    if name in ("length", "char_length", "character_length") and isinstance(v, str):
        return len(v)
    if name == "octet_length" and isinstance(v, str):
        return len(v.encode())
    if name in ("lower", "upper") and isinstance(v, str):
        return v.lower() if name == "lower" else v.upper()
    if name in ("btrim", "trim") and isinstance(v, str):
        return v.strip(" ")
    if name == "abs" and _is_num(v):
        return abs(v)  # type: ignore[arg-type]
    if name == "bool" and isinstance(v, int | str):
        return _cast(v, "bool")
    return UNKNOWN


def mentions_columns(value: Any) -> bool:
    """True if a column (of any table, in any subquery) appears anywhere in the expression."""
    return any(tag == "ColumnRef" for tag, _ in iter_nodes(value))


def where_kind(clause: Any) -> str:
    """``absent``, ``tautology`` or ``present`` for an UPDATE/DELETE WHERE clause."""
    if clause is None:
        return "absent"
    node = as_node(clause)
    if node is not None and node[0] == "CurrentOfExpr":
        return "present"
    v = truth(clause)
    if v is True:
        return "tautology"
    if v is False or v is None:
        return "present"
    if not mentions_columns(clause):
        return "tautology"
    return "present"
