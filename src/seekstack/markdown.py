"""Generated blocks inside hand-written docs: ``<!-- NAME:start -->`` … ``<!-- NAME:end -->``."""

from __future__ import annotations

from pathlib import Path


def block(text: str, name: str) -> str:
    return text.split(f"<!-- {name}:start -->\n")[1].split(f"<!-- {name}:end -->")[0]


def replace_block(path: str | Path, name: str, content: str) -> None:
    path = Path(path)
    head, rest = path.read_text().split(f"<!-- {name}:start -->\n")
    _, tail = rest.split(f"<!-- {name}:end -->")
    path.write_text(f"{head}<!-- {name}:start -->\n{content}<!-- {name}:end -->{tail}")
