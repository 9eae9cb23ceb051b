"""Personal data: find it in instructions, inputs and outputs; drop the record or replace each span
with a typed placeholder (`<EMAIL>`).

Validation comes from maintained libraries: `phonenumbers` (Google's libphonenumber) for phone
numbers, `python-stdnum` for IBANs, national ids and the Luhn check of card numbers. Regular
expressions only propose candidates.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable, Iterator

import phonenumbers
from stdnum import iban, luhn
from stdnum.br import cpf
from stdnum.es import dni
from stdnum.in_ import aadhaar
from stdnum.us import ssn

from filters.base import KEEP, Filter, Verdict, drop
from filters.specs import PII_KINDS
from generator.core.records import Record

KINDS = PII_KINDS
PLACEHOLDERS = {kind: f"<{kind.upper()}>" for kind in KINDS}
_FIELDS = ("instruction", "input", "output")

Span = tuple[int, int, str]  # start, end, kind

# The local part: RFC 5322's atext (letters, digits and ! # $ % & ' * + - / = ? ^ _ ` { | } ~) and
# dots, starting with a letter or digit: a quote, backtick or brace before the name is the text's
# punctuation ('bob@x.org', `bob@x.org`), not the address. Dots are taken anywhere (a doubled or
# trailing one is not legal, but redacting the near-address is the safe side). Quoted local parts
# ("john doe"@x.org) are not looked for.
_EMAIL = re.compile(r"(?<![\w!#$%&*+/=?^~-])\w[\w.!#$%&'*+/=?^`{|}~-]*@((?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,})\b")
# RFC 2606/6761 names reserved for documentation: "user@example.com" is nobody's address.
_DOC_DOMAIN = re.compile(r"(?:^|\.)(?:example\.(?:com|org|net)|example|test|invalid|localhost)$", re.I)
# Every kind but email and street address has a run like this (seven digits or more with separators):
# the candidate finders run only on a window around each run, not over the whole text.
_DIGIT_RUN = re.compile(r"[0-9][0-9 ().\-/]{5,}[0-9]")
_WINDOW_BEFORE, _WINDOW_AFTER = 16, 4  # "+44 ", "NL91 ABNA " before a run; the DNI letter after
_DIGITS = b"0123456789"
_PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?"
    r"\d{1,4}(?:[ .-]?\d{1,4}){1,5}(?!\w)"
)
_DATE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}")
_ISO_DATE = re.compile(r"\d{4}-\d{1,2}-\d{1,2}(?!\d)")  # "2024-01-10 08:15" is a timestamp
_CARD = re.compile(r"(?<![\d.,-])(?:\d[ -]?){12,18}\d(?![\d.,]\d|-\d)")
# Issuer prefixes and lengths: Visa, Mastercard, Amex, Discover, JCB, Diners.
_CARD_IIN = re.compile(
    r"4(?:\d{12}|\d{15}|\d{18})|(?:5[1-5]|2[2-7])\d{14}|3[47]\d{13}"
    r"|6\d{15,18}|35\d{14}|3(?:0[0-5]|[68]\d)\d{11}"
)
# An IBAN candidate: country, check digits, then letters and digits with single spaces between;
# cut to the country's length (ISO 13616 registry) and checked: mod-97, then the BBAN's format.
# It runs over the whole text, not a window around a run of digits: an account part may end in
# letters (MT84 MALT 0110 0001 2345 MTLC AST0 01S) and pass the window's end.
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}")
IBAN_LENGTHS = dict(
    (entry[:2], int(entry[2:]))
    for entry in (
        "AD24 AE23 AL28 AT20 AZ28 BA20 BE16 BG22 BH22 BI27 BR29 BY28 CH21 CR22 CY28 CZ24 DE22 DJ27 DK18 DO28 "
        "EE20 EG29 ES24 FI18 FK18 FO18 FR27 GB22 GE22 GI23 GL18 GR27 GT28 HN28 HR21 HU28 IE22 IL23 IQ23 IS26 "
        "IT27 JO30 KW30 KZ20 LB28 LC32 LI21 LT20 LU20 LV21 LY25 MC27 MD24 ME22 MK19 MN20 MR27 MT31 MU30 NI28 "
        "NL18 NO15 OM23 PK24 PL28 PS29 PT25 QA29 RO24 RS22 RU33 SA24 SC31 SD18 SE24 SI19 SK24 SM27 SO23 ST25 "
        "SV28 TL23 TN24 TR26 UA29 VA22 VG24 XK20 YE30"
    ).split()
)
# A dotted quad after "version"/"v" is a version number, not an address.
_IPV4 = re.compile(r"(?<![\w.])(?<!version )(?<!v)(?:\d{1,3}\.){3}\d{1,3}(?![\w.]\d|\.\d)")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
# National ids whose format has a run of digits (the window gate above); Italy's codice fiscale and
# the UK's NINO mix letters in and are left out.
_NATIONAL = (
    (re.compile(r"\b\d{3}-\d{2}-\d{4}\b"), ssn.is_valid),  # US social security number
    (re.compile(r"\b\d{3}\.\d{3}\.\d{3}-\d{2}\b"), cpf.is_valid),  # Brazil CPF
    (re.compile(r"\b\d{4} \d{4} \d{4}\b"), aadhaar.is_valid),  # India Aadhaar (Verhoeff)
    (re.compile(r"\b\d{8}-?[A-Z]\b"), dni.is_valid),  # Spain DNI
)
_STREET_SUFFIXES = (
    "Street",
    "St",
    "Avenue",
    "Ave",
    "Road",
    "Rd",
    "Boulevard",
    "Blvd",
    "Lane",
    "Ln",
    "Drive",
    "Dr",
    "Court",
    "Ct",
    "Place",
    "Pl",
    "Terrace",
    "Way",
    "Parkway",
    "Pkwy",
    "Highway",
    "Hwy",
    "Square",
    "Sq",
)
_UNIT = r"(?:,? (?:Apt|Apartment|Suite|Ste|Unit|Flat|Floor|Fl|Room|Rm)\.? ?#?[0-9]{1,5}[A-Z]?|,? #[0-9]{1,5}[A-Z]?)"
_PLACE = r"[A-Z][a-z]+(?:[ -][A-Z][a-z]+){0,2}"
_US_STATE_ZIP = r"[A-Z]{2},? [0-9]{5}(?:-[0-9]{4})?"
_UK_POSTCODE = r"[A-Z]{1,2}[0-9][A-Z0-9]? ?[0-9][A-Z]{2}"
_ZIP = r"[0-9]{5}(?:-[0-9]{4})?"
# The whole address: the street, then (after a comma) an optional unit, the city, and a US state and
# ZIP or a UK postcode or a bare ZIP. A city with no postal code counts only when the sentence or
# clause ends after it ("221B Baker Street, London."): "5 Main Street, John said" keeps "John".
_STREET = re.compile(
    r"[0-9]{1,5}[A-Z]? [A-Z][a-z]+(?:\s+[A-Z][a-z]+){0,3}\s+(?:"
    + "|".join(_STREET_SUFFIXES)
    + rf")\b\.?(?: [NS]?[EW]\b| [NS]\b)?{_UNIT}?"
    + rf"(?:, {_PLACE}(?:,? (?:{_US_STATE_ZIP}|{_UK_POSTCODE}|{_ZIP})\b|(?=[,.;:!?)]|$))"
    + rf"|,? (?:{_US_STATE_ZIP}|{_UK_POSTCODE})\b)?"
    + r"(?:,? (?:USA|US|UK|United States|United Kingdom)\b)?"
)
_STREET_HINTS = tuple(f" {suffix}" for suffix in _STREET_SUFFIXES)


def _has_digit(text: str) -> bool:
    raw = text.encode()
    return len(raw.translate(None, _DIGITS)) != len(raw)


def _emails(text: str) -> Iterator[Span]:
    for m in _EMAIL.finditer(text):
        if not _DOC_DOMAIN.search(m.group(1)):
            yield m.start(), m.end(), "email"


def _cards(text: str) -> Iterator[Span]:
    for m in _CARD.finditer(text):
        digits = m.group(0).replace(" ", "").replace("-", "")
        if _CARD_IIN.fullmatch(digits) and luhn.is_valid(digits):
            yield m.start(), m.end(), "credit_card"


def iban_mod97(compact: str) -> bool:
    """ISO 13616: the country and check digits moved to the end, letters as 10-35, mod 97 is 1."""
    moved = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def _ibans(text: str) -> Iterator[Span]:
    for m in _IBAN.finditer(text):
        length = IBAN_LENGTHS.get(m.group(0)[:2])
        if length is None:
            continue
        end, seen = m.start(), 0
        while seen < length and end < m.end():  # the country's length in letters and digits
            seen += text[end] != " "
            end += 1
        if seen < length or (end < len(text) and text[end].isalnum()):
            continue
        compact = text[m.start() : end].replace(" ", "")
        if iban_mod97(compact) and iban.is_valid(compact):
            yield m.start(), end, "iban"


def _ips(text: str) -> Iterator[Span]:
    yield from _ip_matches(_IPV4, text)


def _ipv6s(text: str) -> Iterator[Span]:
    if "::" in text or text.count(":") >= 7:
        yield from _ip_matches(_IPV6, text)


def _ip_matches(pattern: re.Pattern[str], text: str) -> Iterator[Span]:
    for m in pattern.finditer(text):
        try:
            ip = ipaddress.ip_address(m.group(0))
        except ValueError:
            continue
        # Private, loopback and documentation addresses (192.168.0.1, 127.0.0.1) identify nobody.
        if ip.is_global:
            yield m.start(), m.end(), "ip_address"


def _national_ids(text: str) -> Iterator[Span]:
    for pattern, valid in _NATIONAL:
        for m in pattern.finditer(text):
            if valid(m.group(0)):
                yield m.start(), m.end(), "national_id"


def _streets(text: str) -> Iterator[Span]:
    if any(h in text for h in _STREET_HINTS):
        for m in _STREET.finditer(text):
            if m.start() == 0 or not text[m.start() - 1].isalnum():
                yield m.start(), m.end(), "street_address"


# Which kind wins when two spans start at the same place and are as long.
_PRIORITY = {
    k: i for i, k in enumerate(("email", "credit_card", "iban", "national_id", "ip_address", "phone", "street_address"))
}


class PIIFilter(Filter):
    """Finds personal data of the chosen `kinds` and either drops the record (`action: drop`,
    reason `pii_<kind>` of the first span found) or replaces each span with `<KIND>` (`action:
    redact`; the kept record's `meta["pii_redacted"]` and the verdict's `detail["redactions"]`
    count the spans per kind). `phone_region` is the country assumed for numbers written without
    a country code (ISO 3166 alpha-2)."""

    name = "pii"

    def __init__(
        self,
        action: str = "redact",
        kinds: list[str] | None = None,
        fields: list[str] | None = None,
        phone_region: str = "US",
    ):
        self.kinds = tuple(kinds) if kinds is not None else KINDS
        self.fields = tuple(fields or _FIELDS)
        self.action = action
        self.phone_region = phone_region.upper()
        # Finders that look only at a window around each run of digits, in priority order for
        # overlapping spans (a card number is not also reported as a phone number).
        run_finders: dict[str, Callable[[str], Iterator[Span]]] = {
            "credit_card": _cards,
            "national_id": _national_ids,
            "ip_address": _ips,
            "phone": self._phones,
        }
        self._run_finders = [f for k, f in run_finders.items() if k in self.kinds]
        self._email = "email" in self.kinds
        self._iban = "iban" in self.kinds
        self._ipv6 = "ip_address" in self.kinds
        self._street = "street_address" in self.kinds

    def _phones(self, text: str) -> Iterator[Span]:
        # libphonenumber validates each candidate; its PhoneNumberMatcher would find them too, but
        # costs about a millisecond per text.
        for m in _PHONE.finditer(text):
            start, cand = m.start(), m.group(0)
            # The decimals of "3.14159265358" are not a phone number.
            if start > 1 and text[start - 1] in ".," and text[start - 2].isdigit():
                continue
            if not 7 <= sum(c.isdigit() for c in cand) <= 15 or _DATE.fullmatch(cand) or _ISO_DATE.match(cand):
                continue
            try:
                number = phonenumbers.parse(cand, self.phone_region)
            except phonenumbers.NumberParseException:
                continue
            if phonenumbers.is_valid_number(number):
                yield start, m.end(), "phone"

    def find(self, text: str) -> list[Span]:
        """Non-overlapping PII spans in `text`, in order of position."""
        spans: list[Span] = []
        if self._email and "@" in text:
            spans.extend(_emails(text))
        if _has_digit(text):
            spans.extend(self._digit_spans(text))
        if len(spans) < 2:
            return spans
        kept: list[Span] = []
        for span in sorted(spans, key=lambda s: (s[0], -s[1], _PRIORITY[s[2]])):
            if not kept or span[0] >= kept[-1][1]:
                kept.append(span)
        return kept

    def _digit_spans(self, text: str) -> Iterator[Span]:
        """The kinds that need a digit: each finder reads a window around every run of digits."""
        if self._run_finders:
            for run in _DIGIT_RUN.finditer(text):
                lo = max(0, run.start() - _WINDOW_BEFORE)
                window = text[lo : run.end() + _WINDOW_AFTER]
                for finder in self._run_finders:
                    yield from ((lo + a, lo + b, kind) for a, b, kind in finder(window))
        if self._iban:
            yield from _ibans(text)
        if self._ipv6:
            yield from _ipv6s(text)
        if self._street:
            yield from _streets(text)

    @staticmethod
    def redact(text: str, spans: list[Span]) -> str:
        parts, pos = [], 0
        for start, end, kind in spans:
            parts.append(text[pos:start])
            parts.append(PLACEHOLDERS[kind])
            pos = end
        parts.append(text[pos:])
        return "".join(parts)

    def judge(self, records: list[Record]) -> list[Verdict]:
        out = []
        for r in records:
            texts = [getattr(r, f) for f in self.fields]
            # One gate for all fields: most records have neither an "@" nor a digit.
            joined = "\n".join(texts)
            if "@" not in joined and not _has_digit(joined):
                out.append(KEEP)
                continue
            found = {f: spans for f, text in zip(self.fields, texts, strict=True) if (spans := self.find(text))}
            if not found:
                out.append(KEEP)
                continue
            counts = Counter(kind for spans in found.values() for _, _, kind in spans)
            if self.action == "drop":
                first_field = next(iter(found))
                out.append(drop(f"pii_{found[first_field][0][2]}", field=first_field, kinds=dict(counts)))
                continue
            changes = {f: self.redact(getattr(r, f), spans) for f, spans in found.items()}
            redacted = r.with_(**changes).with_meta(pii_redacted=dict(counts))
            out.append(Verdict(keep=True, record=redacted, detail={"redactions": dict(counts)}))
        return out
