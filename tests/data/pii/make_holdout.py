"""Writes holdout.jsonl: PII written the way real text writes it, for a table the recognizers
were not tuned on.

The synthetic corpus (make_corpus.py) writes every identifier in its canonical shape. Real
text does not: full-width digits from Chinese input methods (１３８…), separators (spaces,
hyphens, dashes, dots), mixed scripts and cases (Tel/手机, x/X), identifiers glued to labels
and units. And it is full of look-alikes: hashes, UUIDs, versions, order and tracking
numbers, timestamps, amounts. These sentences were written from those categories before the
recognizers were widened, and the recognizers were then widened from a separate list of
shapes (tests/unit/test_pii.py), not from this file. Check digits are computed here,
independently of seekstack's validators. Every value is synthetic.

Run once (python tests/data/pii/make_holdout.py); the output is committed.
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).parent
FW = {ord(c): ord(c) + 0xFEE0 for c in "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz@.-()+"}


def full(text: str) -> str:
    return text.translate(FW)


def rid(body17: str) -> str:
    total = sum(int(d) * (2 ** (17 - i) % 11) for i, d in enumerate(body17))
    return body17 + "10X98765432"[total % 11]


def luhn(partial: str) -> str:
    total = 0
    for i, d in enumerate(reversed([int(c) for c in partial])):
        d = d * 2 if i % 2 == 0 else d
        total += d - 9 if d > 9 else d
    return partial + str((10 - total % 10) % 10)


A = rid("32010619780315211")       # 32010619780315211?
B = rid("44030419920807304")
C = rid("51010720010101002")
D = rid("11010819651130871")
CARD1 = luhn("622202100012345678")  # 19 digits
CARD2 = luhn("436742006543210")     # 16 digits
CARD3 = luhn("621700123409876")

SAMPLES: list[tuple[str, list[tuple[str, str]]]] = [
    # ---- full-width digits and letters (Chinese input methods)
    (f"患者身份证号：{full(A)}，请核对。", [("cn_resident_id", full(A))]),
    (f"手机：{full('13912345678')}", [("cn_mobile", full("13912345678"))]),
    (f"联系电话 {full('138-0013-8000')}（工作日）", [("cn_mobile", full("138-0013-8000"))]),
    (f"邮箱：{full('zhang.wei@example.com')}", [("email", full("zhang.wei@example.com"))]),
    (f"银行卡号{full(CARD2)}已绑定", [("bank_card", full(CARD2))]),
    (f"服务器地址为{full('10.20.30.40')}。", [("ipv4", full("10.20.30.40"))]),
    # ---- separators
    (f"身份证 {A[:6]} {A[6:14]} {A[14:]} 已登记", [("cn_resident_id", f"{A[:6]} {A[6:14]} {A[14:]}")]),
    (f"ID: {B[:6]}-{B[6:14]}-{B[14:]}", [("cn_resident_id", f"{B[:6]}-{B[6:14]}-{B[14:]}")]),
    ("请拨打 139 1234 5678 联系", [("cn_mobile", "139 1234 5678")]),
    ("Call +86 138-1234-5678 after 6pm.", [("cn_mobile", "+86 138-1234-5678")]),
    ("电话：(+86) 13812345678", [("cn_mobile", "(+86) 13812345678")]),
    ("手机0086 13698765432请勿外传", [("cn_mobile", "0086 13698765432")]),
    ("客服电话 138–2222–3333（已停用）", [("cn_mobile", "138–2222–3333")]),
    (f"卡号 {CARD1[:4]} {CARD1[4:8]} {CARD1[8:12]} {CARD1[12:16]} {CARD1[16:]}",
     [("bank_card", f"{CARD1[:4]} {CARD1[4:8]} {CARD1[8:12]} {CARD1[12:16]} {CARD1[16:]}")]),
    (f"card no. {CARD3[:4]}-{CARD3[4:8]}-{CARD3[8:12]}-{CARD3[12:]}",
     [("bank_card", f"{CARD3[:4]}-{CARD3[4:8]}-{CARD3[8:12]}-{CARD3[12:]}")]),
    ("座机 010-62345678 转 8001", [("cn_landline", "010-62345678")]),
    ("SSN 078-05-1120 on file", [("us_ssn", "078-05-1120")]),
    # ---- mixed scripts and cases
    (f"Tel13900001111，邮箱Li.Na@Example.CN", [("cn_mobile", "13900001111"), ("email", "Li.Na@Example.CN")]),
    (f"身份证号码{C.lower() if C.endswith('X') else C}，性别女", [("cn_resident_id", C.lower() if C.endswith("X") else C)]),
    (f"patient ID {D}, admitted 2026-03-04", [("cn_resident_id", D)]),
    ("请联系张伟先生，电话13712349876。", [("person_name", "张伟"), ("cn_mobile", "13712349876")]),
    ("Contact Dr. Chen Ming at chen.ming@hospital.org.cn", [("person_name", "Chen Ming"), ("email", "chen.ming@hospital.org.cn")]),
    ("收件人：李娜，地址：上海市浦东新区世纪大道100号", [("person_name", "李娜"), ("address", "上海市浦东新区世纪大道100号")]),
    ("MAC 00-1A-2B-3C-4D-5E 的设备离线", [("mac_address", "00-1A-2B-3C-4D-5E")]),
    ("ipv6 地址 2001:db8:85a3::8a2e:370:7334 已封禁", [("ipv6", "2001:db8:85a3::8a2e:370:7334")]),
    ("车牌京A·12345违章", [("license_plate", "京A·12345")]),
    (f"My phone is 13800138000 and my ID is {A}.", [("cn_mobile", "13800138000"), ("cn_resident_id", A)]),
    # ---- look-alikes: nothing here is PII
    ("commit 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", []),
    ("sha256: 13912345678a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a0813912", []),
    ("md5 e4d909c290d0fb1ca068ffaddf22cbd0", []),
    ("request id 550e8400-e29b-41d4-a716-446655440000 failed", []),
    ("trace 13912345-6789-4abc-9def-139123456789 dropped", []),
    ("upgrade to version 10.2.3.4 before Friday", []),
    ("seekstack v1.20.30.40 released", []),
    ("版本号 4.4.2.1 已发布", []),
    ("订单号 202611291234567890 已发货", []),
    ("快递单号 SF1234567890123 请查收", []),
    ("时间戳 1795987177123 毫秒", []),
    ("金额 13,912,345.67 元", []),
    ("文件大小 13912345678 字节", []),
    ("测试用例编号 TC-2026-1129-0001", []),
    ("image tag sha256-4367420065432101 deprecated", []),
    ("坐标 39.9042, 116.4074", []),
    ("product code ABC-13912345678-X", []),
]


def main() -> None:
    out = HERE / "holdout.jsonl"
    with out.open("w", encoding="utf-8") as f:
        for text, entities in SAMPLES:
            for cls, value in entities:
                assert value in text, (text, value)
            f.write(json.dumps({"text": text, "entities": [{"class": c, "value": v} for c, v in entities]},
                               ensure_ascii=False) + "\n")
    print(f"wrote {len(SAMPLES)} samples to {out}")


if __name__ == "__main__":
    main()
