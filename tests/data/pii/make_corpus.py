"""Writes corpus.jsonl: labelled PII samples in Chinese, English and both, with look-alikes.

Run once (python tests/data/pii/make_corpus.py); the output is committed and the test reads it.
The check digits here are computed independently of seekstack's validators (different
formulas for the same standards), so a shared mistake would have to be made twice.
Every value is synthetic.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

rng = random.Random(20261125)
HERE = Path(__file__).parent

# ------------------------------------------------------------------ generators


def resident_id(prefix=None):
    region = prefix or rng.choice(["110105", "310104", "440305", "510107", "330106", "420106", "370202", "610113"])
    year = rng.randint(1950, 2005)
    body = f"{region}{year}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}{rng.randint(0, 999):03d}"
    s = 0
    for i, ch in enumerate(body):
        s += int(ch) * (2 ** (17 - i) % 11)
    return body + "10X98765432"[s % 11]


def broken_resident_id():
    good = resident_id()
    wrong = rng.choice([c for c in "0123456789X" if c != good[-1]])
    return good[:-1] + wrong


def luhn_complete(partial):
    digits = [int(c) for c in partial][::-1]
    total = 0
    for i, d in enumerate(digits):
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return partial + str((10 - total % 10) % 10)


def bank_card(spaced=False):
    length = rng.choice([16, 16, 16, 19])
    prefix = rng.choice(["622202", "621700", "622848", "436742", "524091", "625965"])
    number = luhn_complete(prefix + "".join(str(rng.randint(0, 9)) for _ in range(length - len(prefix) - 1)))
    if spaced:
        return " ".join(number[i:i + 4] for i in range(0, len(number), 4))
    return number


USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"


def uscc():
    body = rng.choice("9159") + rng.choice("1123") + rng.choice(["110108", "310115", "440300", "330100"]) + \
        "".join(rng.choice(USCC_ALPHABET) for _ in range(9))
    weights = [pow(3, i, 31) for i in range(17)]
    total = sum(USCC_ALPHABET.index(c) * w for c, w in zip(body, weights))
    return body + USCC_ALPHABET[(31 - total % 31) % 31]


def hk_id():
    letter = rng.choice("ACDEGHKPRYZ")
    digits = "".join(str(rng.randint(0, 9)) for _ in range(6))
    values = [36, ord(letter) - 55] + [int(d) for d in digits]
    total = sum(v * w for v, w in zip(values, [9, 8, 7, 6, 5, 4, 3, 2]))
    check = (11 - total % 11) % 11
    return f"{letter}{digits}({'A' if check == 10 else check})"


TW = {"A": 10, "B": 11, "C": 12, "D": 13, "E": 14, "F": 15, "G": 16, "H": 17, "J": 18, "K": 19, "L": 20, "M": 21,
      "N": 22, "P": 23, "Q": 24, "R": 25, "S": 26, "T": 27, "U": 28, "V": 29, "X": 30, "Y": 31, "W": 32, "Z": 33}


def taiwan_id():
    letter = rng.choice(list(TW))
    digits = [rng.choice([1, 2])] + [rng.randint(0, 9) for _ in range(7)]
    code = TW[letter]
    total = code // 10 + (code % 10) * 9 + sum(d * w for d, w in zip(digits, [8, 7, 6, 5, 4, 3, 2, 1]))
    return letter + "".join(map(str, digits)) + str((10 - total % 10) % 10)


def digits(n):
    return "".join(str(rng.randint(0, 9)) for _ in range(n))


def mobile():
    number = rng.choice("3456789") + digits(9)
    number = "1" + number
    style = rng.randint(0, 3)
    if style == 1:
        return f"+86 {number}"
    if style == 2:
        return f"{number[:3]} {number[3:7]} {number[7:]}"
    if style == 3:
        return f"+86-{number}"
    return number


def landline():
    return rng.choice([f"010-{rng.randint(2, 9)}{digits(7)}", f"021-{rng.randint(2, 9)}{digits(7)}",
                       f"0755-{rng.randint(2, 9)}{digits(7)}", f"(020){rng.randint(2, 9)}{digits(7)}",
                       f"0571-{rng.randint(2, 9)}{digits(6)}"])


def service_number():
    return rng.choice([f"400-{digits(3)}-{digits(4)}", f"800{digits(7)}", f"400 {digits(3)} {digits(4)}"])


PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
PLATE = "ABCDEFGHJKLMNPQRSTUVWXYZ"


def plate():
    p, l = rng.choice(PROVINCES), rng.choice(PLATE)
    kind = rng.randint(0, 2)
    if kind == 0:
        return p + l + "".join(rng.choice(PLATE + "0123456789") for _ in range(2)) + digits(3)
    if kind == 1:
        return p + l + rng.choice("DF") + digits(5)
    return p + l + digits(5)


def ssn():
    return f"{rng.randint(100, 665)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}"


def email():
    user = rng.choice(["zhang.wei", "li_na", "wang.fang88", "j.smith", "alice.b", "chen-jie", "dr.liu"])
    return f"{user}@{rng.choice(['example.com', 'hospital.org.cn', 'bank-corp.cn', 'mail.example.net'])}"


def ipv4():
    return f"{rng.choice([10, 172, 192, 203, 61])}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def ipv6():
    return rng.choice([f"2001:db8:{rng.randint(1, 0xffff):x}::{rng.randint(1, 0xffff):x}",
                       f"fe80::{rng.randint(1, 0xffff):x}:{rng.randint(1, 0xffff):x}:{rng.randint(1, 0xfff):x}:{rng.randint(1, 0xffff):x}",
                       f"2408:8207:{rng.randint(1, 0xffff):x}:{rng.randint(1, 0xffff):x}:{rng.randint(1, 0xffff):x}:{rng.randint(1, 0xffff):x}:{rng.randint(1, 0xffff):x}:{rng.randint(1, 0xffff):x}"])


def mac():
    sep = rng.choice(":-")
    return sep.join(f"{rng.randint(0, 255):02X}" for _ in range(6))


SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华"


def cn_name():
    return rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice([1, 2])))


def en_name():
    return rng.choice(["John", "Alice", "Robert", "Mary", "David", "Linda"]) + " " + \
        rng.choice(["Smith", "Brown", "Johnson", "Miller", "Davis", "Wilson"])


def address():
    return rng.choice([
        f"北京市海淀区中关村大街{rng.randint(1, 200)}号",
        f"上海市浦东新区世纪大道{rng.randint(1, 999)}号",
        f"广东省深圳市南山区科技园路{rng.randint(1, 50)}号{rng.randint(1, 20)}栋",
        f"浙江省杭州市西湖区文三路{rng.randint(1, 500)}号{rng.randint(101, 2205)}室",
        f"四川省成都市武侯区人民南路{rng.randint(1, 300)}号",
        f"湖北省武汉市洪山区珞喻路{rng.randint(1, 1000)}号",
    ])


# ------------------------------------------------------------------ templates

POSITIVE = {
    "cn_resident_id": (resident_id, ["患者身份证号{v}，请核对。", "ID number: {v}", "身份证：{v}已登记", "客户{v}的资料",
                                      "Please verify ID {v} before admission.", "证件号码{v}。"]),
    "hmt_residence_permit": (lambda: resident_id(rng.choice(["810000", "820000", "830000"])),
                             ["港澳台居民居住证号码{v}", "居住证{v}有效", "Residence permit {v} issued"]),
    "uscc": (uscc, ["统一社会信用代码：{v}", "企业信用代码{v}已备案", "Company USCC {v} registered"]),
    "bank_card": (lambda: bank_card(rng.random() < 0.5), ["银行卡号{v}", "卡号：{v}，请扣款", "card number {v}",
                                                           "请转账到{v}账户", "Account card: {v}."]),
    "hk_id": (hk_id, ["香港身份证{v}", "HKID {v} on file", "证件 {v} 已核验"]),
    "taiwan_id": (taiwan_id, ["台湾身份证字号{v}", "National ID {v} verified", "身分證{v}"]),
    "macau_id": (lambda: f"{rng.choice('157')}{digits(6)}({rng.randint(0, 9)})", ["澳门身份证{v}", "BIR {v} on file"]),
    "cn_mobile": (mobile, ["手机{v}", "请拨打{v}联系我", "Call me at {v} tomorrow.", "联系电话：{v}。", "tel {v}"]),
    "cn_landline": (landline, ["办公电话{v}", "座机：{v}", "Office: {v}"]),
    "cn_service_number": (service_number, ["客服热线{v}", "Hotline {v} (24h)", "请致电{v}"]),
    "cn_passport": (lambda: rng.choice(["E", "G"]) + digits(8), ["护照号码{v}", "passport no. {v}", "护照：{v}"]),
    "hk_macau_permit": (lambda: "C" + digits(8), ["往来港澳通行证{v}", "通行证号码：{v}", "HK/Macau permit {v}"]),
    "home_return_permit": (lambda: rng.choice("HM") + digits(8), ["回乡证{v}", "回乡证号码：{v}", "home return permit {v}"]),
    "taiwan_compatriot_permit": (lambda: digits(8), ["台胞证{v}", "台胞证号码：{v}", "compatriot permit {v}"]),
    "military_officer_id": (lambda: f"{rng.choice('军海空')}字第{digits(7)}号", ["军官证{v}", "证件：{v}"]),
    "license_plate": (plate, ["车牌{v}", "车辆{v}违停", "plate {v} parked outside", "车牌号：{v}。"]),
    "us_ssn": (ssn, ["SSN {v}", "Social Security number: {v}.", "社会安全号{v}"]),
    "email": (email, ["邮箱{v}", "email me at {v}", "联系邮箱：{v}。"]),
    "ipv4": (ipv4, ["登录IP {v}", "from {v} at night", "服务器地址{v}。"]),
    "ipv6": (ipv6, ["IPv6地址{v}", "client {v} connected"]),
    "mac_address": (mac, ["设备MAC {v}", "MAC address {v} blocked"]),
    "person_name": (lambda: None, []),  # below: names need their own templates
    "address": (address, ["住址：{v}", "寄往{v}", "家住{v}，", "Address: {v}"]),
}
NAME_TEMPLATES = [("患者{v}，男，45岁。", cn_name), ("{v}先生来电", cn_name), ("联系人：{v}，", cn_name),
                  ("{v}女士已出院", cn_name), ("Mr. {v} called.", en_name), ("Patient: {v}", en_name), ("Dr. {v} signed", en_name)]

NEGATIVES = [
    lambda: f"订单号{digits(18)}已发货",
    lambda: f"Order #{digits(16)} shipped on 2026-11-{rng.randint(10, 28)}",
    lambda: f"时间戳{rng.randint(1700000000, 1800000000)}{digits(3)}",
    lambda: f"交易时间 2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}",
    lambda: f"金额：¥{rng.randint(1, 99)},{digits(3)}.{digits(2)}元",
    lambda: f"Total: ${rng.randint(1000, 99999)}.{digits(2)} due",
    lambda: f"快递单号SF{digits(12)}",
    lambda: f"身份证号{broken_resident_id()}（校验位错误）",
    lambda: f"流水号{digits(20)}",
    lambda: f"版本 {rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 99)} 已发布",
    lambda: f"温度{rng.randint(35, 41)}.{rng.randint(0, 9)}度，血压{rng.randint(90, 160)}/{rng.randint(60, 100)}",
    lambda: f"会议室{rng.randint(100, 999)}，座位{rng.randint(1, 40)}号",
    lambda: f"批号{rng.choice('ABZ')}{digits(9)}",
    lambda: f"The ratio was {rng.randint(1, 9)}:{rng.randint(1, 9)} over {rng.randint(100, 999)} patients.",
    lambda: f"工号{digits(6)}，部门编号{digits(4)}",
    lambda: f"发票代码{digits(12)}",
    lambda: f"Reference {rng.choice('ABCDEFGH')}{digits(7)} closed",
    lambda: "今天天气晴，气温适宜，适合户外运动。",
    lambda: "The model answered in 3.2 seconds with 128 tokens.",
    lambda: f"库存{rng.randint(1000, 99999)}件，单价{rng.randint(1, 999)}.{digits(2)}",
]


def sample(text, entities):
    return {"text": text, "entities": [{"class": c, "value": v} for c, v in entities]}


def build():
    out = []
    for cls, (make, templates) in POSITIVE.items():
        if cls == "person_name":
            continue
        n = 18 if cls in ("cn_resident_id", "bank_card", "uscc", "hk_id", "taiwan_id", "hmt_residence_permit") else 14
        for i in range(n):
            value = make()
            out.append(sample(templates[i % len(templates)].format(v=value), [(cls, value)]))
    for i in range(21):
        template, make = NAME_TEMPLATES[i % len(NAME_TEMPLATES)]
        value = make()
        out.append(sample(template.format(v=value), [("person_name", value)]))
    for i in range(110):
        out.append(sample(NEGATIVES[i % len(NEGATIVES)](), []))
    for _ in range(40):  # mixed: several entities, Chinese and English, with look-alikes between them
        name, rid, phone, card = cn_name(), resident_id(), mobile(), bank_card()
        mail, order = email(), digits(18)
        text = rng.choice([
            f"患者{name}，身份证号{rid}，手机{phone}，订单号{order}。",
            f"Customer {mail} paid with card {card}; order {order} at 2026-11-25 09:30:00.",
            f"联系人：{name}，电话{phone}，邮箱{mail}，金额¥{rng.randint(10, 999)}.{digits(2)}。",
        ])
        entities = [(c, v) for c, v in (("person_name", name), ("cn_resident_id", rid), ("cn_mobile", phone),
                                        ("bank_card", card), ("email", mail)) if v in text]
        out.append(sample(text, entities))
    return out


if __name__ == "__main__":
    corpus = build()
    with open(HERE / "corpus.jsonl", "w") as f:
        for row in corpus:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{len(corpus)} samples")
