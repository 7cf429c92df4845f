"""Signing and verifying manifests: Ed25519 (public-key) or HMAC-SHA256 (shared secret).

A signature covers the manifest's canonical body — name, version, every file's path, size and
sha256, source and revision — so a changed file, a swapped file or an edited manifest all break
it. Keys are PEM (Ed25519) or 32 random bytes in hex (HMAC); private parts are written 0600.
``key_id`` is the first 16 hex digits of the SHA-256 of the public key (or of the HMAC key).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..errors import InvalidRequestError
from .store import Manifest


def _write_private(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise InvalidRequestError(f"cannot write {path}: {exc.strerror}", fix="pick a writable directory") from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def keygen(prefix: Path, kind: str = "ed25519") -> tuple[Path, Path | None]:
    """Write ``PREFIX.key`` (0600) and, for Ed25519, ``PREFIX.pub``; refuse to overwrite."""
    private = prefix.with_suffix(".key")
    if private.exists():
        raise InvalidRequestError(f"{private} exists; keys are never overwritten", fix="pick another name or move the old key")
    if kind == "hmac":
        _write_private(private, secrets.token_hex(32).encode() + b"\n")
        return private, None
    key = Ed25519PrivateKey.generate()
    _write_private(private, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
    public = prefix.with_suffix(".pub")
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def _read(path: Path) -> bytes:
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise InvalidRequestError(f"cannot read key {path}: {exc.strerror}", fix="check the path") from None


def load_key(path: Path):
    """An Ed25519 private or public key, or HMAC key bytes, from a file."""
    data = _read(path)
    if b"PRIVATE KEY" in data:
        return serialization.load_pem_private_key(data, password=None)
    if b"PUBLIC KEY" in data:
        return serialization.load_pem_public_key(data)
    text = data.strip()
    try:
        secret = bytes.fromhex(text.decode())
    except ValueError:
        raise InvalidRequestError(f"{path} is neither an Ed25519 PEM key nor a hex HMAC key",
                                  fix="make one with `seekstack keygen`") from None
    if len(secret) < 16:
        raise InvalidRequestError(f"{path}: an HMAC key must be at least 16 bytes", fix="make one with `seekstack keygen --hmac`")
    return secret


def key_id(key) -> str:
    if isinstance(key, bytes):
        material = key
    else:
        public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
        material = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(material).hexdigest()[:16]


def sign(manifest: Manifest, key) -> dict[str, str]:
    body = manifest.body()
    if isinstance(key, bytes):
        entry = {"alg": "hmac-sha256", "key_id": key_id(key), "sig": hmac.new(key, body, hashlib.sha256).hexdigest()}
    elif isinstance(key, Ed25519PrivateKey):
        entry = {"alg": "ed25519", "key_id": key_id(key), "sig": base64.b64encode(key.sign(body)).decode()}
    else:
        raise InvalidRequestError("signing needs a private key (or an HMAC key)", fix="pass the .key file, not the .pub")
    manifest.signatures = [s for s in manifest.signatures if s.get("key_id") != entry["key_id"]] + [entry]
    return entry


def check_signature(manifest: Manifest, keys: list) -> tuple[bool, str]:
    """(True, key id) when a signature by one of ``keys`` matches; else (False, why)."""
    if not manifest.signatures:
        return False, "the manifest is not signed"
    body = manifest.body()
    known = {key_id(k): k for k in keys}
    for entry in manifest.signatures:
        key = known.get(entry.get("key_id", ""))
        if key is None:
            continue
        try:
            if entry["alg"] == "hmac-sha256" and isinstance(key, bytes):
                if hmac.compare_digest(hmac.new(key, body, hashlib.sha256).hexdigest(), entry["sig"]):
                    return True, entry["key_id"]
            elif entry["alg"] == "ed25519" and not isinstance(key, bytes):
                public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
                if isinstance(public, Ed25519PublicKey):
                    public.verify(base64.b64decode(entry["sig"]), body)
                    return True, entry["key_id"]
        except (InvalidSignature, KeyError, ValueError):
            return False, f"the signature by key {entry.get('key_id')} does not match the manifest (edited or tampered)"
        return False, f"the signature by key {entry.get('key_id')} does not match the manifest (edited or tampered)"
    ids = ", ".join(s.get("key_id", "?") for s in manifest.signatures)
    return False, f"signed only by untrusted key(s): {ids}"
