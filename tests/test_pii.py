"""PII: each kind found and redacted, look-alikes (versions, dates, prices, decimals) left alone."""

from __future__ import annotations

import pytest

from filters.pii import KINDS, PIIFilter
from generator.core.records import Record

FOUND = [
    ("Write to jane.roe@gmail.com for details.", "Write to <EMAIL> for details."),
    ("Call (415) 555-2671 after six.", "Call <PHONE> after six."),
    ("Ring +44 20 7946 0958 tomorrow.", "Ring <PHONE> tomorrow."),
    ("Paris office: +33 1 42 68 53 00.", "Paris office: <PHONE>."),
    ("phone: 415.555.2671", "phone: <PHONE>"),
    ("Pay with 4111 1111 1111 1111 today.", "Pay with <CREDIT_CARD> today."),
    ("Card 5500-0000-0000-0004 was declined.", "Card <CREDIT_CARD> was declined."),
    ("IBAN DE89 3704 0044 0532 0130 00 please.", "IBAN <IBAN> please."),
    ("Send it to GB82WEST12345698765432.", "Send it to <IBAN>."),
    ("The server 8.8.8.8 answered.", "The server <IP_ADDRESS> answered."),
    ("Reach 2001:4860:4860::8888 over IPv6.", "Reach <IP_ADDRESS> over IPv6."),
    ("My SSN is 536-90-4399.", "My SSN is <NATIONAL_ID>."),
    ("CPF 390.533.447-05 on file.", "CPF <NATIONAL_ID> on file."),
    ("DNI 54362315K en vigor.", "DNI <NATIONAL_ID> en vigor."),
    ("She lives at 221B Baker Street, London.", "She lives at <STREET_ADDRESS>."),
    ("Mail a@b.co and call 202-555-0143.", "Mail <EMAIL> and call <PHONE>."),
]

NOT_PII = [
    "Email user@example.com is the documentation address.",
    "Python 3.11.4 was released in 2023.",
    "Upgrade to version 10.2.3.4 first.",
    "The meeting is on 2023-01-15 at 14:30.",
    "Dates like 12/05/2023 are ambiguous.",
    "The house costs $1,234,567.89 today.",
    "Pi is about 3.14159265358.",
    "The population is 1,234,567 people.",
    "ISBN 978-3-16-148410-0 is a book.",
    "Order 1234567890123456 failed the Luhn check.",
    "Use 192.168.1.1 or 127.0.0.1 on your own network.",
    "In C++, std::vector and 10:30:00 are not addresses.",
    "SSN 000-12-3456 is not a valid number.",
    "In 1984 George Orwell wrote a novel.",
    "UUID 123e4567-e89b-12d3-a456-426614174000 identifies a record.",
]


@pytest.mark.parametrize(
    ("text", "redacted"), FOUND, ids=[f"{i}-{r.split('<')[1].split('>')[0].lower()}" for i, (_, r) in enumerate(FOUND)]
)
def test_redacts_each_kind(text: str, redacted: str) -> None:
    flt = PIIFilter()
    assert flt.redact(text, flt.find(text)) == redacted


@pytest.mark.parametrize(
    "text",
    NOT_PII,
    ids=[
        "example-domain",
        "version",
        "version-quad",
        "date-time",
        "slash-date",
        "price",
        "decimal",
        "thousands",
        "isbn",
        "not-luhn",
        "private-ip",
        "cpp-and-time",
        "bad-ssn",
        "year",
        "uuid",
    ],
)
def test_leaves_look_alikes(text: str) -> None:
    assert PIIFilter().find(text) == []


