"""Faster forms of trafilatura's XPaths that select the same elements, installed in the extraction child.

trafilatura finds boilerplate with some forty XPaths over the whole tree of every page; evaluating them is about a
third of its time. Two shapes in them are slow in libxml2 and have a fast equivalent:

- `re:test(@class, 'p')`: lxml runs EXSLT's regular expressions in Python, one call per element tested, also for
  elements without the attribute. A missing attribute tests as the empty string, so where `p` cannot match the
  empty string `((@class) and re:test(@class, 'p'))` has the same value and calls Python only for elements that
  have the attribute.
- `.//*[self::div or self::p]`: every `self::` test of every element builds a node-set. `(.//div|.//p)` is the same
  set, found by libxml2's name test. The step's later predicates then filter one node-set in document order
  instead of each parent's children, which changes only what a position means there; so the rewrite is made only
  where no later predicate of the step can be a number.

Both rewrites are decided on the text of each XPath, so another trafilatura release gets them where they hold and
keeps its own XPaths elsewhere. tests/test_xpaths.py evaluates every trafilatura XPath both ways on generated trees.
"""

from __future__ import annotations

import logging
import re
import sys

log = logging.getLogger(__name__)

EXSLT_REGEXP_NS = "http://exslt.org/regular-expressions"

# `re:test(@a|@b, 'pattern'[, 'flags'])` on attributes of the context element, with the guard in front of it if it
# has one already.
_ATTRIBUTE_REGEX_TEST = re.compile(
    r"(?P<guard>\(\([@\w:|-]+\) and )?"
    r"re:test\((?P<attributes>@[\w:-]+(?:\|@[\w:-]+)*), '(?P<pattern>[^']*)'(?:, '(?P<flags>[^']*)')?\)"
)
# `.//*[self::a or self::b]` or `//*[...]`: a step that selects any element and keeps it by its name only.
_ANY_ELEMENT_OF_NAMES = re.compile(r"(?P<axis>\.?//)\*\[\s*(?P<names>self::[\w-]+(?:\s+or\s+self::[\w-]+)*)\s*\]")
_STRING_LITERAL = re.compile(r"'[^']*'|\"[^\"]*\"")
# Names before a parenthesis whose value is never a number: functions, node tests and the boolean operators.
_NOT_NUMERIC_CALLS = frozenset(
    "boolean concat contains false lang local-name name normalize-space not starts-with string substring "
    "substring-after substring-before translate true re:test node text comment processing-instruction or and".split()
)
# In a predicate with string literals blanked: what could make its value a number (a position) besides a call.
_NUMERIC_SYNTAX = re.compile(
    r"(?<![\w.-])\.?\d"  # a number (a digit inside a name such as h1 is part of the name)
    r"|[$+]"  # a variable, an addition
    r"|(?<![\w-])-|-(?![\w-])"  # a subtraction or negation (a '-' inside a name is part of it)
    r"|(?<![/@:(\[|])\*"  # a multiplication (a '*' after a slash, '@', an axis, '(', '[' or '|' is a name test)
    r"|(?<![\w:@/.-])(?:div|mod)(?![\w-])"  # a division or modulo (an element named div follows '/' or '::')
)


def _guard_regex_test(match: re.Match) -> str:
    flags = re.IGNORECASE if match["flags"] and "i" in match["flags"] else 0
    if match["guard"] or re.search(match["pattern"], "", flags) is not None:
        return match[0]  # guarded already, or the test holds on a missing attribute and must run
    return f"(({match['attributes']}) and {match[0]})"


def guard_attribute_regex_tests(path: str) -> str:
    """`re:test(@id, 'p')` becomes `((@id) and re:test(@id, 'p'))` wherever `p` cannot match the empty string."""
    return _ATTRIBUTE_REGEX_TEST.sub(_guard_regex_test, path)


def _predicates_after(path: str, start: int) -> list[str] | None:
    """The predicates `[...]` that follow each other from `start` (whitespace between them allowed); None where a
    bracket is not closed. Brackets inside string literals do not count."""
    predicates: list[str] = []
    position = start
    while True:
        opening = position
        while opening < len(path) and path[opening].isspace():
            opening += 1
        if opening == len(path) or path[opening] != "[":
            return predicates
        depth, index, quote = 0, opening, ""
        while index < len(path):
            char = path[index]
            if quote:
                quote = "" if char == quote else quote
            elif char in "'\"":
                quote = char
            elif char == "[":
                depth += 1
            elif char == "]":
                depth -= 1
                if depth == 0:
                    break
            index += 1
        else:
            return None
        predicates.append(path[opening + 1 : index])
        position = index + 1


