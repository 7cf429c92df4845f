"""Users' console passwords: stored as scrypt of an HMAC under the server's pepper.

The pepper (``<state_dir>/pepper.key``, as for keys) means the database alone does not let
anyone test guesses offline; scrypt makes each guess cost ~50 ms and 16 MiB, on the server
too — so checking one runs in a worker thread, never on the event loop. An unknown user is
checked against a dummy hash: the answer takes as long, and says the same, either way.

A password signs a person into the console only (``Authorization: Basic`` on
``POST /console/session``); every other route wants a key. The session then carries a key
minted for it (:data:`SESSION_KEY_NAME`), so audit, quotas and revocation stay keyed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from ..errors import InvalidRequestError

N, R, P = 2 ** 14, 8, 1
MIN_LENGTH, MAX_LENGTH = 12, 256
SESSION_KEY_NAME = "console sign-in (password)"


def hash_password(pepper: bytes, password: str) -> str:
    salt = secrets.token_bytes(16)
    return f"scrypt${N}${R}${P}${salt.hex()}${_derive(pepper, password, salt, N, R, P).hex()}"


def check_password(pepper: bytes, password: str, stored: str | None) -> bool:
    """Whether ``password`` is the one ``stored`` hashes; a missing or malformed hash never matches
    (and still costs one scrypt, like a real check)."""
    try:
        scheme, n, r, p, salt, digest = (stored or _DUMMY).split("$")
        if scheme != "scrypt":
            raise ValueError(scheme)
        got = _derive(pepper, password, bytes.fromhex(salt), int(n), int(r), int(p))
    except ValueError:
        _derive(pepper, password, b"\0" * 16, N, R, P)
        return False
    return stored is not None and hmac.compare_digest(got.hex(), digest)


def check_strength(password: str) -> None:
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise InvalidRequestError(f"a password has {MIN_LENGTH} to {MAX_LENGTH} characters", param="password",
                                  fix="use a longer passphrase")


def _derive(pepper: bytes, password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    keyed = hmac.new(pepper, password.encode("utf-8"), hashlib.sha256).digest()
    return hashlib.scrypt(keyed, salt=salt, n=n, r=r, p=p, dklen=32, maxmem=64 * 1024 * 1024)


_DUMMY = f"scrypt${N}${R}${P}{'$' + '00' * 16}${'00' * 32}"