# Emails with every legal local-part character, and addresses replaced whole: street, unit, city,
# state and postal code.
WHOLE = [
    pytest.param("Write to j.o'brien@acme.org today.", "Write to <EMAIL> today.", id="email-apostrophe"),
    pytest.param("Ask o'neil+tag@mail.co.uk.", "Ask <EMAIL>.", id="email-apostrophe-plus"),
    pytest.param("Mail a!b#c$d%e&f*g+h/i=j?k^l_m`n{o|p}q~r-s@acme.org now.", "Mail <EMAIL> now.", id="email-all-atext"),
    pytest.param("Mail 'bob@acme.org' now.", "Mail '<EMAIL>' now.", id="email-in-single-quotes"),
    pytest.param("Run `ann.lee@corp.io` here.", "Run `<EMAIL>` here.", id="email-in-backticks"),
    pytest.param("It's o'clock: write ann@corp.io.", "It's o'clock: write <EMAIL>.", id="email-after-apostrophes"),
    pytest.param("Write to a..b@acme.org.", "Write to <EMAIL>.", id="email-doubled-dot-still-redacted"),
    pytest.param("She lives at 221B Baker Street, London NW1 6XE.", "She lives at <STREET_ADDRESS>.", id="uk-postcode"),
    pytest.param(
        "Post it to 10 Downing Street, London, SW1A 2AA, UK.", "Post it to <STREET_ADDRESS>.", id="uk-country"
    ),
    pytest.param(
        "Ship to 42 Elm Road, Springfield, IL 62704-1234 by Monday.",
        "Ship to <STREET_ADDRESS> by Monday.",
        id="us-zip4",
    ),
    pytest.param(
        "Send 1600 Pennsylvania Avenue NW, Washington, DC 20500 a card.",
        "Send <STREET_ADDRESS> a card.",
        id="us-directional",
    ),
    pytest.param("Mail 12 Main St., Apt 4B, Springfield, IL 62704.", "Mail <STREET_ADDRESS>.", id="us-unit"),
    pytest.param(
        "He lives at 350 Fifth Avenue, New York, NY 10118.", "He lives at <STREET_ADDRESS>.", id="us-two-word-city"
    ),
    pytest.param(
        "We met at 5 Oak Lane, Boston, and then left.",
        "We met at <STREET_ADDRESS>, and then left.",
        id="city-before-comma",
    ),
    pytest.param(
        "Drop it at 5 Main Street, John said.",
        "Drop it at <STREET_ADDRESS>, John said.",
        id="no-city-when-the-clause-goes-on",
    ),
]

# Apostrophes, @ and dots in prose, versions and handles: nothing to redact.
NOT_WHOLE = [
    pytest.param("don't @ me", id="dont-at-me"),
    pytest.param("Build v1.2@beta before the release.", id="version-at-tag"),
    pytest.param("It's the team's job; they'll ship at 5pm.", id="prose-apostrophes"),
    pytest.param("Ping @o'brien on the channel.", id="handle"),
    pytest.param("pip install pkg==1.2 and git tag v1.2@{upstream}.", id="git-ref"),
    pytest.param("The cat's toy is @home.", id="at-word"),
    pytest.param("Turn left on Main Street after the bridge.", id="street-without-number"),
    pytest.param("The job ran at 2024-01-10 08:15:02 and failed.", id="iso-timestamp"),
]


@pytest.mark.parametrize(("text", "redacted"), WHOLE)
def test_redacts_emails_and_addresses_whole(text: str, redacted: str) -> None:
    flt = PIIFilter()
    assert flt.redact(text, flt.find(text)) == redacted


@pytest.mark.parametrize("text", NOT_WHOLE)
def test_leaves_apostrophes_and_at_signs_in_prose(text: str) -> None:
    assert PIIFilter().find(text) == []


def test_every_kind_has_a_found_case() -> None:
    covered = {r.split("<")[1].split(">")[0].lower() for _, r in FOUND}
    assert covered == set(KINDS)


def test_redact_rewrites_every_field_and_counts_kinds() -> None:
    record = Record(
        "Email jane.roe@gmail.com a summary.",
        "Call (415) 555-2671.",
        "Done: wrote to jane.roe@gmail.com and bob@corp.io.",
        {"round": 2},
    )
    [v] = PIIFilter().judge([record])
    assert v.keep and v.record is not None
    assert v.record.instruction == "Email <EMAIL> a summary."
    assert v.record.input == "Call <PHONE>."
    assert v.record.output == "Done: wrote to <EMAIL> and <EMAIL>."
    assert v.detail == {"redactions": {"email": 3, "phone": 1}}
    assert v.record.meta == {"round": 2, "pii_redacted": {"email": 3, "phone": 1}}


def test_drop_names_the_first_kind_found() -> None:
    records = [
        Record("Write to the office.", "", "Their IBAN is DE89 3704 0044 0532 0130 00."),
        Record("Summarize the article.", "", "Clean text."),
    ]
    dropped, kept = PIIFilter(action="drop").judge(records)
    assert (dropped.keep, dropped.reason) == (False, "pii_iban")
    assert dropped.detail == {"field": "output", "kinds": {"iban": 1}}
    assert kept.keep and kept.record is None


def test_kinds_and_fields_limit_the_search() -> None:
    record = Record("Email jane.roe@gmail.com now.", "", "Call (415) 555-2671.")
    [v] = PIIFilter(kinds=["phone"]).judge([record])
    assert v.record is not None and v.record.instruction == record.instruction
    assert v.detail == {"redactions": {"phone": 1}}
    [v] = PIIFilter(fields=["instruction"], kinds=["phone"]).judge([record])
    assert v.keep and v.record is None


def test_phone_region_reads_national_numbers() -> None:
    text = "Ruf an: 030 12345678."
    assert PIIFilter(phone_region="US").find(text) == []
    assert [k for *_, k in PIIFilter(phone_region="DE").find(text)] == ["phone"]
