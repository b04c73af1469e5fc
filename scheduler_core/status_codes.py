"""The status-code rules of a task: `successCodes` and `staleCodes` (SPEC.md, "Delivery
rules").

A rule is a final status code, 100..599 as RFC 9110 section 15 numbers them, or a class
written as its first digit and ``xx`` (``"2xx"``, ``"4XX"`` is read the same). A list of
rules matches a status when any rule does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from scheduler_core.models import StatusRule

MIN_CODE, MAX_CODE = 100, 599
MAX_RULES = 100  # a list longer than this is refused: nothing needs more
DEFAULT_SUCCESS_CODES: tuple[StatusRule, ...] = ("2xx",)


class StatusRuleError(ValueError):
    """A rule that is neither a code in 100..599 nor a class "1xx".."5xx"."""


def parse_rule(value: Any) -> StatusRule:
    """`value` as a rule: an int in 100..599 is kept, a class like "2xx" becomes lower case.

    Raises StatusRuleError for anything else (booleans, fractions, "200", " 2xx", 600)."""
    if isinstance(value, bool):  # True is an int to Python, never a code to a user
        raise StatusRuleError(f"{str(value).lower()} is not a status code")
    if isinstance(value, int):
        if MIN_CODE <= value <= MAX_CODE:
            return value
        raise StatusRuleError(f"{value} is outside {MIN_CODE}..{MAX_CODE}")
    if isinstance(value, str):
        text = value.lower()
        if len(text) == 3 and text[0] in "12345" and text[1:] == "xx":
            return text
        raise StatusRuleError(
            f"{value[:20]!r} is not a status class: write a digit 1..5 then 'xx', like '2xx'"
        )
    raise StatusRuleError(f"a rule is a status code or a class like '2xx', not {_json_kind(value)}")


def _json_kind(value: Any) -> str:
    """What a JSON value is, in JSON's words (for an error message)."""
    if value is None:
        return "null"
    if isinstance(value, float):
        return "a fraction" if not value.is_integer() else "a number with a fraction part"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "this value"


def parse_rules(values: Iterable[Any]) -> tuple[StatusRule, ...]:
    """Each of `values` as a rule, in order, repeats dropped. Raises StatusRuleError naming
    the first bad one by its index."""
    rules: list[StatusRule] = []
    for index, value in enumerate(values):
        if index >= MAX_RULES:
            raise StatusRuleError(f"at most {MAX_RULES} rules")
        try:
            rule = parse_rule(value)
        except StatusRuleError as exc:
            raise StatusRuleError(f"item {index}: {exc}") from None
        if rule not in rules:
            rules.append(rule)
    return tuple(rules)


def matches(rules: Iterable[StatusRule], status: int) -> bool:
    """True when `status` is one of `rules`' codes or in one of their classes."""
    for rule in rules:
        if isinstance(rule, int):
            if rule == status:
                return True
        elif status // 100 == int(rule[0]):
            return True
    return False


def codes_text(codes: tuple[StatusRule, ...] | None) -> str | None:
    """successCodes / staleCodes as the store keeps them: a JSON array, None (NULL) for
    the default."""
    return None if codes is None else json.dumps(list(codes))


def codes_of(text: str | None) -> tuple[StatusRule, ...] | None:
    """successCodes / staleCodes as the store keeps them, back as a tuple (None: the
    default)."""
    return None if text is None else tuple(json.loads(text))
