"""Format safety: what may enter the store, checked before a file is used.

- Pickle-based weights (``.bin``, ``.pt``, ``.pth``, ``.pkl``, ``.ckpt``) can run code when
  loaded; they are refused unless ``allow_pickle`` is set.
- GGUF files must have a readable header (magic, version, tensor table inside the file).
- safetensors files must have a sane header (size cap, a JSON object, byte ranges inside).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from ..errors import InvalidRequestError

PICKLE = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


class Checked(NamedTuple):
    format: str                # gguf | safetensors | pickle | other
    license: str | None = None  # what a GGUF declares in general.license


def refuse_pickle(relpath: str, allow_pickle: bool = False) -> bool:
    """True for a pickle file that is allowed; raise for one that is not; False otherwise."""
    if not relpath.lower().endswith(PICKLE):
        return False
    if not allow_pickle:
        raise InvalidRequestError(f"{relpath} is a pickle file: loading it can run arbitrary code",
                                  fix="use the safetensors or GGUF release of the model, or pass --allow-pickle "
                                      "if you trust its source")
    return True


def check_file(path: Path, relpath: str, *, allow_pickle: bool = False) -> Checked:
    """Validate one file (its header read once); return its format and declared license."""
    lowered = relpath.lower()
    if refuse_pickle(relpath, allow_pickle):
        return Checked("pickle")
    if lowered.endswith(".gguf"):
        from ..planner.gguf import read_header

        value = read_header(path).metadata.get("general.license")
        return Checked("gguf", str(value) if value else None)
    if lowered.endswith(".safetensors"):
        from ..planner.safetensors import tensor_bytes

        tensor_bytes(path)
        return Checked("safetensors")
    return Checked("other")


def model_format(formats: list[str]) -> str:
    for kind in ("gguf", "safetensors", "pickle"):
        if kind in formats:
            return kind
    return "other"

