"""PII recognizers as data: one row per class — a pattern, an optional validator, optional
context words that must appear nearby.

Digit and letter lookarounds (``(?<![0-9])``) bound the patterns, never ``\\b``: ``\\b`` does
not fire between a digit and a CJK character ("身份证号11010519491231002X已登记").

Real text writes identifiers in more shapes than their canonical one. Before matching, text
is normalized one character for one (so positions hold): full-width forms from Chinese input
methods (``１３８``, ``＠``, ``－``) become ASCII, dashes (‐ – —) become ``-``. Patterns allow
the separators people type (a resident ID as 6-8-4 groups, ``(+86)`` and ``0086`` before a
mobile). Look-alikes are vetoed: anything inside a hash-like hex token (24+ characters) or a
UUID; an IPv4-shaped version number (``v1.2.3.4``, "version", 版本); an 11-digit number
followed by a unit (字节, bytes, 元, ms …).

Limits, said plainly: names and addresses are rule-based (a surname lexicon with a title or
a label such as 姓名/患者, Mr./Ms./Dr.; addresses need a road and a house number) and miss
names written bare in running text; permits without a check digit (HK/Macau permit,
home-return permit, Taiwan compatriot permit, military officer ID, Macau ID) need their
label nearby or their distinctive shape.
"""

from __future__ import annotations

import functools
import ipaddress
import re

import regex  # like `re`, plus partial matches: what a stream may still complete
from dataclasses import dataclass
from typing import Callable

from . import checksums

ND = r"(?<![0-9])"          # not after a digit
NDA = r"(?<![0-9A-Za-z])"   # not after a digit or Latin letter
END = r"(?![0-9])"
ENDA = r"(?![0-9A-Za-z])"
CONTEXT_WINDOW = 24  # characters before the match searched for context words

# One character for one: full-width ASCII forms (U+FF01–FF5E) and the ideographic space, and
# the dashes people paste (U+2010–2015, U+2212). Positions in the normalized text are positions
# in the original, so a match's value is cut from the original text.
NORMALIZE = {**{0xFF01 + i: 0x21 + i for i in range(94)}, 0x3000: 0x20,
             **{c: 0x2D for c in (*range(0x2010, 0x2016), 0x2212)}}


def normalize(text: str) -> str:
    return text.translate(NORMALIZE)


# Tokens whose digits are not identifiers: hashes (hex, 24+ characters, letters and digits) and UUIDs.
VETO = re.compile(r"(?<![0-9A-Za-z])(?:(?=[0-9a-fA-F]*[a-fA-F])(?=[0-9a-fA-F]*[0-9])[0-9a-fA-F]{24,}"
                  r"|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})(?![0-9A-Za-z])")


@dataclass(frozen=True)
class Recognizer:
    name: str
    label: str                       # what a masked value becomes: [label]
    pattern: re.Pattern
    validate: Callable[[str], bool] | None = None
    context: tuple[str, ...] = ()    # at least one must occur just before the match (case-insensitive)
    checksum: bool = False           # validated by a check digit (recall target 0.99)
    group: int = 0                   # which regex group is the value; -1: the first that matched
    needs: tuple[str, ...] = ()      # cheap pre-check: skip the pattern unless one of these occurs
    digit: bool = False              # cheap pre-check: True when the pattern cannot match without an ASCII digit
    not_before: tuple[str, ...] = () # words just before the match that make it a look-alike (case-insensitive)
    not_after: tuple[str, ...] = ()  # words just after it that do (a unit after a number)

    @functools.cached_property
    def partial(self) -> "regex.Pattern":
        """The same pattern for the `regex` module, which can report partial matches (streams)."""
        return regex.compile(self.pattern.pattern)

    def find(self, text: str):
        for m in self.pattern.finditer(text):
            group = self.group if self.group >= 0 else next((i for i, g in enumerate(m.groups(), 1) if g), 0)
            value = m.group(group)
            if not value:
                continue
            if self.validate is not None and not self.validate(value):
                continue
            if self.context or self.not_before:
                before = text[max(0, m.start() - CONTEXT_WINDOW):m.start()].lower()
                if self.context and not any(word in before for word in self.context):
                    continue
                if any(before.rstrip().endswith(word) for word in self.not_before):
                    continue
            if self.not_after and text[m.end():m.end() + 8].lstrip().lower().startswith(self.not_after):
                continue
            yield m.start(group), m.end(group), value


def _digits(value: str) -> str:
    return re.sub(r"[\s-]", "", value)


def _bank_card(value: str) -> bool:
    """16 or 19 digits (the usual lengths) with a valid Luhn digit."""
    digits = _digits(value)
    return len(digits) in (16, 19) and checksums.luhn(digits)


