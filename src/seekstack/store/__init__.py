"""The model store: pull, import, export, versions, signatures and the trust policy."""

from __future__ import annotations

from pathlib import Path

from ..config import ModelConfig, Settings
from ..errors import ConfigError
from .store import FileEntry, Manifest, Store, split_ref
from .verify import Verdict, verify

__all__ = ["Store", "Manifest", "FileEntry", "Verdict", "open_store", "resolve_model", "resolve_models", "split_ref", "store_problems",
           "verify"]


VERIFY_FIX = "run `seekstack verify NAME` for details; re-pull or re-import a changed model"


def open_store(settings: Settings) -> Store:
    return Store(Path(settings.store.path).expanduser() if settings.store.path else settings.state_path / "models")


def resolve_models(settings: Settings) -> list[str]:
    """Point each `store:` model at its verified snapshot; enforce the trust policy.

    Each load runs the fast check (signature, sizes, and the files' stat as of the last full
    verify). Under ``store.require_signature`` every local model must be a store model signed by
    a trusted key. Returns one line per store model; raises ConfigError with every problem."""
    lines, problems = _resolve(settings)
    if problems:
        raise ConfigError("cannot serve: " + "; ".join(problems) if len(problems) == 1
                          else "cannot serve:\n  " + "\n  ".join(problems),
                          fix=VERIFY_FIX)
    return lines


def store_problems(settings: Settings) -> list[str]:
    """What :func:`resolve_models` would refuse, one line each (for `seekstack config check`)."""
    return [problem if " — " in problem else f"{problem} — {VERIFY_FIX}" for problem in _resolve(settings)[1]]


def _resolve(settings: Settings) -> tuple[list[str], list[str]]:
    store = open_store(settings)
    problems, lines = [], []
    for model in settings.models:
        if not model.engine.launched or (model.engine.simulated and model.store is None):
            continue
        try:
            line = _resolve_one(settings, store, model)
        except ConfigError as exc:
            problems.append(exc.message)
            continue
        if line:
            lines.append(line)
    return lines, problems


def resolve_model(settings: Settings, model: ModelConfig) -> str:
    """Point one `store:` model at its verified snapshot (a rollout's new version); one line
    saying what it is. Raises ConfigError naming the problem."""
    line = _resolve_one(settings, open_store(settings), model)
    return line or f"{model.name}: not a store model"


def _resolve_one(settings: Settings, store, model: ModelConfig) -> str | None:
    policy = settings.store
    if model.store is None:
        if policy.require_signature:
            where = model.path or "the embedded model"
            raise ConfigError(f"{model.name}: {where} is not a signed store model (store.require_signature is on) — "
                              f"import it (`seekstack import PATH --name {model.name}`), sign it and set `store: {model.name}`")
        return None
    try:
        manifest = store.manifest(model.store)
    except Exception as exc:
        fix = getattr(exc, "fix", None)
        raise ConfigError(f"{model.name}: {getattr(exc, 'message', exc)}" + (f" — {fix}" if fix else "")) from None
    verdict = verify(store, manifest, full=False, trusted_keys=policy.trusted_keys,
                     require_signature=policy.require_signature)
    if not verdict.ok:
        raise ConfigError(f"{model.name} ({manifest.name}@{manifest.version}): " + "; ".join(verdict.problems))
    model._store_path = store.path_of(manifest)
    signed = f", signed by {verdict.signed_by}" if verdict.signed_by else ""
    return f"{model.name}: {manifest.name}@{manifest.version} from the store{signed}"
