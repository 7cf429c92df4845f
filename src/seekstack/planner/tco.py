"""Total cost of ownership: on-premises (hardware + power + operations) against cloud rental.

    cloud     = GPUs × 8,760 h × years × utilisation × cloud price per GPU-hour
    hardware  = GPUs × GPU price × (1 + server share)        # chassis, CPUs, RAM, network
                (or --capex: the whole server's purchase price, as quoted)
    power     = GPUs × GPU watts ÷ 1000 × 8,760 h × years × utilisation × PUE × power price
    operations= hardware × operations rate × years             # support, spares, staff share
                (--opex: power and upkeep over the whole period, as quoted, replaces both)
    on-prem   = hardware + power + operations
    break-even= hardware ÷ (cloud per month − (power + operations) per month)

Inputs come from the hardware catalog (price, watts, cloud price) and every one can be
overridden; the result carries the formula and the inputs it used.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..errors import InvalidRequestError
from .hardware import Hardware

HOURS_PER_YEAR = 8760


@dataclass
class TCOInputs:
    years: float = 3.0
    utilization: float = 1.0          # share of hours the GPUs work (and a cloud bills)
    cloud_usd_per_gpu_hour: float | None = None
    gpu_price_usd: float | None = None
    power_usd_per_kwh: float = 0.10
    pue: float = 1.4                  # data-centre power usage effectiveness (cooling etc.)
    server_share: float = 0.25        # host hardware as a share of the GPUs' price
    operations_rate: float = 0.10     # yearly operations as a share of hardware
    capex_usd: float | None = None    # the whole server's purchase price: replaces the computed hardware
    opex_usd: float | None = None     # power and upkeep over the whole period: replaces power + operations


@dataclass
class TCO:
    gpus: int
    years: float
    inputs: dict[str, Any]
    cloud_usd: float
    hardware_usd: float
    power_usd: float
    operations_usd: float
    on_prem_usd: float
    break_even_months: float | None
    formula: list[str]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def tco(hw: Hardware, inputs: TCOInputs) -> TCO:
    if not hw.is_gpu:
        raise InvalidRequestError("TCO compares GPU servers with cloud GPUs", fix="pass --hardware NxGPU, e.g. 2xA100-80G")
    if not 0 < inputs.utilization <= 1 or inputs.years <= 0:
        raise InvalidRequestError("utilisation must be in (0, 1] and years positive", fix="e.g. --utilization 0.6 --years 3")
    device = hw.device
    cloud_price = inputs.cloud_usd_per_gpu_hour if inputs.cloud_usd_per_gpu_hour is not None else device.cloud_usd_per_hour
    gpu_price = inputs.gpu_price_usd if inputs.gpu_price_usd is not None else device.price_usd
    if cloud_price is None:
        raise InvalidRequestError(f"the catalog has no cloud price for {device.name}", fix="pass --cloud-price USD per GPU-hour")
    n, hours = hw.gpus, HOURS_PER_YEAR * inputs.years
    cloud = n * hours * inputs.utilization * cloud_price
    hardware = inputs.capex_usd if inputs.capex_usd is not None else n * gpu_price * (1 + inputs.server_share)
    power = n * device.power_w / 1000 * hours * inputs.utilization * inputs.pue * inputs.power_usd_per_kwh
    operations = hardware * inputs.operations_rate * inputs.years
    if inputs.opex_usd is not None:
        power, operations = 0.0, inputs.opex_usd
    months = inputs.years * 12
    saving_per_month = (cloud - power - operations) / months
    used = {**asdict(inputs), "cloud_usd_per_gpu_hour": cloud_price, "gpu_price_usd": gpu_price, "gpu_watts": device.power_w}
    formula = [
        f"cloud = {n} GPUs × {HOURS_PER_YEAR} h × {inputs.years:g} y × {inputs.utilization:g} × {cloud_price:g} USD/GPU-h = {cloud:,.0f} USD",
        f"hardware = --capex {hardware:,.0f} USD" if inputs.capex_usd is not None else
        f"hardware = {n} × {gpu_price:,.0f} USD × (1 + {inputs.server_share:g} server share) = {hardware:,.0f} USD",
        *([f"power and operations = --opex {operations:,.0f} USD over {inputs.years:g} y"] if inputs.opex_usd is not None else [
            f"power = {n} × {device.power_w:g} W × {HOURS_PER_YEAR} h × {inputs.years:g} y × {inputs.utilization:g} × PUE "
            f"{inputs.pue:g} × {inputs.power_usd_per_kwh:g} USD/kWh = {power:,.0f} USD",
            f"operations = {hardware:,.0f} × {inputs.operations_rate:g}/y × {inputs.years:g} y = {operations:,.0f} USD"]),
        f"on-prem = hardware + power + operations = {hardware + power + operations:,.0f} USD",
    ]
    return TCO(n, inputs.years, used, cloud, hardware, power, operations, hardware + power + operations,
               hardware / saving_per_month if saving_per_month > 0 else None, formula)
