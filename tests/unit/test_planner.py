"""The planner against published figures (../shared/reference/deepseek-facts.md), within ±5 %."""

from __future__ import annotations

import struct

import pytest

from fakes import FakeNVML
from seekstack.embedded import embedded_model_path
from seekstack.errors import InvalidRequestError
from seekstack.planner import default_quant, make_plan, parse_hardware, quantization_table, resolve_model
from seekstack.planner.catalog import GB, catalog_model, spec_from_gguf
from seekstack.planner.gguf import read_header
from seekstack.planner.hardware import detect, match_gpu
from seekstack.planner.plan import kv_bytes_per_token, weight_bytes

CPU_BOX = {"ram_bytes": 64 * 2**30, "gpus": [], "cpu_model": "test", "cores": 8}


def near(value: float, published: float, tolerance: float = 0.05) -> bool:
    return abs(value - published) <= tolerance * published


@pytest.mark.parametrize("model,quant,published_gb", [
    ("deepseek-r1", "q4_k_m", 404), ("deepseek-r1", "iq1_s", 131), ("deepseek-r1", "fp8", 700),
    ("deepseek-r1-distill-qwen-32b", "q4_k_m", 19.9), ("deepseek-r1-distill-qwen-32b", "q8_0", 34.8),
    ("deepseek-r1-distill-qwen-7b", "q4_k_m", 4.7), ("deepseek-r1-distill-llama-70b", "q4_k_m", 43),
])
def test_weight_sizes_match_published_figures(model, quant, published_gb):
    assert near(weight_bytes(catalog_model(model), quant)[0] / GB, published_gb)


@pytest.mark.parametrize("model,quant,published_gb", [
    ("deepseek-r1-distill-qwen-32b", "q4_k_m", 19.9), ("deepseek-r1-distill-llama-8b", "q4_k_m", 4.9),
    ("deepseek-r1-distill-qwen-14b", "q4_k_m", 9.0), ("deepseek-r1", "bf16", 1340),
])
def test_the_bits_per_weight_formula_alone_lands_within_5_percent(model, quant, published_gb):
    """params × bpw ÷ 8, without the catalog's published size."""
    spec = catalog_model(model)
    from dataclasses import replace

    bare = replace(spec, sizes_gb={})
    assert near(weight_bytes(bare, quant)[0] / GB, published_gb)


@pytest.mark.parametrize("model,kv_dtype,per_token", [
    ("deepseek-v3", "bf16", 70_272), ("deepseek-r1", "fp8", 35_136), ("deepseek-v2-lite", "bf16", 31_104),
    ("deepseek-r1-distill-qwen-1.5b", "bf16", 28 * 1024), ("deepseek-r1-distill-qwen-7b", "bf16", 56 * 1024),
    ("deepseek-r1-distill-llama-8b", "bf16", 128 * 1024), ("deepseek-r1-distill-qwen-14b", "bf16", 192 * 1024),
    ("deepseek-r1-distill-qwen-32b", "bf16", 256 * 1024), ("deepseek-r1-distill-llama-70b", "bf16", 320 * 1024),
])
def test_kv_cache_per_token(model, kv_dtype, per_token):
    assert kv_bytes_per_token(catalog_model(model), kv_dtype) == per_token  # exact: these are formulas


def test_mla_is_not_the_full_kv_formula():
    """Caching full K (nope 128 + rope 64) and V (128) per head: ≈4.77 MiB/token for V3, ≈71× the latent cache."""
    v3 = catalog_model("deepseek-v3")
    full = v3.layers * v3.heads * ((v3.head_dim + v3.qk_rope_head_dim) + v3.head_dim) * 2
    assert near(full / 2**20, 4.77, 0.01)
    assert 70 < full / kv_bytes_per_token(v3) < 72


