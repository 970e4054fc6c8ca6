"""Kaggle API credentials: discovery in the standard places, redacted display, request auth.

Search order (the same as kagglehub 1.0.2 / kagglesdk 0.1.37, checked against their source):

1. An API token (the newer single-string credential, sent as `Authorization: Bearer <token>`):
   a. env `KAGGLE_API_TOKEN` (its value, or the content of the file it names);
   b. `~/.kaggle/access_token`, then `~/.kaggle/access_token.txt` (kagglesdk always looks in
      the home folder here, not in `KAGGLE_CONFIG_DIR`).
2. A legacy username + key (sent as HTTP basic auth):
   a. env `KAGGLE_USERNAME` and `KAGGLE_KEY`, both set;
   b. `$KAGGLE_CONFIG_DIR/kaggle.json` when that variable is set, else `~/.kaggle/kaggle.json`,
      a JSON object with "username" and "key".

Credential files readable by group or others trigger a warning (chmod 600). Nothing found, or a
file that cannot be used, raises `CredentialsError` whose message always ends with the same
instructions (`HOW_TO_FIX`). Secrets never appear in a repr, str, log record or error message.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import requests
from requests.auth import AuthBase, HTTPBasicAuth

log = logging.getLogger(__name__)

KAGGLE_SETTINGS_URL = "https://www.kaggle.com/settings"

HOW_TO_FIX = (
    "To fix: sign in at https://www.kaggle.com, open your account settings "
    f"({KAGGLE_SETTINGS_URL}), and in the 'API' section create a token ('Create New Token' / "
    "'Create Legacy API Key'), which downloads kaggle.json. Then run: "
    "mkdir -p ~/.kaggle && mv ~/Downloads/kaggle.json ~/.kaggle/kaggle.json && "
    "chmod 600 ~/.kaggle/kaggle.json "
    "(or put it in $KAGGLE_CONFIG_DIR/kaggle.json, or export KAGGLE_USERNAME and KAGGLE_KEY; "
    "a single-string API token goes in KAGGLE_API_TOKEN or ~/.kaggle/access_token, also "
    "chmod 600). Also open the dataset's page on kaggle.com while signed in and accept its "
    "licence/rules if asked."
)


class CredentialsError(RuntimeError):
    """Kaggle credentials are missing, unreadable or were rejected (never includes the secret)."""

    def __init__(self, problem: str) -> None:
        super().__init__(f"Kaggle credentials {problem}. {HOW_TO_FIX}")
        self.problem = problem


@dataclass(frozen=True)
class KaggleCredentials:
    """Either `username` + `key` (legacy, basic auth) or `api_token` (bearer).

    `source` says where they were found. repr() and str() show the username and the source
    but never the key or token.
    """

    username: str | None = None
    key: str | None = field(default=None, repr=False)
    api_token: str | None = field(default=None, repr=False)
    source: str = ""

    def __post_init__(self) -> None:
        if self.api_token:
            return
        if not (self.username and self.key):
            raise ValueError("KaggleCredentials needs username and key, or api_token")

    @property
    def kind(self) -> str:
        return "api_token" if self.api_token else "username_key"

    def secrets(self) -> tuple[str, ...]:
        """The secret strings, for scrubbing text (never print these)."""
        return tuple(s for s in (self.key, self.api_token) if s)

    def __repr__(self) -> str:
        if self.api_token:
            return f"KaggleCredentials(api_token=***, source={self.source!r})"
        return f"KaggleCredentials(username={self.username!r}, key=***, source={self.source!r})"

    __str__ = __repr__


class BearerAuth(AuthBase):
    """`Authorization: Bearer <token>` for requests; repr never shows the token."""

    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request

    def __repr__(self) -> str:
        return "BearerAuth(token=***)"


class RedactedBasicAuth(HTTPBasicAuth):
    """HTTP basic auth whose repr never shows the password."""

    def __repr__(self) -> str:
        return f"RedactedBasicAuth(username={self.username!r}, password=***)"


def _warn_if_loose(path: Path) -> None:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return
    if os.name == "posix" and mode & 0o077:
        log.warning(
            "%s is readable by other users (mode %04o); run: chmod 600 %s", path, mode, path
        )


def _read_token_file(path: Path) -> str | None:
    if not path.is_file():
        return None
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        raise CredentialsError(f"token file {path} cannot be read") from None
    if not token:
        return None
    _warn_if_loose(path)
    return token


def _read_kaggle_json(path: Path) -> KaggleCredentials:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError:
        raise CredentialsError(f"file {path} cannot be read") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CredentialsError(f"file {path} is not valid JSON") from None
    if not isinstance(data, dict):
        raise CredentialsError(f"file {path} is not a JSON object with 'username' and 'key'")
    username, key = data.get("username"), data.get("key")
    missing = [
        name
        for name, value in (("username", username), ("key", key))
        if not isinstance(value, str) or not value.strip()
    ]
    if missing:
        raise CredentialsError(f"file {path} lacks a non-empty {' and '.join(missing)}")
    _warn_if_loose(path)
    assert isinstance(username, str) and isinstance(key, str)
    return KaggleCredentials(username=username.strip(), key=key.strip(), source=str(path))


def kaggle_json_path(environ: Mapping[str, str] | None = None, home: Path | None = None) -> Path:
    """Where kaggle.json is looked for: $KAGGLE_CONFIG_DIR/kaggle.json or ~/.kaggle/kaggle.json."""
    env = os.environ if environ is None else environ
    config_dir = env.get("KAGGLE_CONFIG_DIR")
    if config_dir:
        return Path(config_dir).expanduser() / "kaggle.json"
    return (home if home is not None else Path.home()) / ".kaggle" / "kaggle.json"


def find_kaggle_credentials(
    *, environ: Mapping[str, str] | None = None, home: Path | None = None
) -> KaggleCredentials:
    """The first usable Kaggle credentials in the standard places (see the module docstring).

    Args:
        environ: the environment to read (default: os.environ).
        home: the home folder (default: Path.home()).

    Raises:
        CredentialsError: nothing found, or the first place that has credentials holds
            unusable ones; the message says exactly what to do.
    """
    env = os.environ if environ is None else environ
    home = home if home is not None else Path.home()

    env_token = env.get("KAGGLE_API_TOKEN", "").strip()
    if env_token:
        token_path = Path(env_token).expanduser()
        if len(env_token) < 4096 and token_path.is_file():
            token = _read_token_file(token_path)
            if token is None:
                raise CredentialsError(f"file {token_path} named by KAGGLE_API_TOKEN is empty")
            return KaggleCredentials(api_token=token, source=f"KAGGLE_API_TOKEN -> {token_path}")
        return KaggleCredentials(api_token=env_token, source="env KAGGLE_API_TOKEN")
    for name in ("access_token", "access_token.txt"):
        path = home / ".kaggle" / name
        token = _read_token_file(path)
        if token:
            return KaggleCredentials(api_token=token, source=str(path))

    username = env.get("KAGGLE_USERNAME", "").strip()
    key = env.get("KAGGLE_KEY", "").strip()
    if username and key:
        return KaggleCredentials(
            username=username, key=key, source="env KAGGLE_USERNAME/KAGGLE_KEY"
        )
    json_path = kaggle_json_path(env, home)
    if json_path.is_file():
        return _read_kaggle_json(json_path)

    partial = ""
    if username or key:
        partial = "; only one of KAGGLE_USERNAME / KAGGLE_KEY is set, both are needed"
    raise CredentialsError(
        "not found (looked in env KAGGLE_API_TOKEN, ~/.kaggle/access_token, env "
        f"KAGGLE_USERNAME/KAGGLE_KEY and {json_path}){partial}"
    )


def kaggle_auth(credentials: KaggleCredentials | None = None) -> AuthBase:
    """The requests auth for a Kaggle API request (e.g. the dataset download endpoint).

    Basic auth with username/key for legacy credentials, `Authorization: Bearer` for an API
    token. Finds the credentials with `find_kaggle_credentials()` when none are given.
    """
    creds = credentials if credentials is not None else find_kaggle_credentials()
    if creds.api_token:
        return BearerAuth(creds.api_token)
    assert creds.username is not None and creds.key is not None
    return RedactedBasicAuth(creds.username, creds.key)