def could_be_a_position(predicate: str) -> bool:
    """Whether a predicate's value could be a number, which a predicate compares with the position: a number, a
    variable, arithmetic, or a call of anything but a function known to give a string, a boolean or nodes."""
    code = _STRING_LITERAL.sub("''", predicate)
    calls = re.findall(r"([\w.:-]+)\s*\(", code)
    return bool(_NUMERIC_SYNTAX.search(code)) or any(call not in _NOT_NUMERIC_CALLS for call in calls)


def _starts_a_path(path: str, start: int) -> bool:
    """Whether a location path starts at `start`: first in the expression, or after '(', '[', ',', '|' or an
    `or`/`and` operator, which follows an operand (`[or` is an element named or). After a step, `//` continues that
    step's path: `a //*` is `a//*`."""
    before = path[:start].rstrip()
    return not before or before[-1] in "([,|" or re.search(r"[\w)\]'\"*.]\s+(?:or|and)$", before) is not None


def union_of_names(path: str) -> str:
    """`.//*[self::a or self::b][p]` becomes `(.//a|.//b)[p]` wherever the step starts a location path and none
    of its later predicates could be a position."""
    pieces, done = [], 0
    for match in _ANY_ELEMENT_OF_NAMES.finditer(path):
        if not _starts_a_path(path, match.start()):
            continue
        predicates = _predicates_after(path, match.end())
        if predicates is None or any(map(could_be_a_position, predicates)):
            continue
        names = re.findall(r"self::([\w-]+)", match["names"])
        pieces += [path[done : match.start()], "(" + "|".join(match["axis"] + name for name in names) + ")"]
        done = match.end()
    return "".join(pieces) + path[done:]


def namespace_prefixes(path: str) -> set[str]:
    """The prefixes of the qualified names in `path` (`re` of `re:test`; an axis's `::` is not one)."""
    return set(re.findall(r"(?<![\w.:-])([A-Za-z_][\w.-]*):(?!:)", _STRING_LITERAL.sub("''", path)))


def faster_xpath(path: str) -> str:
    """`path` with both rewrites: the same elements, selected faster."""
    return union_of_names(guard_attribute_regex_tests(path))


def speed_up_trafilatura() -> int:
    """Replace every XPath in trafilatura's modules by its `faster_xpath` form; returns how many it replaced.
    Process-wide, so the extraction child only (its texts are compared with in-process extraction's in
    tests/test_extract.py)."""
    import trafilatura  # noqa: F401  (its modules are what is rewritten)
    from lxml.etree import XPath, XPathSyntaxError

    # (original, replacement) by the id of either: a list imported by several modules is met more than once, and
    # the original is kept alive so that no new object takes its id.
    replaced: dict[int, tuple[XPath, XPath]] = {}

    def replacement(xpath: object) -> object:
        if not isinstance(xpath, XPath):
            return xpath
        if id(xpath) not in replaced:
            path, new = faster_xpath(xpath.path), xpath
            # An XPath's namespace mappings cannot be read back: only EXSLT's `re`, the one trafilatura maps, is
            # mapped again.
            if path != xpath.path and namespace_prefixes(xpath.path) <= {"re"}:
                try:
                    new = XPath(path, namespaces={"re": EXSLT_REGEXP_NS})
                except XPathSyntaxError:  # a shape the rewrites misread: the original stays, only slower
                    log.warning("trafilatura's XPath kept as it is, its faster form does not compile: %s", path)
            replaced[id(xpath)] = replaced[id(new)] = (xpath, new)
        return replaced[id(xpath)][1]

    for name, module in list(sys.modules.items()):
        if name.partition(".")[0] != "trafilatura":
            continue
        for attribute, value in list(vars(module).items()):
            if isinstance(value, list):  # shared by every module that imports the list: replaced in place
                value[:] = map(replacement, value)
            elif replacement(value) is not value:
                setattr(module, attribute, replacement(value))
    return len({id(new) for old, new in replaced.values() if new is not old})
