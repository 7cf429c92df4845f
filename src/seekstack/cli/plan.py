"""`seekstack plan MODEL`: memory, placement, throughput and a quantization comparison."""

from __future__ import annotations

import json
import shlex
from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..planner import default_quant, detect, make_plan, parse_hardware, quantization_table, resolve_model
from ..planner.catalog import GB
from ..planner.tco import TCOInputs, tco
from .common import ConfigOption, JsonOption, console

out = console()


def plan(
    model: str = typer.Argument(..., help="A catalog name (e.g. deepseek-r1), a model in the store (NAME[@VERSION]), a local .gguf file, or a Hugging Face model folder."),
    quant: Optional[str] = typer.Option(None, "--quant", "-q", help="bf16, fp8, int8, q8_0, q4_k_m, iq1_s, … (default: the file's, else native on GPU, q4_k_m on CPU)."),
    context: int = typer.Option(8192, "--context", min=128, help="Tokens per sequence (prompt + completion)."),
    concurrency: int = typer.Option(1, "--concurrency", min=1, help="Sequences served at once per replica."),
    hardware: str = typer.Option("auto", "--hardware", help="8xH100, 2x8xH100, 2xA100-80G, cpu, cpu:epyc-9654, or auto (detect)."),
    engine: str = typer.Option("auto", "--engine", help="llamacpp, vllm, sglang or auto."),
    kv_dtype: Optional[str] = typer.Option(None, "--kv-dtype", help="KV cache type: bf16/f16 (default), fp8, q8_0."),
    with_tco: bool = typer.Option(False, "--tco", help="Also compare owning the GPUs with renting them over --years."),
    years: float = typer.Option(3.0, "--years", min=0.1, help="TCO period in years."),
    cloud_price: Optional[float] = typer.Option(None, "--cloud-price", min=0, help="Cloud USD per GPU-hour (default: the catalog's)."),
    gpu_price: Optional[float] = typer.Option(None, "--gpu-price", min=0, help="Purchase USD per GPU (default: the catalog's)."),
    utilization: float = typer.Option(1.0, "--utilization", min=0.01, max=1.0, help="Share of hours the GPUs work (and a cloud bills)."),
    hours_per_year: Optional[float] = typer.Option(None, "--hours-per-year", min=1, max=8760, help="Hours a year the GPUs work (and a cloud bills), instead of --utilization."),
    capex: Optional[float] = typer.Option(None, "--capex", min=0, help="The whole server's purchase, USD (replaces the catalog's estimate)."),
    opex: Optional[float] = typer.Option(None, "--opex", min=0, help="Power and upkeep over the whole period, USD (replaces the computed ones)."),
    power_price: float = typer.Option(0.10, "--power-price", min=0, help="USD per kWh."),
    config: Optional[Path] = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Plan MODEL: memory (weights, KV cache, overhead), fit and replicas, speed bounds, quantizations."""
    spec = _store_model(model, config) or resolve_model(model)
    info = detect()
    hw = parse_hardware(hardware, info)
    q = (quant or default_quant(spec, hw)).lower()
    p = make_plan(spec, hw, quant_name=q, context=context, concurrency=concurrency, engine=engine, kv_dtype=kv_dtype)
    table = quantization_table(spec, hw, context=context, concurrency=concurrency)
    if hours_per_year is not None:
        utilization = hours_per_year / 8760
    cost = tco(hw, TCOInputs(years=years, utilization=utilization, cloud_usd_per_gpu_hour=cloud_price,
                             gpu_price_usd=gpu_price, power_usd_per_kwh=power_price, capex_usd=capex,
                             opex_usd=opex)) if with_tco else None
    launch = _launch(p, spec, model, hw.gpus_per_node)
    if as_json:
        print(json.dumps({"plan": p.to_json(), "launch": launch, "quantizations": table,
                          "tco": cost.to_json() if cost else None}, indent=1))
        return
    verdict = (f"[green]fits[/]: {p.tensor_parallel or 1} GPU(s) per replica, {p.replicas} replica(s)" if p.fits and hw.is_gpu
               else f"[green]fits[/]: {p.replicas} replica(s) in RAM" if p.fits
               else f"[red]does not fit[/] — smallest fix: {p.smallest_fix}")
    out.print(f"[bold]{spec.name}[/] {q} on {hw.label}, engine {p.engine}, context {context:,} × {concurrency}: {verdict}")
    memory = Table(title="Memory of one replica", show_header=True)
    memory.add_column("part")
    memory.add_column("GB", justify="right")
    memory.add_column("how")
    memory.add_row("weights", f"{p.weights_bytes / GB:,.2f}", p.weights_source)
    memory.add_row("KV cache", f"{p.kv_bytes / GB:,.2f}", f"{p.kv_per_token_bytes:,.0f} B/token ({p.kv_dtype}) × {context:,} × {concurrency}")
    memory.add_row("overhead", f"{p.overhead_bytes / GB:,.2f}", p.assumptions[2].removeprefix("overhead: "))
    memory.add_row("[bold]total[/]", f"[bold]{p.total_bytes / GB:,.2f}[/]",
                   f"per GPU {p.per_gpu_bytes / GB:,.2f} of {p.usable_per_device_bytes / GB:,.1f} usable" if p.per_gpu_bytes
                   else f"{p.usable_per_device_bytes / GB:,.1f} usable")
    out.print(memory)
    out.print(f"decode ≤ {p.decode_tps_single:,.0f} tok/s per sequence, ≤ {p.decode_tps_aggregate:,.0f} tok/s in all "
              f"at concurrency {concurrency}; prefill ≤ {p.prefill_tps:,.0f} tok/s")
    quants = Table(title="Quantizations")
    for column in ("quant", "engine", "size GB", "fits", "GPUs/replica", "replicas", "decode tok/s", "quality"):
        quants.add_column(column, justify="right" if column not in ("quant", "engine", "quality") else "left")
    for row in table:
        quants.add_row(row["quantization"], row["engine"], f"{row['size_gb']:,.1f}", "yes" if row["fits"] else "no",
                       str(row["gpus_per_replica"] or "—"), str(row["replicas"]), f"{row['decode_tps']:,.0f}", row["quality"])
    out.print(quants)
    for line in p.assumptions:
        out.print(f"[dim]· {line}[/]", soft_wrap=True)
    if launch is not None:
        out.print("[bold]launch[/] (what `seekstack serve` runs for one replica):", soft_wrap=True)
        out.print("  " + " ".join(shlex.quote(arg) for arg in launch), soft_wrap=True, markup=False)
    if cost is not None:
        verdict = (f"on-prem pays back in {cost.break_even_months:.1f} months" if cost.break_even_months is not None
                   else "the cloud stays cheaper at this utilisation")
        out.print(f"[bold]TCO over {years:g} years, {cost.gpus} × {hw.device.name}:[/] cloud {cost.cloud_usd:,.0f} USD, "
                  f"on-prem {cost.on_prem_usd:,.0f} USD — {verdict}")
        for line in cost.formula:
            out.print(f"  {line}", soft_wrap=True)


def _launch(p, spec, model: str, gpus_per_node: int) -> list[str] | None:
    """The engine's own command line for one replica of this plan (None: llama.cpp, which runs in-process)."""
    from ..engines.launch import spec_from_plan
    from ..engines.registry import engine_kind
    from ..families import family_for

    if not p.fits:
        return None
    kind = engine_kind(p.engine)
    if kind.launch is None:
        return None
    local = Path(model).expanduser()
    location, served = (str(local.resolve()), local.resolve().name) if local.exists() else (_hub_id(spec.name, p.quantization), spec.name)
    return kind.launch(spec_from_plan(p, location, served_name=served, native=spec.native,
                                      reasoning=family_for(spec.name, model).reasoning, gpus_per_node=gpus_per_node))


def _hub_id(name: str, quant: str) -> str:
    """The Hugging Face repository the catalog names for this quantization (the engine loads it by
    that id; air-gapped, `seekstack pull` it into the store first and serve `store: NAME`)."""
    from ..errors import SeekstackError
    from ..planner.catalog import catalog_entry

    try:
        source = catalog_entry(name)[1].get("sources", {}).get(quant.lower(), "")
    except SeekstackError:
        return name
    repo = source.removeprefix("hf:")
    return repo if source.startswith("hf:") and ":" not in repo else name


def _store_model(name: str, config: Optional[Path]):
    """A model in the store (NAME or NAME@VERSION), planned from its files; None when it is not one."""
    from ..config import load_settings
    from ..errors import SeekstackError
    from ..planner import resolve_model as from_path
    from ..store import open_store

    if "/" in name or name.endswith(".gguf"):
        return None
    try:
        store = open_store(load_settings(config))
        manifest = store.manifest(name)
    except SeekstackError:
        return None
    return replace(from_path(str(store.path_of(manifest))), name=f"{manifest.name}@{manifest.version}")
