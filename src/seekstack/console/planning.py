"""The planner page: the `seekstack plan` form, its memory breakdown and its TCO comparison as charts.

The same planner as the CLI (:mod:`seekstack.planner`); a bad field is shown beside the form,
in the person's language, with the planner's own explanation."""

from __future__ import annotations

from typing import Any

from ..errors import InvalidRequestError, SeekstackError
from ..planner import default_quant, make_plan, parse_hardware, quantization_table, resolve_model
from ..planner.catalog import GB, model_names, quant_names
from ..planner.tco import TCOInputs, tco
from . import charts
from .i18n import Translator

DEFAULTS = {"model": "deepseek-r1", "hardware": "8xH100", "quant": "", "context": "8192", "concurrency": "4",
            "years": "3", "utilization": "0.6"}


def plan_form(query: dict[str, str], tr: Translator) -> dict[str, Any]:
    form = {k: (query.get(k) or v).strip() for k, v in DEFAULTS.items()}
    result: dict[str, Any] = {"form": form, "models": model_names(), "quants": quant_names(), "error": None,
                              "plan": None, "memory": None, "quantizations": [], "cost": None, "cost_chart": None}
    if form["model"] not in result["models"]:
        result["error"] = tr.t("planner.unknown_model")
        return result
    try:
        spec = resolve_model(form["model"])
        hw = parse_hardware(form["hardware"])  # cpu and auto: this host's memory, as `seekstack plan` does
        quant = (form["quant"] or default_quant(spec, hw)).lower()
        context, concurrency = _whole(form["context"], "context"), _whole(form["concurrency"], "concurrency")
        plan = make_plan(spec, hw, quant_name=quant, context=context, concurrency=concurrency)
        result["plan"] = plan
        result["quantizations"] = quantization_table(spec, hw, context=context, concurrency=concurrency)
        usable = plan.usable_per_device_bytes * (hw.gpus if hw.is_gpu else 1) / GB  # the whole hardware's
        result["memory"] = charts.stack([(tr.t("planner.weights"), plan.weights_bytes / GB),
                                         (tr.t("planner.kv"), plan.kv_bytes / GB),
                                         (tr.t("planner.overhead"), plan.overhead_bytes / GB)],
                                        usable, tr, tr.t("planner.memory_chart"), "GB")
        if hw.is_gpu:
            cost = tco(hw, TCOInputs(years=_positive(form["years"], "years"),
                                     utilization=_positive(form["utilization"], "utilization")))
            result["cost"] = cost
            years = max(1, round(cost.years))
            yearly_on_prem = (cost.power_usd + cost.operations_usd) / cost.years
            result["cost_chart"] = charts.columns(
                [tr.t("planner.year", n=y) for y in range(1, years + 1)],
                [(tr.t("planner.cloud"), [cost.cloud_usd / cost.years * y for y in range(1, years + 1)]),
                 (tr.t("planner.on_prem"), [cost.hardware_usd + yearly_on_prem * y for y in range(1, years + 1)])],
                tr, tr.t("planner.cost_chart"))
    except SeekstackError as exc:
        result["error"] = exc.message + (f". {exc.fix}" if exc.fix else "")
    return result


def _whole(text: str, name: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise InvalidRequestError(f"{name} must be a whole number ≥ 1", param=name)
    return int(text)


def _positive(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1
    if value <= 0:
        raise InvalidRequestError(f"{name} must be a number > 0", param=name)
    return value
