"""Kaggle credentials: discovery order, permissions warning, one clear error, no leaks."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from download_server import DownloadServer, allow_only_loopback, isolate_kaggle_env, serve

from leukbench.credentials import (
    HOW_TO_FIX,
    BearerAuth,
    CredentialsError,
    KaggleCredentials,
    find_kaggle_credentials,
    kaggle_auth,
    kaggle_json_path,
)

KEY = "0123456789abcdef0123456789abcdef"
TOKEN = "KGAT_feedfacecafebeef0123456789"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    isolate_kaggle_env(monkeypatch, home)
    return home


def write_kaggle_json(folder: Path, content: object, mode: int = 0o600) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "kaggle.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    path.chmod(mode)
    return path


def test_env_username_and_key(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    monkeypatch.setenv("KAGGLE_KEY", KEY)
    creds = find_kaggle_credentials()
    assert (creds.username, creds.key, creds.kind) == ("alice", KEY, "username_key")
    assert creds.source == "env KAGGLE_USERNAME/KAGGLE_KEY"


def test_kaggle_json_in_home(home: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_kaggle_json(home / ".kaggle", {"username": "bob", "key": KEY})
    creds = find_kaggle_credentials()
    assert (creds.username, creds.key, creds.source) == ("bob", KEY, str(path))
    assert "chmod" not in caplog.text  # 0600: no warning


def test_kaggle_json_in_config_dir(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_kaggle_json(home / ".kaggle", {"username": "ignored", "key": "x" * 32})
    path = write_kaggle_json(tmp_path / "cfg", {"username": "carol", "key": KEY})
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "cfg"))
    assert kaggle_json_path() == path
    assert find_kaggle_credentials().username == "carol"


def test_loose_permissions_warn(home: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_kaggle_json(home / ".kaggle", {"username": "bob", "key": KEY}, mode=0o644)
    find_kaggle_credentials()
    assert f"chmod 600 {path}" in caplog.text
    assert KEY not in caplog.text


def test_api_token_from_env_and_files(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (home / ".kaggle").mkdir()
    token_file = home / ".kaggle" / "access_token"
    token_file.write_text(TOKEN + "-file\n")
    token_file.chmod(0o600)
    assert find_kaggle_credentials().api_token == TOKEN + "-file"

    monkeypatch.setenv("KAGGLE_API_TOKEN", TOKEN)
    creds = find_kaggle_credentials()
    assert (creds.api_token, creds.kind, creds.source) == (
        TOKEN,
        "api_token",
        "env KAGGLE_API_TOKEN",
    )

    elsewhere = tmp_path / "token.txt"
    elsewhere.write_text(TOKEN + "-path")
    monkeypatch.setenv("KAGGLE_API_TOKEN", str(elsewhere))  # kagglesdk: a path is read
    assert find_kaggle_credentials().api_token == TOKEN + "-path"


def test_precedence_token_then_env_then_file(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_kaggle_json(home / ".kaggle", {"username": "file", "key": KEY})
    monkeypatch.setenv("KAGGLE_USERNAME", "env")
    monkeypatch.setenv("KAGGLE_KEY", KEY)
    assert find_kaggle_credentials().username == "env"
    monkeypatch.setenv("KAGGLE_API_TOKEN", TOKEN)
    assert find_kaggle_credentials().kind == "api_token"


def test_missing_credentials_give_the_one_message(home: Path) -> None:
    with pytest.raises(CredentialsError) as err:
        find_kaggle_credentials()
    message = str(err.value)
    assert message.startswith("Kaggle credentials not found")
    assert message.endswith(HOW_TO_FIX)
    for must in ("https://www.kaggle.com/settings", "~/.kaggle/kaggle.json", "chmod 600"):
        assert must in message
    assert str(home / ".kaggle" / "kaggle.json") in message


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('{"username": "bob", "key": "' + KEY, "not valid JSON"),
        ({"username": "bob"}, "lacks a non-empty key"),
        ({"username": "", "key": KEY}, "lacks a non-empty username"),
        ([KEY], "not a JSON object"),
    ],
)
def test_invalid_kaggle_json_gives_the_one_message_without_the_key(
    home: Path, content: object, problem: str
) -> None:
    write_kaggle_json(home / ".kaggle", content)
    with pytest.raises(CredentialsError) as err:
        find_kaggle_credentials()
    assert problem in str(err.value)
    assert str(err.value).endswith(HOW_TO_FIX)
    assert KEY not in str(err.value) and KEY not in repr(err.value)


def test_half_set_env_is_explained(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    with pytest.raises(CredentialsError, match="only one of KAGGLE_USERNAME / KAGGLE_KEY"):
        find_kaggle_credentials()


def test_secrets_never_in_str_repr_or_logs(
    home: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    monkeypatch.setenv("KAGGLE_KEY", KEY)
    creds = find_kaggle_credentials()
    token_creds = KaggleCredentials(api_token=TOKEN, source="test")
    shown = " ".join(
        [
            str(creds),
            repr(creds),
            f"{creds}",
            str(token_creds),
            repr(token_creds),
            repr(kaggle_auth(creds)),
            repr(kaggle_auth(token_creds)),
            repr([creds]),
        ]
    )
    assert "alice" in shown and "***" in shown
    assert KEY not in shown and TOKEN not in shown
    logging.getLogger("leukbench").info("using %s", creds)
    assert KEY not in caplog.text
    assert set(creds.secrets()) == {KEY}


def test_constructor_needs_a_complete_credential() -> None:
    with pytest.raises(ValueError, match="username and key, or api_token"):
        KaggleCredentials(username="alice")


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[DownloadServer]:
    allow_only_loopback(monkeypatch)
    with serve() as srv:
        assert srv.base_url.startswith("http://127.0.0.1:")
        yield srv


def test_kaggle_auth_sends_basic_or_bearer(server: DownloadServer, home: Path) -> None:
    server.add_kaggle_dataset("o/basic", b"zip", username="alice", key=KEY, redirect=False)
    server.add_kaggle_dataset("o/bearer", b"zip", token=TOKEN, redirect=False)
    url = server.url("/api/v1/datasets/download/o/")
    basic = kaggle_auth(KaggleCredentials(username="alice", key=KEY, source="test"))
    bearer = kaggle_auth(KaggleCredentials(api_token=TOKEN, source="test"))
    assert isinstance(bearer, BearerAuth)

    assert requests.get(url + "basic", auth=basic, timeout=5).content == b"zip"
    assert requests.get(url + "bearer", auth=bearer, timeout=5).content == b"zip"
    assert requests.get(url + "basic", timeout=5).status_code == 401
    assert requests.get(url + "bearer", auth=basic, timeout=5).status_code == 401

    prepared = requests.Request("GET", url, auth=basic).prepare()
    assert (
        prepared.headers["Authorization"]
        == "Basic " + base64.b64encode(f"alice:{KEY}".encode()).decode()
    )


def test_kaggle_auth_finds_credentials_itself(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(CredentialsError):
        kaggle_auth()
    monkeypatch.setenv("KAGGLE_API_TOKEN", TOKEN)
    assert isinstance(kaggle_auth(), BearerAuth)


@pytest.mark.parametrize(
    "setup",
    ["env_pair", "json_home", "json_config_dir", "token_env", "token_file", "token_and_pair"],
)
def test_agrees_with_kagglehub(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setup: str
) -> None:
    """Same credentials as kagglehub's own lookup (the installed version is the reference)."""
    kagglehub_config = pytest.importorskip("kagglehub.config")
    monkeypatch.setattr(kagglehub_config, "_kaggle_credentials", None)
    monkeypatch.setattr(
        kagglehub_config, "DEFAULT_KAGGLE_CREDENTIALS_FOLDER", str(home / ".kaggle")
    )
    if setup in ("env_pair", "token_and_pair"):
        monkeypatch.setenv("KAGGLE_USERNAME", "alice")
        monkeypatch.setenv("KAGGLE_KEY", KEY)
    if setup == "json_home":
        write_kaggle_json(home / ".kaggle", {"username": "bob", "key": KEY})
    if setup == "json_config_dir":
        write_kaggle_json(tmp_path / "cfg", {"username": "carol", "key": KEY})
        monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "cfg"))
    if setup in ("token_env", "token_and_pair"):
        monkeypatch.setenv("KAGGLE_API_TOKEN", TOKEN)
    if setup == "token_file":
        (home / ".kaggle").mkdir()
        (home / ".kaggle" / "access_token").write_text(TOKEN)

    theirs = kagglehub_config.get_kaggle_credentials()
    ours = find_kaggle_credentials()
    assert (ours.username, ours.key, ours.api_token) == (
        theirs.username,
        theirs.key,
        theirs.api_key,
    )
