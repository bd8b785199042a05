import random
import sys

import pytest
from lxml import etree, html

from pipeline.steps import xpaths
from tests.conftest import run_python


@pytest.mark.parametrize(
    ("path", "faster"),
    [
        # a regular-expression test on an attribute is guarded by the attribute's presence...
        ("re:test(@id, 'nav|menu')", "((@id) and re:test(@id, 'nav|menu'))"),
        ("re:test(@id|@class, '^shar', 'i')", "((@id|@class) and re:test(@id|@class, '^shar', 'i'))"),
        # ...unless the pattern matches the empty string (a missing attribute would pass), or it is not on attributes
        ("re:test(@id, 'x?')", "re:test(@id, 'x?')"),
        ("re:test(@class, 'a|')", "re:test(@class, 'a|')"),
        ("re:test(., 'nav')", "re:test(., 'nav')"),
        # an element test by names only becomes a union of name tests...
        (".//*[self::div or self::p][@class]", "(.//div|.//p)[@class]"),
        ("//*[self::h1 or self::h2]", "(//h1|//h2)"),
        ("(.//*[self::a or self::b][@c='[1]'])[1]", "((.//a|.//b)[@c='[1]'])[1]"),
        ("@x or .//*[self::a][not(.//*[self::p or self::q])]", "@x or (.//a)[not((.//p|.//q))]"),
        (".//*[self::li][starts-with(@class, 'x')]//a[@href]", "(.//li)[starts-with(@class, 'x')]//a[@href]"),
        # ...unless a later predicate could be a position, or the step continues another path
        (".//*[self::a or self::b][1]", ".//*[self::a or self::b][1]"),
        (".//*[self::a][last()]", ".//*[self::a][last()]"),
        (".//*[self::a][position() < 3]", ".//*[self::a][position() < 3]"),
        (".//*[self::a][count(b) > 1]", ".//*[self::a][count(b) > 1]"),
        (".//*[self::a][@x - @y]", ".//*[self::a][@x - @y]"),
        (".//*[self::a][@x * @y]", ".//*[self::a][@x * @y]"),
        (".//*[self::a][@x div @y]", ".//*[self::a][@x div @y]"),
        (".//*[self::a][$n]", ".//*[self::a][$n]"),
        (".//*[self::a][@x][.5]", ".//*[self::a][@x][.5]"),
        (".//*[self::a][ext:f(@b)]", ".//*[self::a][ext:f(@b)]"),
        (".//*[self::a][@x", ".//*[self::a][@x"),  # a bracket not closed: not an XPath to rewrite
        ("..//*[self::a]", "..//*[self::a]"),
        ("x //*[self::a][@y]", "x //*[self::a][@y]"),
        ("a[ or //*[self::b]]", "a[ or //*[self::b]]"),  # `or` here is an element's name: the path goes on
        # both at once; and a faster path is its own faster form
        (
            ".//*[self::div or self::span][re:test(@class, 'ad')]",
            "(.//div|.//span)[((@class) and re:test(@class, 'ad'))]",
        ),
        (
            "(.//div|.//span)[((@class) and re:test(@class, 'ad'))]",
            "(.//div|.//span)[((@class) and re:test(@class, 'ad'))]",
        ),
    ],
)
def test_the_faster_form_of_an_xpath(path, faster):
    assert xpaths.faster_xpath(path) == faster


TAGS = "div p span section article main aside item list ul li a h1 h2 h3 header footer nav hi ref head".split()
TOKENS = (
    "content post-content article-body entry-content main sidebar nav navbar menu footer share-buttons social "
    "comment-list comments respond reply-box hidden hide-print display:none cookie-banner consent teaser caption "
    "bottom widget ad-slot author byline title entry-title tags infinite-scroll mvp-post-add-box "
    "elementor-share-buttons message akismet premium related meta"
).split()


