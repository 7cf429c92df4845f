"""Model families as data: what a family of models needs by default.

A model entry whose name or file matches a family's glob inherits its reasoning
format and sampling defaults unless ``seekstack.yaml`` says otherwise. New
families are a new row here, never an ``if name == ...`` elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatch


@dataclass(frozen=True)
class Family:
    name: str
    globs: tuple[str, ...]
    reasoning: str = "none"
    sampling: dict = field(default_factory=dict)


# DeepSeek's published recommendation for R1 and its distills: temperature 0.6, top_p 0.95.
FAMILIES: tuple[Family, ...] = (
    Family(
        name="deepseek-r1",
        globs=("*deepseek-r1*", "*deepseek_r1*", "*r1-distill*", "*r1_distill*"),
        reasoning="deepseek_r1",
        sampling={"temperature": 0.6, "top_p": 0.95},
    ),
    Family(name="deepseek-v3", globs=("*deepseek-v3*", "*deepseek_v3*")),
    Family(name="deepseek-v2", globs=("*deepseek-v2*", "*deepseek_v2*")),
)

GENERIC = Family(name="generic", globs=())


def family_for(*names: str | None) -> Family:
    lowered = [n.lower() for n in names if n]
    for family in FAMILIES:
        if any(fnmatch(n, g) for n in lowered for g in family.globs):
            return family
    return GENERIC
