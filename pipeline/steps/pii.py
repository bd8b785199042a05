"""PII anonymisation, as FineWeb publishes its text: e-mail addresses and public IP addresses replaced by placeholders.

FineWeb's `PIIFormatter` (datatrove) is the model: the same placeholder addresses (example.com/org, IPs that answered
no ping), an IP replaced only when `ipaddress` calls it global. Differences, on purpose:
- the placeholder is chosen from the matched text's hash, not by a counter that walks on with every document, so the
  bytes written do not depend on the order documents reach a worker (both engines write the same shards);
- obfuscated addresses with a bracketed at (`name [at] host [dot] org`, `name (at) host.org`) are replaced too;
- a local part never holds `/`, so `medium.com/@name.surname/post` stays a URL;
- IPv6 addresses (full, compressed, IPv4-mapped) are replaced when global (in 2000::/3, or a mapped public IPv4);
- an IPv4-like run of four numbers inside a longer dotted run (`1.2.3.4.5`), after a version word (`version
  1.2.3.4`, `v1.2.3.4`, `build 10.0.19041.1`) or glued to letters is a version number, not an address.

`PiiStep` counts its replacements per kind (`pii.email`, `pii.ip`, `pii.extra`) into the run's `stats.json` `edits`.
"""

from __future__ import annotations

import collections
import ipaddress
import re
from collections.abc import Iterable

import xxhash

EMAIL_PLACEHOLDERS = ("email@example.com", "firstname.lastname@example.org")
IP_PLACEHOLDERS = (
    "22.214.171.124",
    "126.96.36.199",
    "188.8.131.52",
    "184.108.40.206",
    "220.127.116.11",
    "18.104.22.168",
)
EXTRA_PLACEHOLDER = "<PII>"

_LOCAL = r"[A-Za-z0-9!#$%&'*+=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+=?^_`{|}~-]+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# A domain ends in a top-level label of letters (or an IDN's xn--): `user@localhost` and `a@b.1` are not addresses.
# Not a file name either: `logo@2x.png` is an image at double resolution.
_FILE_SUFFIX = r"(?:png|jpe?g|gif|svg|webp|avif|ico|bmp|tiff?|js|css|html?|php|pdf)\b"
_DOMAIN = rf"(?:{_LABEL}\.)+(?!{_FILE_SUFFIX})(?:[A-Za-z]{{2,63}}|xn--[A-Za-z0-9-]{{1,59}})"
_EMAIL = re.compile(rf"(?<![\w.+/-]){_LOCAL}@{_DOMAIN}(?![\w@-]|\.\w)")
_AT = r"\s*[\[(<{]\s*(?:at|AT|At)\s*[\])>}]\s*"
_DOT = r"(?:\s*[\[(<{]\s*(?:dot|DOT|Dot)\s*[\])>}]\s*|\.)"
_OBFUSCATED_EMAIL = re.compile(rf"(?<![\w.+/@-]){_LOCAL}{_AT}(?:{_LABEL}{_DOT})+[A-Za-z]{{2,63}}(?![\w@-]|\.\w|{_AT})")
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
# IPv4 starts with a digit, so that the regular expression engine skips to digits; what stands before it is checked
# after (`_public_ipv4`). Its numbers are checked by `ipaddress` (at most 255, no leading zeros).
_IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}(?!\w|\.\w)")
# IPv6 candidates (`ipaddress` decides): at least two colons, optionally a dotted IPv4 tail; replaced before IPv4, so
# that an IPv4-mapped address is one replacement (the IPv4 pass skips what follows a colon).
_IPV6 = re.compile(
    r"(?<![\w:.])(?=[0-9A-Fa-f:]*:[0-9A-Fa-f]*:)(?:[0-9A-Fa-f]{1,4}|:)(?::[0-9A-Fa-f]{0,4}){1,7}"
    rf"(?::{_OCTET}(?:\.{_OCTET}){{3}})?(?![\w:]|\.\w)"
)
# Cheap tests for what most texts lack, before the costly patterns run.
_AT_HINT = re.compile(r"[\[(<{]\s*(?:at|AT|At)\s*[\])>}]")
_VERSION_WORD = re.compile(r"(?:\b(?:version|ver|release|build|firmware|v)\.?\s*)$", re.IGNORECASE)