def random_tree(rng: random.Random) -> etree._Element:
    """A tree of the tags trafilatura's XPaths name (after its own renaming to item, list, hi, ref), with ids,
    classes, styles, roles and others made of its boilerplate words, in random order, empty ones included."""
    root = html.Element("body")
    elements = [root]
    for _ in range(rng.randrange(5, 80)):
        element = etree.SubElement(rng.choice(elements), rng.choice(TAGS))
        names = rng.sample(["id", "class", "style", "role", "aria-hidden", "itemprop", "data-component", "rel"], 3)
        for name in names[: rng.randrange(4)]:
            words = rng.sample(TOKENS, rng.randrange(3)) + rng.sample(["", "x", "Nav", "true", "author"], 1)
            element.set(name, rng.choice([" ", "-", "_", ""]).join(words))
        element.text = rng.choice(["", "word " * rng.randrange(30)])
        elements.append(element)
    return root


def trafilatura_xpaths() -> list[etree.XPath]:
    import trafilatura  # noqa: F401  (its modules hold the XPaths)

    found = {}
    for name, module in list(sys.modules.items()):
        if name.partition(".")[0] == "trafilatura":
            for value in vars(module).values():
                for xpath in value if isinstance(value, list) else [value]:
                    if isinstance(xpath, etree.XPath):
                        found[id(xpath)] = xpath
    return list(found.values())


# XPaths whose faster form must keep what a position or an empty match means (trafilatura has a few of the first).
POSITIONAL_OR_EMPTY_MATCHING = [
    ".//*[self::div or self::li][1]",
    "(.//*[self::div or self::li][re:test(@class, 'nav')])[1]",
    ".//*[self::p or self::span][@class][last()]",
    ".//*[re:test(@class, 'x?')]",
    ".//*[self::div][re:test(@id, '^$|nav')]",
]


def test_every_trafilatura_xpath_selects_the_same_elements_in_its_faster_form():
    rng = random.Random(5)
    trees = [random_tree(rng) for _ in range(300)]
    extra = [etree.XPath(path, namespaces={"re": xpaths.EXSLT_REGEXP_NS}) for path in POSITIONAL_OR_EMPTY_MATCHING]
    changed = selected = 0
    for original in trafilatura_xpaths() + extra:
        faster_path = xpaths.faster_xpath(original.path)
        if faster_path == original.path:
            continue
        changed += 1
        faster = etree.XPath(faster_path, namespaces={"re": xpaths.EXSLT_REGEXP_NS})
        for tree in trees:
            elements = original(tree)
            assert faster(tree) == elements, original.path  # the same element objects, in the same order
            selected += bool(elements)
    assert changed >= 20 and selected >= 1000  # the rewrites were made, and they selected something


def test_the_extraction_child_installs_the_faster_xpaths_once():
    """`speed_up_trafilatura` replaces trafilatura's XPaths process-wide (so only in a subprocess here), in the
    lists every module shares and in module attributes; a second call finds nothing left to replace."""
    probe = (
        "import sys; from pipeline.steps import xpaths; first = xpaths.speed_up_trafilatura(); "
        "main = sys.modules['trafilatura.main_extractor']; baseline = sys.modules['trafilatura.baseline']; "
        "print(first, xpaths.speed_up_trafilatura(), main.OVERALL_DISCARD_XPATH[0].path.split()[0], "
        "'((@class) and re:test(@class,' in baseline.BASIC_CLEAN_XPATH.path)"
    )
    result = run_python(probe)
    first, second, overall, cookie_guarded = result.stdout.split()
    assert int(first) >= 20 and second == "0"
    assert overall.startswith("(.//div|.//item|") and cookie_guarded == "True"


def test_a_faster_form_that_does_not_compile_leaves_the_xpath_as_it_is():
    probe = (
        "import sys; from pipeline.steps import xpaths; xpaths.faster_xpath = lambda path: path + ' ]'; "
        "import trafilatura; rules = sys.modules['trafilatura.xpaths'].OVERALL_DISCARD_XPATH; before = list(rules); "
        "print(xpaths.speed_up_trafilatura(), all(map(lambda a, b: a is b, rules, before)))"
    )
    result = run_python(probe)
    assert result.stdout.split() == ["0", "True"]
    assert "kept as it is, its faster form does not compile" in result.stderr
