"""The `seekstack` command. Errors end here as one line naming the problem and one with the fix."""

from __future__ import annotations

import os
import sys

import click
import typer
from rich.console import Console
from rich.markup import escape

from ..errors import SeekstackError
from . import (admin, audit, bench, config_cmd, deploy, doctor, engines, info, plan, rollout, run, serve, service,
               sim, store_cmd)

app = typer.Typer(
    name="seekstack",
    help="Run DeepSeek and other GGUF models on your own hardware behind an OpenAI/DeepSeek-compatible API.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command("serve")(serve.serve)
app.command("gateway")(serve.gateway)
app.command("engines")(engines.engines)
app.command("stop")(service.stop)
app.add_typer(service.app, name="service")
app.command("run")(run.run)
app.add_typer(info.models_app, name="models")
info.models_app.command("history")(store_cmd.history)
info.models_app.command("rollback")(store_cmd.rollback)
app.command("pull")(store_cmd.pull)
app.command("import")(store_cmd.import_)
app.command("export")(store_cmd.export)
app.command("rm")(store_cmd.rm)
app.command("gc")(store_cmd.gc)
app.command("sign")(store_cmd.sign)
app.command("keygen")(store_cmd.keygen)
app.command("verify")(store_cmd.verify)
app.command("ps")(info.ps)
app.command("version")(info.version)
app.command("doctor")(doctor.doctor)
app.command("plan")(plan.plan)
app.add_typer(config_cmd.app, name="config")
app.add_typer(admin.keys, name="keys")
app.add_typer(admin.users, name="users")
app.add_typer(admin.teams, name="teams")
app.add_typer(admin.roles, name="roles")
app.add_typer(admin.limits, name="limits")
app.command("usage")(admin.usage)
app.command("gateways")(admin.gateways)
app.add_typer(audit.app, name="audit")
app.add_typer(deploy.app, name="deploy")
app.add_typer(rollout.app, name="rollout")
app.add_typer(bench.app, name="bench")
app.command("sim", context_settings=sim.SETTINGS, add_help_option=False)(sim.sim)

err = Console(stderr=True, highlight=False)

try:  # recent typer raises its own vendored click's exceptions
    from typer._click.exceptions import ClickException as _VendoredClickException
    from typer.exceptions import Abort as _VendoredAbort
except ImportError:  # pragma: no cover - older typer uses click itself
    _VendoredAbort, _VendoredClickException = click.exceptions.Abort, click.ClickException
ABORTS = (click.exceptions.Abort, _VendoredAbort)
USAGE_ERRORS = (click.ClickException, _VendoredClickException)


def main(argv: list[str] | None = None) -> None:
    try:
        code = app(args=argv, standalone_mode=False)
    except SeekstackError as exc:  # messages may hold brackets ("hf:ORG/REPO[@REV]"): never markup
        err.print(f"[bold red]error:[/] {escape(exc.message)}", markup=True, soft_wrap=True)
        if exc.fix:
            err.print(f"[bold]fix:[/] {escape(exc.fix)}", markup=True, soft_wrap=True)
        sys.exit(1)
    except ABORTS:
        sys.exit(130)
    except KeyboardInterrupt:
        sys.exit(130)
    except USAGE_ERRORS as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except Exception as exc:  # last resort: still one line, traceback only on request
        if os.environ.get("SEEKSTACK_DEBUG"):
            raise
        err.print(f"[bold red]error:[/] unexpected {type(exc).__name__}: {escape(str(exc))}", markup=True, soft_wrap=True)
        err.print("[bold]fix:[/] set SEEKSTACK_DEBUG=1 for the full traceback and report it", markup=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