def _choose(placeholders: tuple[str, ...], found: str) -> str:
    return placeholders[xxhash.xxh3_64_intdigest(found.encode("utf-8", "surrogatepass")) % len(placeholders)]


def _public_ipv4(match: re.Match) -> bool:
    text, start = match.group(0), match.start()
    if text in IP_PLACEHOLDERS:  # a text anonymised before (FineWeb's, or a rerun's input) stays as it is
        return False
    if start and (
        match.string[start - 1] in ".:" or match.string[start - 1].isalnum() or match.string[start - 1] == "_"
    ):
        return False  # the end of a longer run: 1.2.3.4.5, v1.2.3.4, ::ffff:1.2.3.4
    if _VERSION_WORD.search(match.string, max(0, start - 12), start):
        return False
    try:
        return ipaddress.IPv4Address(text).is_global
    except ValueError:  # a number over 255, or a leading zero
        return False


def _public_ipv6(match: re.Match) -> bool:
    text = match.group(0)
    if not any(c.isdigit() for c in text):  # `a::b` in code, `::` alone
        return False
    try:
        address = ipaddress.IPv6Address(text)
    except ValueError:  # times (12:30:45), MAC addresses, C++ scopes
        return False
    if address.ipv4_mapped:
        return address.ipv4_mapped.is_global
    # Public addresses are all in the global unicast block 2000::/3; `dead::beef` or `c060::` is code, not a host.
    return address.packed[0] >> 5 == 0b001 and address.is_global


def _not_placeholder(match: re.Match) -> bool:
    """An address that holds a placeholder is one made by anonymising (a placeholder glued to the characters before
    it): replacing it again would not be idempotent."""
    return not any(placeholder in match.group(0) for placeholder in EMAIL_PLACEHOLDERS)


def read_patterns(path: str) -> list[str]:
    """Extra patterns from a file (local or remote): one regular expression per line, leading and trailing spaces
    ignored; lines starting with `#` are comments. Raises ValueError naming the file and the pattern that does not
    compile."""
    from pipeline.common.remote import read_text_lines

    patterns = [line for line in read_text_lines(path) if not line.startswith("#")]
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"{path}: {pattern!r} is not a regular expression: {exc}")
    return patterns


class PiiStep:
    """Replaces e-mail and public IP addresses (and `extra` patterns) in a document's text; drops nothing. A text with
    nothing to replace is left as it is, byte for byte."""

    name = "pii"

    def __init__(self, emails: bool = True, ips: bool = True, extra: Iterable[str] = ()):
        self.emails, self.ips = emails, ips
        self.extra = [re.compile(pattern) for pattern in extra]
        self.changes: collections.Counter = collections.Counter()

    def anonymise(self, text: str) -> tuple[str, collections.Counter]:
        """The text with its PII replaced, and the replacements made per kind."""
        counts: collections.Counter = collections.Counter()

        def replace(kind: str, placeholders: tuple[str, ...], keep=None):
            def substitute(match: re.Match) -> str:
                if keep is not None and not keep(match):
                    return match.group(0)
                counts[kind] += 1
                return _choose(placeholders, match.group(0))

            return substitute

        for pattern in self.extra:  # first: a placeholder of theirs glued to digits must not make an address
            text = pattern.sub(replace("extra", (EXTRA_PLACEHOLDER,)), text)
        if self.ips:  # before e-mails: an address's local part may hold an IP placeholder's digits
            if "::" in text or text.count(":") >= 7:
                text = _IPV6.sub(replace("ip", IP_PLACEHOLDERS, _public_ipv6), text)
            text = _IPV4.sub(replace("ip", IP_PLACEHOLDERS, _public_ipv4), text)
        if self.emails and "@" in text:
            text = _EMAIL.sub(replace("email", EMAIL_PLACEHOLDERS, _not_placeholder), text)
        if self.emails and _AT_HINT.search(text):
            text = _OBFUSCATED_EMAIL.sub(replace("email", EMAIL_PLACEHOLDERS, _not_placeholder), text)
        return text, counts

    def __call__(self, doc) -> None:
        doc.text, counts = self.anonymise(doc.text)
        for kind, count in counts.items():
            self.changes[f"pii.{kind}"] += count
