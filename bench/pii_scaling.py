"""PII detection grows linearly with the prompt, in the request path.

Every prompt is scanned on its way to the model (`mask` and `tokenize`) or after the answer
(`detect`). Three texts, each at 2, 16, 64 and 256 KB: a Chinese report with figures and its
hotline on every page (many entities, one value recurring), English prose with no PII, and a
log of UUIDs beside phone numbers (vetoed hashes). The per-KB time at 256 KB over the per-KB
time at 2 KB says how the work grows: 1 is linear.

Target: at most 2 for each text. (Before the selection used sorted spans, each overlap check
walked every span chosen so far: the report took 5.9 s at 64 KB, a ratio in the thousands.)

Then the event loop's side: a ticker task wakes every millisecond while a 256 KB report is
masked as a request's prompt is (`redact_prompt`), first on the loop (`Redactor.inbound`),
then as the gateway does it (from `APART_CHARS` on, the scan runs in a worker process). The
largest gap between ticks is how long every stream in flight would stop. Target: apart, at
most a fifth of the gap on the loop (the worker process is started before it is timed).

Usage: python bench/pii_scaling.py
"""

from __future__ import annotations

import asyncio
import time

from seekstack.governance.pii import redact_prompt
from seekstack.governance.pii.masker import Redactor, detect

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

    report = TEXTS["report (zh, figures, hotline)"]
    big = report * (256 * 1024 // len(report.encode()))
    asyncio.run(redact_prompt({"prompt": big}, Redactor("mask")))  # the worker process started and warm
    on_loop = asyncio.run(largest_gap(lambda: Redactor("mask").inbound(big)))
    apart = asyncio.run(largest_gap(lambda: redact_prompt({"prompt": big}, Redactor("mask"))))
    print(f"\nlargest event-loop gap while a 256 KB prompt is masked: on the loop {on_loop:.1f} ms, "
          f"apart {apart:.1f} ms")
    print(f"{'PASS' if apart <= on_loop / 5 else 'MISS'}  apart / on the loop: {apart / on_loop:.3f} (target <= 0.2)")


async def largest_gap(work) -> float:
    """The longest the loop went without running a 1 ms ticker while ``work`` ran (ms)."""
    gaps, done = [], asyncio.Event()

    async def ticker():
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    result = work()
    if asyncio.iscoroutine(result):
        await result
    await asyncio.sleep(0.01)
    done.set()
    await ticking
    return max(gaps) * 1000


if __name__ == "__main__":
    main()