def _bank_card_rare_length(value: str) -> bool:
    """17 or 18 digits: valid too, but so are many order numbers; the recognizer asks for context."""
    digits = _digits(value)
    return len(digits) in (17, 18) and checksums.luhn(digits)


def _resident_id(value: str) -> bool:
    return checksums.resident_id(_digits(value))


def _ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return False


def _ipv6(value: str) -> bool:
    return ":" in value and value.count(":") >= 2 and _ip(value) and not re.fullmatch(r"[0-9:]+", value)


SURNAMES = ("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
            "姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤")
PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
PLATE_LETTER = "A-HJ-NP-Z"

RECOGNIZERS: tuple[Recognizer, ...] = (
    Recognizer("cn_resident_id", "CN_RESIDENT_ID",
               re.compile(ND + r"([1-6][0-9]{5}(?:18|19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])[0-9]{3}[0-9Xx]"
                          r"|[1-6][0-9]{5}([ -])(?:18|19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])\2[0-9]{3}[0-9Xx])"
                          + ENDA),
               _resident_id, checksum=True, group=1, digit=True),
    Recognizer("hmt_residence_permit", "HMT_RESIDENCE_PERMIT",
               re.compile(ND + r"(8[123]0000(?:19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])[0-9]{3}[0-9Xx])" + ENDA),
               checksums.resident_id, checksum=True, group=1, digit=True),
    Recognizer("uscc", "USCC",
               re.compile(NDA + r"([1-9ANY][1-9][1-6][0-9]{5}[0-9A-HJ-NP-RT-UW-Y]{10})" + ENDA), checksums.uscc, checksum=True, group=1, digit=True),
    Recognizer("bank_card", "BANK_CARD",
               re.compile(ND + r"((?:62|4[0-9]|5[1-5]|3[47]|35|2[2-7])[0-9]{2}(?:[ -]?[0-9]{4}){2,3}(?:[ -]?[0-9]{1,3})?)" + END),
               _bank_card, checksum=True, group=1, digit=True),
    Recognizer("bank_card", "BANK_CARD", re.compile(ND + r"([0-9]{17,18})" + END), _bank_card_rare_length,
               context=("卡号", "银行卡", "card", "账户", "account"), group=1, digit=True),
    Recognizer("hk_id", "HK_ID",
               re.compile(NDA + r"([A-Z]{1,2}[0-9]{6}\(?[0-9A]\)?)" + r"(?![0-9A-Za-z])"), checksums.hk_id, checksum=True, group=1, digit=True),
    Recognizer("taiwan_id", "TAIWAN_ID",
               re.compile(NDA + r"([A-Z][1289][0-9]{8})" + ENDA), checksums.taiwan_id, checksum=True, group=1, digit=True),
    Recognizer("macau_id", "MACAU_ID", re.compile(ND + r"([157][0-9]{6}\([0-9]\))"), needs=("(",), digit=True),
    Recognizer("cn_mobile", "CN_MOBILE",
               re.compile(ND + r"((?:(?:\(\+?86\)|\+?86|0086)[ -]?)?1[3-9][0-9](?:[0-9]{8}|[ -][0-9]{4}[ -][0-9]{4}))" + END),
               group=1, digit=True, not_after=("字节", "byte", "元", "ms", "毫秒", "秒", "次", "kb", "mb", "个")),
    Recognizer("cn_landline", "CN_LANDLINE",
               re.compile(ND + r"((?:\+86[ -]?)?(?:0[1-9][0-9]{1,2}-|\(0[1-9][0-9]{1,2}\))[2-9][0-9]{6,7})" + END), group=1, digit=True),
    Recognizer("cn_service_number", "CN_SERVICE_NUMBER", re.compile(ND + r"([48]00[ -]?[0-9]{3}[ -]?[0-9]{4})" + END), group=1, digit=True),
    Recognizer("cn_passport", "CN_PASSPORT",
               re.compile(NDA + r"([EeGg][0-9]{8}|E[A-HJ-NP-Z][0-9]{7}|[PSD][0-9]{7})" + ENDA),
               context=("护照", "passport"), group=1, digit=True),
    Recognizer("hk_macau_permit", "HK_MACAU_PERMIT",
               re.compile(NDA + r"(C[0-9]{8}|C[A-HJ-NP-Z][0-9]{7})" + ENDA), context=("通行证", "permit", "港澳"), group=1, digit=True),
    Recognizer("home_return_permit", "HOME_RETURN_PERMIT",
               re.compile(NDA + r"([HM][0-9]{8}(?:[0-9]{2})?)" + ENDA), context=("回乡证", "回鄉證", "home return", "home-return"), group=1, digit=True),
    Recognizer("taiwan_compatriot_permit", "TAIWAN_COMPATRIOT_PERMIT",
               re.compile(ND + r"([0-9]{8}|[0-9]{10}(?:\([A-Z]\))?)" + END), context=("台胞证", "臺胞證", "compatriot"), group=1, digit=True),
    Recognizer("military_officer_id", "MILITARY_OFFICER_ID",
               re.compile(r"([军兵士文职海空北沈兰济南广成政后装]字第[0-9]{6,8}号)"), needs=("字第",), digit=True),
    Recognizer("license_plate", "LICENSE_PLATE",
               re.compile(f"([{PROVINCES}][{PLATE_LETTER}][ ·]?(?:[DF][{PLATE_LETTER}0-9][0-9]{{4}}|[0-9]{{5}}[DF]|[{PLATE_LETTER}0-9]{{4}}[{PLATE_LETTER}0-9挂学警]))"
                          + ENDA)),
    Recognizer("us_ssn", "US_SSN", re.compile(ND + r"((?!000|666|9[0-9]{2})[0-9]{3}-(?!00)[0-9]{2}-(?!0000)[0-9]{4})" + END), group=1,
               needs=("-",), digit=True),
    Recognizer("email", "EMAIL",
               re.compile(r"(?<![A-Za-z0-9._%+-])([A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})(?![A-Za-z])"), needs=("@",)),
    Recognizer("ipv4", "IPV4",
               re.compile(r"(?<![0-9.])((?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9]))(?![0-9]|\.[0-9])"),
               _ip, needs=(".",), digit=True, not_before=("v", "version", "ver", "ver.", "版本", "版本号", "release", "build")),
    Recognizer("ipv6", "IPV6", re.compile(r"(?<![0-9A-Fa-f:])([0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7})(?![0-9A-Fa-f:])"), _ipv6, needs=(":",)),
    Recognizer("mac_address", "MAC_ADDRESS", re.compile(r"(?<![0-9A-Fa-f:-])((?:[0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2})(?![0-9A-Fa-f:-])"), needs=(":", "-")),
    Recognizer("person_name", "PERSON_NAME",
               re.compile(f"(?:(?:姓名|患者|病人|联系人|客户|申请人|收件人|持卡人)[:：\\s]*([{SURNAMES}][\u4e00-\u9fa5]{{1,2}}?)(?=[，,。.;；\\s、（(]|先生|女士|$)"
                          f"|([{SURNAMES}][\u4e00-\u9fa5]{{1,2}}?)(?=先生|女士|医生|护士|老师|同志)"
                          r"|(?:Mr|Mrs|Ms|Miss|Dr)\.?\s+([A-Z][a-z]+(?:\s+[A-Z][a-z]+)?)"
                          r"|(?:[Nn]ame|[Pp]atient)\s*[:：]\s*([A-Z][a-z]+\s+[A-Z][a-z]+))"), group=-1,
               needs=("姓名", "患者", "病人", "联系人", "客户", "申请人", "收件人", "持卡人", "先生", "女士", "医生", "护士",
                      "老师", "同志", "Mr", "Ms", "Miss", "Dr", "ame", "atient")),
    Recognizer("address", "ADDRESS",
               re.compile("(?:(?<![\u4e00-\u9fa5])|(?<=[在住于到往址是为自从去来的至]))(?![住址地家在于到往位居寄送是为])"
                          "((?:[\u4e00-\u9fa5]{2,6}?(?:省|自治区))?[\u4e00-\u9fa5]{2,3}(?:市|州|盟)(?:[\u4e00-\u9fa5]{1,6}(?:区|县|旗))?"
                          "[\u4e00-\u9fa5]{1,10}?(?:路|街|大道|巷|弄|道)[0-9]{1,5}号(?:[0-9]{1,4}(?:室|楼|栋|单元))*)"), needs=("号",), digit=True),
)

CLASSES = tuple(dict.fromkeys(r.name for r in RECOGNIZERS))
CHECKSUM_CLASSES = tuple(dict.fromkeys(r.name for r in RECOGNIZERS if r.checksum))

# The cheap pre-checks of every recognizer at once: each needed string and context word is
# looked for once per text, not once per recognizer that names it.
_NEEDS = tuple(dict.fromkeys(n for r in RECOGNIZERS for n in r.needs))
_CONTEXT = tuple(dict.fromkeys(w for r in RECOGNIZERS for w in r.context))
_GATES = tuple((r, r.digit, frozenset(r.needs), frozenset(r.context)) for r in RECOGNIZERS)


def candidates(text: str, lowered: str, has_digit: bool) -> list[Recognizer]:
    """The recognizers that could match ``text`` (normalized): no ASCII digit rules out the
    ``digit`` ones, and one of a recognizer's ``needs`` and of its ``context`` words must occur."""
    needs = {n for n in _NEEDS if n in text}
    context = {w for w in _CONTEXT if w in lowered}
    return [r for r, digit, need, words in _GATES
            if (has_digit or not digit) and (not need or not need.isdisjoint(needs))
            and (not words or not words.isdisjoint(context))]
