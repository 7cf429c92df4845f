"""`seekstack audit verify|export`: check the chain and signatures; export records. Reads the
audit store directly (works while the server is down), so it runs where `serve` keeps its state."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path
from typing import Optional

import typer

from ..config import load_settings
from ..errors import ConfigError, InvalidRequestError
from ..governance.audit import read_records
from ..governance.audit_verify import verify_log
from ..governance.audit_writers import merged_records, verify_writers
from ..governance.store import open_identity_store
from ..governance.service import audit_dir
from .common import ConfigOption, JsonOption, console, output_file

app = typer.Typer(help="The tamper-evident audit log: verify it, export it.", no_args_is_help=True)
out = console()


def _directory(config: Optional[Path]) -> Path:
    directory = audit_dir(load_settings(config))
    if not (directory / "audit.db").exists() and not (directory / "audit-chain.key").exists():
        raise ConfigError(f"no audit log at {directory}", fix="pass the --config that `serve` uses (its state_dir)")
    return directory


ChainsOption = typer.Option(None, "--chains", help="Every gateway's audit directory, collected (repeat the option): "
                            "checked together against the writers registered in the shared governance store.")


@app.command("verify")
def verify(config: Optional[Path] = ConfigOption, as_json: bool = JsonOption,
           shipped: Optional[Path] = typer.Option(None, "--checkpoints", help="A copy of the gateway's log stream (or of "
                                                  "audit-checkpoints.jsonl) kept off this machine: the log must reach "
                                                  "every checkpoint in it."),
           chains: Optional[list[Path]] = ChainsOption) -> None:
    """Check every record's chain mac, the sequence, and the signed checkpoints in the database, the
    checkpoint file and (with --checkpoints) a shipped copy; name the first bad record. With
    --chains, check every gateway's chain, and that none of the registered writers is missing."""
    if chains:
        return _verify_writers(config, chains, as_json)
    verdict = verify_log(_directory(config), external=shipped)
    if as_json:
        print(json.dumps(verdict.__dict__, indent=2))
    elif verdict.ok:
        out.print(f"ok: {verdict.records} records, chain intact, {verdict.checkpoints} signed checkpoint(s) valid")
    if not verdict.ok:
        where = f"first bad record is #{verdict.first_bad}: " if verdict.first_bad is not None else ""
        raise InvalidRequestError(f"audit log tampered: {where}{verdict.problem}",
                                  fix="keep this copy as evidence; compare with an exported copy or backup")


def _verify_writers(config: Optional[Path], chains: list[Path], as_json: bool) -> None:
    store = open_identity_store(load_settings(config))
    try:
        verdict = verify_writers(store, chains)
    finally:
        store.close()
    if as_json:
        print(json.dumps(verdict.__dict__, indent=2))
    else:
        for writer, result in verdict.writers.items():
            state = "ok" if result.get("ok") else "BAD"
            out.print(f"{state}: writer {writer}: {result.get('records', 0)} records in {result.get('directory')}",
                      soft_wrap=True)
    if not verdict.ok:
        raise InvalidRequestError(f"audit log tampered or incomplete: {len(verdict.problems)} problem(s):\n  "
                                  + "\n  ".join(verdict.problems),
                                  fix="keep these copies as evidence; find the missing or altered chains in backups")
    out.print(f"ok: {len(verdict.writers)} writer(s), every chain intact and present")


@app.command("export")
def export(
    config: Optional[Path] = ConfigOption,
    fmt: str = typer.Option("jsonl", "--format", help="jsonl or csv."),
    since: Optional[str] = typer.Option(None, "--since", help="From this UTC date or time (ISO 8601)."),
    until: Optional[str] = typer.Option(None, "--until", help="Before this UTC date or time (ISO 8601)."),
    team: Optional[str] = typer.Option(None, "--team", help="Only this team's records."),
    key_id: Optional[str] = typer.Option(None, "--key-id", help="Only this key's records."),
    event: Optional[str] = typer.Option(None, "--event", help="request or response."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write here, mode 0600, whole or not at all (default: stdout)."),
    chains: Optional[list[Path]] = typer.Option(None, "--chains", help="Every gateway's audit directory (repeat): their "
                                                "records merged by time, each with its writer."),
) -> None:
    """Write audit records as JSONL or CSV, filtered."""
    if fmt not in ("jsonl", "csv"):
        raise InvalidRequestError(f"--format must be jsonl or csv, not {fmt!r}", fix="pass --format jsonl or --format csv")
    filters = {k: v for k, v in {"team": team, "key_id": key_id, "event": event}.items() if v}
    window = {"since": _when(since, "--since"), "until": _when(until, "--until"), "filters": filters}
    records = merged_records(list(chains), **window) if chains else read_records(_directory(config) / "audit.db", **window)
    # A file appears whole or not at all, readable by its owner only: the records name keys,
    # users, teams and client addresses.
    with output_file(output or Path("-"), mode=0o600, newline="") as target:
        if fmt == "jsonl":
            for record in records:
                target.write(json.dumps(record, ensure_ascii=False) + "\n")
        else:
            rows = list(records)
            columns = sorted({k for r in rows for k in r})
            writer = csv.DictWriter(target, fieldnames=columns)
            writer.writeheader()
            for r in rows:
                writer.writerow({k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in r.items()})


def _when(value: Optional[str], option: str) -> Optional[float]:
    if value is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRequestError(f"{option} {value!r} is not an ISO 8601 date or time",
                                  fix=f"e.g. {option} 2026-11-01 or {option} 2026-11-01T08:00") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.timestamp()
