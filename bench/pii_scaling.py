"""PII detection grows linearly with the prompt, in the request path.

Every prompt is scanned on its way to the model (`mask` and `tokenize`) or after the answer
(`detect`). Three texts, each at 2, 16, 64 and 256 KB: a Chinese report with figures and its
hotline on every page (many entities, one value recurring), English prose with no PII, and a
log of UUIDs beside phone numbers (vetoed hashes). The per-KB time at 256 KB over the per-KB
time at 2 KB says how the work grows: 1 is linear.

Target: at most 2 for each text. (Before the selection used sorted spans, each overlap check
walked every span chosen so far: the report took 5.9 s at 64 KB, a ratio in the thousands.)

Usage: python bench/pii_scaling.py
"""

from __future__ import annotations

import time

from seekstack.governance.pii.masker import detect

TEXTS = {
    "report (zh, figures, hotline)": "根据2023年第三季度报告，公司营业收入为12345.67万元，同比增长15.3%。客户服务热线：400-123-4567。",
    "prose (en, no PII)": "The committee reviewed the quarterly results and agreed to revisit the plan next month. ",
    "log (UUIDs, phones)": "request 3f2b8c1e-9a4d-4e7b-8c2f-1a2b3c4d5e6f from 13812345678 ok; ",
}
SIZES_KB = (2, 16, 64, 256)


def per_kb_ms(text: str) -> float:
    runs, start = 0, time.perf_counter()
    while runs < 3 or time.perf_counter() - start < 0.5:
        detect(text)
        runs += 1
    return (time.perf_counter() - start) / runs * 1000 / (len(text.encode()) / 1024)


def main() -> None:
    print(f"{'text':32} " + "  ".join(f"{kb:>5} KB" for kb in SIZES_KB) + "   (ms per KB)   ratio")
    worst = 0.0
    for name, unit in TEXTS.items():
        row = [per_kb_ms(unit * max(1, kb * 1024 // len(unit.encode()))) for kb in SIZES_KB]
        ratio = row[-1] / row[0]
        worst = max(worst, ratio)
        print(f"{name:32} " + "  ".join(f"{v:8.3f}" for v in row) + f"   {ratio:13.2f}")
    print(f"{'PASS' if worst <= 2 else 'MISS'}  per-KB time at 256 KB over 2 KB: worst {worst:.2f} (target <= 2)")


if __name__ == "__main__":
    main()
