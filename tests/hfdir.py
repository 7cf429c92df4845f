"""A tiny Hugging Face model folder (config.json + one safetensors file): enough for the planner and
for a simulated vLLM / SGLang, which read no weights. Made here, never downloaded."""

from __future__ import annotations

import json
import struct
from pathlib import Path


def make_hf_dir(folder: Path, *, layers: int = 2, hidden: int = 64, heads: int = 4, context: int = 4096) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({
        "model_type": "llama", "num_hidden_layers": layers, "hidden_size": hidden, "num_attention_heads": heads,
        "num_key_value_heads": heads, "vocab_size": 1000, "max_position_embeddings": context}))
    data = bytes(hidden * hidden * 2)
    header = json.dumps({"w": {"dtype": "BF16", "shape": [hidden, hidden], "data_offsets": [0, len(data)]}}).encode()
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + data)
    return folder