@pytest.mark.parametrize("hardware,fits", [("8xH200", True), ("8xH100", False), ("2x8xH100", True)])
def test_r1_fp8_fit_verdicts(hardware, fits):
    plan = make_plan(catalog_model("deepseek-r1"), parse_hardware(hardware, CPU_BOX), quant_name="fp8", context=8192)
    assert plan.fits is fits
    if fits:
        assert plan.tensor_parallel == (8 if hardware == "8xH200" else 16) and plan.replicas == 1
    else:
        assert "16 × H100" in plan.smallest_fix


def test_mla_cache_is_replicated_across_tensor_parallel_ranks_and_gqa_is_split():
    hw = parse_hardware("8xH200")
    r1 = make_plan(catalog_model("deepseek-r1"), hw, quant_name="fp8", context=32768, concurrency=4)
    assert r1.per_gpu_bytes == pytest.approx(r1.weights_bytes / 8 + r1.kv_bytes + r1.overhead_bytes)
    big = make_plan(catalog_model("deepseek-r1-distill-llama-70b"), parse_hardware("4xH100"), quant_name="bf16",
                    context=32768, concurrency=4)
    assert big.tensor_parallel == 4
    assert big.per_gpu_bytes == pytest.approx(big.weights_bytes / 4 + big.kv_bytes / 4 + big.overhead_bytes)


def test_replicas_count_every_gpu_and_throughput_uses_active_parameters():
    hw = parse_hardware("8xH100")
    small = make_plan(catalog_model("deepseek-r1-distill-qwen-7b"), hw, quant_name="bf16", context=8192, concurrency=8)
    assert small.tensor_parallel == 1 and small.replicas == 8
    assert small.decode_tps_aggregate == pytest.approx(small.replicas * min(
        8 / ((small.weights_bytes + 8 * small.kv_per_token_bytes * 4096) / 3350e9), 989e12 / (2 * 7.62e9)))
    r1 = make_plan(catalog_model("deepseek-r1"), parse_hardware("8xH200"), quant_name="fp8", context=8192)
    # MoE: 37B of 671B are read per token, so R1 decodes faster than a dense 70B at the same bandwidth
    dense = make_plan(catalog_model("deepseek-r1-distill-llama-70b"), parse_hardware("8xH200"), quant_name="fp8", context=8192)
    assert r1.decode_tps_single / 8 > dense.decode_tps_single / dense.tensor_parallel


def test_a_plan_that_does_not_fit_names_the_smallest_fix():
    plan = make_plan(catalog_model("deepseek-r1-distill-qwen-32b"), parse_hardware("cpu", CPU_BOX), quant_name="bf16",
                     context=8192)
    assert not plan.fits and plan.smallest_fix.startswith("quantization")
    long = make_plan(catalog_model("deepseek-r1-distill-qwen-7b"), parse_hardware("cpu", {**CPU_BOX, "ram_bytes": 8 * 2**30}),
                     quant_name="q4_k_m", context=131072, concurrency=1)
    assert not long.fits and long.smallest_fix.startswith("context")


def test_quantization_table_has_the_published_quants():
    rows = {r["quantization"]: r for r in quantization_table(catalog_model("deepseek-r1"), parse_hardware("8xH200"),
                                                             context=8192, concurrency=1)}
    assert {"bf16", "fp8", "q8_0", "q4_k_m", "iq1_s"} <= set(rows)
    assert rows["fp8"]["fits"] and not rows["bf16"]["fits"] and rows["iq1_s"]["replicas"] > rows["fp8"]["replicas"]
    assert "iq1_s" not in {r["quantization"] for r in quantization_table(
        catalog_model("deepseek-r1-distill-qwen-7b"), parse_hardware("cpu", CPU_BOX), context=4096, concurrency=1)}


def test_the_embedded_gguf_is_read_from_its_header():
    spec = spec_from_gguf(embedded_model_path())
    assert (spec.layers, spec.hidden, spec.heads, spec.kv_heads, spec.head_dim, spec.vocab) == (30, 576, 9, 3, 64, 49152)
    assert spec.file_quant == "q4_1" and spec.file_bytes == read_header(embedded_model_path()).tensor_bytes
    assert embedded_model_path().stat().st_size - spec.file_bytes < 2_000_000  # header and vocabulary only
    assert kv_bytes_per_token(spec, "f16") == 2 * 30 * 3 * 64 * 2
    hw = parse_hardware("cpu", CPU_BOX)
    assert default_quant(spec, hw) == "q4_1"


