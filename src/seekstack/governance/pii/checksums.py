"""Check digits of the identifiers the recognizers validate. Each function takes the bare
identifier (no spaces or dashes) and says whether its check character is right."""

from __future__ import annotations

import datetime as dt

_RID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_RID_CHECK = "10X98765432"


def resident_id(value: str) -> bool:
    """Mainland resident ID (GB 11643): 6-digit region, 8-digit birth date, 3-digit order,
    ISO 7064 MOD 11-2 check character (0-9 or X)."""
    value = value.upper()
    if len(value) != 18 or not value[:17].isdigit():
        return False
    try:
        born = dt.date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return False
    if not (1900 <= born.year and born <= dt.date.today()):
        return False
    total = sum(int(d) * w for d, w in zip(value[:17], _RID_WEIGHTS))
    return _RID_CHECK[total % 11] == value[17]


def luhn(digits: str) -> bool:
    if not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


_USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def uscc(value: str) -> bool:
    """Unified Social Credit Code (GB 32100): 18 characters, MOD 31 check."""
    value = value.upper()
    if len(value) != 18 or any(c not in _USCC_CHARS for c in value):
        return False
    total = sum(_USCC_CHARS.index(c) * w for c, w in zip(value[:17], _USCC_WEIGHTS))
    return _USCC_CHARS[(31 - total % 31) % 31] == value[17]


def hk_id(value: str) -> bool:
    """Hong Kong identity card: 1-2 letters, 6 digits, check digit or A (MOD 11); brackets removed."""
    value = value.upper().replace("(", "").replace(")", "")
    letters = value[:-7]
    body, check = value[-7:-1], value[-1]
    if len(letters) not in (1, 2) or not letters.isalpha() or not body.isdigit():
        return False
    chars = (" " + letters if len(letters) == 1 else letters) + body
    total = sum((36 if c == " " else (ord(c) - 55 if c.isalpha() else int(c))) * w for c, w in zip(chars, range(9, 1, -1)))
    expected = (11 - total % 11) % 11
    return check == ("A" if expected == 10 else str(expected))


_TW_LETTERS = dict(zip("ABCDEFGHJKLMNPQRSTUVXYWZIO", range(10, 36)))


def taiwan_id(value: str) -> bool:
    """Taiwan national ID: letter, 1 or 2 (sex) or 8/9 (resident), 8 digits; weighted MOD 10."""
    value = value.upper()
    if len(value) != 10 or value[0] not in _TW_LETTERS or not value[1:].isdigit() or value[1] not in "1289":
        return False
    n = _TW_LETTERS[value[0]]
    total = n // 10 + (n % 10) * 9 + sum(int(d) * w for d, w in zip(value[1:9], range(8, 0, -1))) + int(value[9])
    return total % 10 == 0
