"""Precision and recall per class on a labelled corpus (JSONL: {"text", "entities": [{"class", "value"}]}).

Used by the test suite on tests/data/pii/corpus.jsonl, and by operators on their own data."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from .masker import detect
from .recognizers import CHECKSUM_CLASSES, CLASSES


@dataclass
class Score:
    samples: int
    tp: Counter
    fp: Counter
    fn: Counter

    def precision(self, cls: str | None = None) -> float:
        tp = self.tp[cls] if cls else sum(self.tp.values())
        fp = self.fp[cls] if cls else sum(self.fp.values())
        return tp / (tp + fp) if tp + fp else 1.0

    def recall(self, cls: str | None = None) -> float:
        tp = self.tp[cls] if cls else sum(self.tp.values())
        fn = self.fn[cls] if cls else sum(self.fn.values())
        return tp / (tp + fn) if tp + fn else 1.0

    def table(self, present_only: bool = False) -> str:
        """Per class, and in all; ``present_only``: the classes the corpus has samples or false alarms of."""
        lines = ["| class | checksum | samples | precision | recall |", "|---|---|---|---|---|"]
        for cls in CLASSES:
            if present_only and not (self.tp[cls] + self.fn[cls] + self.fp[cls]):
                continue
            lines.append(f"| `{cls}` | {'yes' if cls in CHECKSUM_CLASSES else ''} | {self.tp[cls] + self.fn[cls]} | "
                         f"{self.precision(cls):.3f} | {self.recall(cls):.3f} |")
        lines.append(f"| **all** | | {sum(self.tp.values()) + sum(self.fn.values())} | "
                     f"**{self.precision():.3f}** | **{self.recall():.3f}** |")
        return "\n".join(lines) + "\n"


def score(path: Path) -> Score:
    tp, fp, fn, n = Counter(), Counter(), Counter(), 0
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        sample = json.loads(line)
        n += 1
        gold = {(e["class"], e["value"]) for e in sample["entities"]}
        found = {(e.cls, e.value) for e in detect(sample["text"])}
        for cls, _ in found & gold:
            tp[cls] += 1
        for cls, _ in found - gold:
            fp[cls] += 1
        for cls, _ in gold - found:
            fn[cls] += 1
    return Score(n, tp, fp, fn)


def write_table(corpus: str, doc: str, block: str = "pii-table") -> None:
    """Regenerate a measured table block of a markdown file (``make docs``)."""
    from ...markdown import replace_block

    replace_block(doc, block, score(Path(corpus)).table(present_only=block != "pii-table"))