@pytest.mark.parametrize("content,message", [
    (b"NOPE" + b"\0" * 20, "not a GGUF file"),
    (b"GGUF" + struct.pack("<IQQ", 3, 1, 1), "not a complete GGUF file"),
    (b"GGUF" + struct.pack("<I", 9), "version 9"),
])
def test_bad_gguf_files_get_a_clear_error(tmp_path, content, message):
    path = tmp_path / "bad.gguf"
    path.write_bytes(content)
    with pytest.raises(InvalidRequestError, match=message):
        resolve_model(str(path))


@pytest.mark.parametrize("text,label", [("8xH100", "8×H100"), ("2x8xH100", "2×8×H100"), ("2xA100-80G", "2×A100-80G"),
                                        ("H200", "1×H200"), ("4x4090", "4×RTX-4090")])
def test_hardware_specs(text, label):
    assert parse_hardware(text).label == label


def test_unknown_hardware_and_models_name_the_choices():
    with pytest.raises(InvalidRequestError, match="unknown GPU"):
        parse_hardware("8xV100")
    with pytest.raises(InvalidRequestError, match="not in the model catalog"):
        resolve_model("gpt-5")


def test_detection_says_no_gpu_here_and_reads_gpus_through_nvml():
    info = detect()
    assert info["gpus"] == [] and info["cores"] >= 1 and info["ram_bytes"] > 2**30
    assert not parse_hardware("auto", info).is_gpu

    class WithDriver(FakeNVML):
        def nvmlSystemGetDriverVersion(self):
            return "550.54.15"

        def nvmlSystemGetCudaDriverVersion(self):
            return 12040

        def nvmlDeviceGetNvLinkState(self, handle, link):
            if link >= 18:
                raise RuntimeError("NVML_ERROR_INVALID_ARGUMENT")
            return 1  # an SXM H100: 18 links up

    gpus = detect(WithDriver())["gpus"]
    assert [(g["name"], g["cuda"], g["driver"], g["nvlinks"]) for g in gpus] == [
        ("NVIDIA H100 80GB HBM3", "12.4", "550.54.15", 18)] * 2
    hw = parse_hardware("auto", {**CPU_BOX, "gpus": gpus})
    assert hw.label == "2×H100" and match_gpu("NVIDIA A100-SXM4-80GB", 80 * GB).name == "A100-80G"
    assert match_gpu("NVIDIA A100-SXM4-40GB", 40 * GB).name == "A100-40G"


def test_tco_terms_follow_the_formula():
    from seekstack.planner.tco import TCOInputs, tco

    cost = tco(parse_hardware("2xA100-80G"), TCOInputs(years=3, utilization=0.5, cloud_usd_per_gpu_hour=3.0,
                                                        gpu_price_usd=20_000, power_usd_per_kwh=0.15, pue=1.5,
                                                        server_share=0.25, operations_rate=0.08))
    hours = 8760 * 3
    assert cost.cloud_usd == pytest.approx(2 * hours * 0.5 * 3.0)                        # 78,840
    assert cost.hardware_usd == pytest.approx(2 * 20_000 * 1.25)                          # 50,000
    assert cost.power_usd == pytest.approx(2 * 0.4 * hours * 0.5 * 1.5 * 0.15)            # 2,365.2
    assert cost.operations_usd == pytest.approx(50_000 * 0.08 * 3)                        # 12,000
    assert cost.on_prem_usd == pytest.approx(50_000 + 2_365.2 + 12_000)
    assert cost.break_even_months == pytest.approx(50_000 / ((78_840 - 2_365.2 - 12_000) / 36))
    assert len(cost.formula) == 5 and "78,840 USD" in cost.formula[0]


