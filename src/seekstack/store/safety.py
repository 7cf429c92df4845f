"""Format safety: what may enter the store, checked before a file is used.

- Pickle-based weights (``.bin``, ``.pt``, ``.pth``, ``.pkl``, ``.ckpt``) can run code when
  loaded; they are refused unless ``allow_pickle`` is set.
- GGUF files must have a readable header (magic, version, tensor table inside the file).
- safetensors files must have a sane header (size cap, a JSON object, byte ranges inside).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InvalidRequestError

PICKLE = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def check_file(path: Path, relpath: str, *, allow_pickle: bool = False) -> str:
    """Validate one file; return its format (gguf, safetensors, pickle or other)."""
    lowered = relpath.lower()
    if lowered.endswith(PICKLE):
        if not allow_pickle:
            raise InvalidRequestError(f"{relpath} is a pickle file: loading it can run arbitrary code",
                                      fix="use the safetensors or GGUF release of the model, or pass --allow-pickle "
                                          "if you trust its source")
        return "pickle"
    if lowered.endswith(".gguf"):
        from ..planner.gguf import read_header

        read_header(path)
        return "gguf"
    if lowered.endswith(".safetensors"):
        from ..planner.safetensors import tensor_bytes

        tensor_bytes(path)
        return "safetensors"
    return "other"


def model_format(formats: list[str]) -> str:
    for kind in ("gguf", "safetensors", "pickle"):
        if kind in formats:
            return kind
    return "other"


def gguf_license(path: Path) -> str | None:
    """The license a GGUF file declares in its metadata (general.license), if any."""
    from ..planner.gguf import read_header

    value = read_header(path).metadata.get("general.license")
    return str(value) if value else None
