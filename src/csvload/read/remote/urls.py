"""What counts as a remote source, and a URL as it may be shown anywhere: in messages, the
run history, the JSON summary and webhook payloads.

redact() drops every credential a URL can carry: an http(s) URL's whole userinfo (a token
is often sent as the user name), an sftp URL's password (its user stays: it says which
account, and is no secret), the value of each query parameter whose name looks like a
secret (token, key, signature, X-Amz-*, ...), and the fragment.  The redacted URL is also
the name the run history remembers a feed by, so a rotated token is still the same feed.
"""

from __future__ import annotations

import posixpath
import re
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

SCHEMES = ("http", "https", "sftp")
HIDDEN = "***"

# A query parameter whose name contains one of these (lowercased) carries a credential.
_SECRET_PARTS = (
    "token", "key", "sig", "secret", "pass", "pwd", "auth", "credential", "session", "code",
)  # fmt: skip
_SECRET_PREFIXES = ("x-amz-", "x-goog-", "x-ms-")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def is_remote(path: str) -> bool:
    """True for an http://, https:// or sftp:// URL (any case)."""
    m = _SCHEME.match(path)
    return bool(m) and m.group(1).lower() in SCHEMES


def secret_param(name: str) -> bool:
    """True when a query parameter of this name looks like it carries a credential."""
    lowered = name.lower()
    return lowered.startswith(_SECRET_PREFIXES) or any(p in lowered for p in _SECRET_PARTS)


def _netloc(parts, scheme: str) -> str:
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"  # IPv6
    try:
        port = parts.port
    except ValueError:
        port = None
    where = f"{host}:{port}" if port is not None else host
    if parts.username is None and parts.password is None and "@" not in parts.netloc:
        return where
    if scheme == "sftp" and parts.username:
        user = parts.username
        return f"{user}:{HIDDEN}@{where}" if parts.password is not None else f"{user}@{where}"
    return f"{HIDDEN}@{where}"


def redact(url: str) -> str:
    """The URL without credentials (see the module docstring)."""
    try:
        parts = urlsplit(url)
        netloc = _netloc(parts, parts.scheme.lower())
    except ValueError:
        return f"{url.split(':', 1)[0]}://{HIDDEN}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = "&".join(
            f"{name}={HIDDEN}" if secret_param(name) else (f"{name}={value}" if value else name)
            for name, value in pairs
        )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def has_credentials(url: str) -> bool:
    """True when the URL carries a password, an http(s) user, or a secret-looking query
    parameter: what a committed config file must not hold."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    if parts.password is not None:
        return True
    if parts.scheme.lower() != "sftp" and "@" in parts.netloc:
        return True
    return any(secret_param(name) for name, _ in parse_qsl(parts.query, keep_blank_values=True))


def shown(path: str) -> str:
    """How an input is named in messages and records: a URL redacted, a path as it is."""
    return redact(path) if is_remote(path) else path


def local_name(url: str) -> str:
    """The last part of the URL's path ("products.csv"), or "feed" when it has none: the
    base of the files csvload writes beside the working directory for a URL input."""
    try:
        path = unquote(urlsplit(url).path)
    except ValueError:
        path = ""
    name = posixpath.basename(path.rstrip("/"))
    return name if name and name not in (".", "..") else "feed"