def test_tco_uses_catalog_prices_and_says_when_the_cloud_stays_cheaper():
    from seekstack.planner.catalog import gpu
    from seekstack.planner.tco import TCOInputs, tco

    cost = tco(parse_hardware("8xH100"), TCOInputs())
    assert cost.inputs["cloud_usd_per_gpu_hour"] == gpu("H100").cloud_usd_per_hour
    assert cost.hardware_usd == pytest.approx(8 * gpu("H100").price_usd * 1.25)
    rarely = tco(parse_hardware("8xH100"), TCOInputs(utilization=0.02))
    assert rarely.break_even_months is None and rarely.cloud_usd < rarely.on_prem_usd
    with pytest.raises(InvalidRequestError, match="GPU servers"):
        tco(parse_hardware("cpu", CPU_BOX), TCOInputs())


def write_safetensors(path, tensors: dict[str, tuple[str, int]], header_override: bytes | None = None) -> int:
    """A real safetensors file: header JSON + zeroed data; returns its tensor bytes."""
    import json

    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, (dtype, nbytes) in tensors.items():
        header[name] = {"dtype": dtype, "shape": [nbytes // 2], "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = header_override if header_override is not None else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * offset)
    return offset


def test_a_hugging_face_folder_is_planned_from_config_and_safetensors_headers(tmp_path):
    import json

    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "qwen2", "num_hidden_layers": 28, "hidden_size": 3584, "num_attention_heads": 28,
        "num_key_value_heads": 4, "vocab_size": 152064, "max_position_embeddings": 131072}))
    n = write_safetensors(tmp_path / "model-00001-of-00002.safetensors", {"a": ("BF16", 4096), "b": ("BF16", 2048)})
    n += write_safetensors(tmp_path / "model-00002-of-00002.safetensors", {"c": ("BF16", 1024)})
    spec = resolve_model(str(tmp_path))
    assert spec.file_bytes == n == 7168 and spec.file_quant == "bf16" and spec.params_b == pytest.approx(7168 / 2 / 1e9)
    assert kv_bytes_per_token(spec) == 56 * 1024  # the same shape as R1-Distill-Qwen-7B
    plan = make_plan(spec, parse_hardware("cpu", CPU_BOX), quant_name=default_quant(spec, parse_hardware("cpu", CPU_BOX)),
                     context=4096)
    assert plan.weights_bytes == n and plan.weights_source == "the file's tensor table"


@pytest.mark.parametrize("header,message", [
    (b"[1, 2]", "not a JSON object"),
    (b"{not json", "not JSON"),
    (b'{"w": {"dtype": "BF16", "shape": [8], "data_offsets": [0, 999999]}}', "bad dtype or byte range"),
])
def test_bad_safetensors_headers_are_refused(tmp_path, header, message):
    import json

    (tmp_path / "config.json").write_text(json.dumps({"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4}))
    write_safetensors(tmp_path / "model.safetensors", {"w": ("BF16", 16)}, header_override=header)
    with pytest.raises(InvalidRequestError, match=message):
        resolve_model(str(tmp_path))


def test_an_absurd_safetensors_header_length_is_refused(tmp_path):
    import json

    (tmp_path / "config.json").write_text(json.dumps({"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4}))
    (tmp_path / "model.safetensors").write_bytes(struct.pack("<Q", 2**40) + b"{}")
    with pytest.raises(InvalidRequestError, match="header length"):
        resolve_model(str(tmp_path))


def test_amd_gpus_are_read_from_rocm_smi():
    from seekstack.planner.hardware import amd_gpus

    output = ("============================ ROCm System Management Interface ============================\n"
              "GPU[0]\t\t: Card series: \t\tAMD Instinct MI300X OAM\n"
              "GPU[0]\t\t: Card model: \t\t0x74a1\n"
              "GPU[1]\t\t: Card series: \t\tAMD Instinct MI300X OAM\n")
    assert amd_gpus(lambda: output) == ["AMD Instinct MI300X OAM"] * 2
    assert amd_gpus() == []  # no rocm-smi on this machine
