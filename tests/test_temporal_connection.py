"""How servers and workers reach Temporal: connect arguments from Temporal's own variables, files checked first.

Pure: ``connect_args`` reads the settings and the certificate files; nothing connects here (the dev-server
cases are in tests/test_temporal_tls.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import SecretStr

from subagent_mcp.errors import ConfigError
from subagent_mcp.settings import Settings
from subagent_mcp.temporal.connection import ConnectArgs, TLSOptions, connect_args
from subagent_mcp.temporal.payloads import public_settings

API_KEY = "tmprl-api-key-9f8e7d6c5b4a"
CERT = b"-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUclient\n-----END CERTIFICATE-----\n"
CA = b"-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUca\n-----END CERTIFICATE-----\n"
PRIVATE = b"-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49private\n-----END PRIVATE KEY-----\n"


def settings(**values: object) -> Settings:
    return Settings.model_validate(
        {"temporal_address": "ns.acct.tmprl.cloud:7233", "temporal_namespace": "ns.acct"} | values
    )


def pem_files(tmp_path: Path) -> dict[str, str]:
    files = {"cert.pem": CERT, "key.pem": PRIVATE, "ca.pem": CA}
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    return {name: str(tmp_path / name) for name in files}


def test_without_any_tls_setting_the_connection_is_plaintext_with_no_key() -> None:
    assert connect_args(Settings()) == ConnectArgs("localhost:7233", "default", tls=None, api_key=None)


def test_an_api_key_turns_tls_on_with_the_systems_roots_as_temporal_cloud_needs() -> None:
    args = connect_args(settings(temporal_api_key=API_KEY))
    assert args == ConnectArgs("ns.acct.tmprl.cloud:7233", "ns.acct", tls=TLSOptions(), api_key=SecretStr(API_KEY))


def test_an_api_key_with_tls_explicitly_off_keeps_the_key_and_connects_in_plaintext() -> None:
    args = connect_args(settings(temporal_api_key=API_KEY, temporal_tls=False))
    assert args.tls is None
    assert args.api_key == SecretStr(API_KEY)


def test_tls_on_alone_is_tls_with_no_key() -> None:
    assert connect_args(settings(temporal_tls=True)).tls == TLSOptions()
    assert connect_args(settings(temporal_tls_server_name="frontend.internal")).tls == TLSOptions(
        domain="frontend.internal"
    )


def test_mtls_reads_the_client_certificate_key_and_server_ca_from_their_files(tmp_path: Path) -> None:
    files = pem_files(tmp_path)
    args = connect_args(
        settings(
            temporal_tls_client_cert_path=files["cert.pem"],
            temporal_tls_client_key_path=files["key.pem"],
            temporal_tls_server_ca_cert_path=files["ca.pem"],
            temporal_tls_server_name="frontend.internal",
        )
    )
    assert args.tls == TLSOptions(
        server_root_ca_cert=CA, domain="frontend.internal", client_cert=CERT, client_private_key=PRIVATE
    )
    assert args.api_key is None


def test_mtls_from_pem_text_as_the_data_variables_give_it() -> None:
    args = connect_args(
        settings(temporal_tls_client_cert_data=CERT.decode(), temporal_tls_client_key_data=PRIVATE.decode())
    )
    assert args.tls == TLSOptions(client_cert=CERT, client_private_key=PRIVATE)


def test_tls_explicitly_off_ignores_the_certificate_files(tmp_path: Path) -> None:
    args = connect_args(settings(temporal_tls=False, temporal_tls_server_ca_cert_path=str(tmp_path / "absent.pem")))
    assert args.tls is None


def test_temporals_own_variable_names_are_read_from_the_environment(tmp_path: Path) -> None:
    files = pem_files(tmp_path)
    env = {
        "TEMPORAL_ADDRESS": "ns.acct.tmprl.cloud:7233",
        "TEMPORAL_NAMESPACE": "ns.acct",
        "TEMPORAL_API_KEY": f" {API_KEY}\n",
        "TEMPORAL_TLS": "true",
        "TEMPORAL_TLS_CLIENT_CERT_PATH": files["cert.pem"],
        "TEMPORAL_TLS_CLIENT_KEY_PATH": files["key.pem"],
        "TEMPORAL_TLS_SERVER_CA_CERT_PATH": files["ca.pem"],
        "TEMPORAL_TLS_SERVER_NAME": "frontend.internal",
    }
    args = connect_args(Settings.from_env(env, env_file=None))
    assert args == ConnectArgs(
        "ns.acct.tmprl.cloud:7233",
        "ns.acct",
        tls=TLSOptions(
            server_root_ca_cert=CA, domain="frontend.internal", client_cert=CERT, client_private_key=PRIVATE
        ),
        api_key=SecretStr(API_KEY),
    )
    assert (
        connect_args(Settings.from_env({"TEMPORAL_API_KEY": API_KEY, "TEMPORAL_TLS": "false"}, env_file=None)).tls
        is None
    )


def test_the_api_key_and_the_private_key_never_show_in_a_repr_or_a_description(tmp_path: Path) -> None:
    files = pem_files(tmp_path)
    s = settings(
        temporal_api_key=API_KEY,
        temporal_tls_client_cert_path=files["cert.pem"],
        temporal_tls_client_key_path=files["key.pem"],
    )
    args = connect_args(s)
    shown = [repr(s), str(s), repr(args), str(args), args.where(), json.dumps(public_settings(s))]  # + workflow input
    assert [text for text in shown if API_KEY in text or "private" in text] == []
    assert args.where() == "Temporal at ns.acct.tmprl.cloud:7233 (namespace 'ns.acct', TLS, API key)"


def test_an_api_key_with_a_line_break_inside_is_refused_without_showing_it() -> None:
    with pytest.raises(ConfigError, match="TEMPORAL_API_KEY has a space") as caught:
        Settings.from_env({"TEMPORAL_API_KEY": "tmprl-first-half\nsecond-half"}, env_file=None)
    assert "first-half" not in str(caught.value)


def test_an_unusable_tls_value_is_named_by_its_own_variable() -> None:
    with pytest.raises(ConfigError, match=r"TEMPORAL_TLS: ") as caught:
        Settings.from_env({"TEMPORAL_TLS": "maybe"}, env_file=None)
    assert "SUBAGENT_MCP_TEMPORAL_TLS" not in str(caught.value)


@pytest.mark.parametrize(
    ("variable", "problem"),
    [
        ("TEMPORAL_TLS_SERVER_CA_CERT_PATH", "no such file"),
        ("TEMPORAL_TLS_CLIENT_CERT_PATH", "no such file"),
        ("TEMPORAL_TLS_CLIENT_KEY_PATH", "no such file"),
    ],
)
def test_a_missing_certificate_file_is_named_by_its_variable_and_path(
    tmp_path: Path, variable: str, problem: str
) -> None:
    files = pem_files(tmp_path)
    values = {
        "temporal_tls_client_cert_path": files["cert.pem"],
        "temporal_tls_client_key_path": files["key.pem"],
        variable.lower(): str(tmp_path / "gone.pem"),  # each setting is its variable's name in lower case
    }
    with pytest.raises(ConfigError) as caught:
        connect_args(settings(**values))
    assert str(caught.value).startswith(f"{variable}={tmp_path / 'gone.pem'}: {problem}")


def test_a_folder_given_as_a_certificate_is_unreadable_and_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=rf"^TEMPORAL_TLS_SERVER_CA_CERT_PATH={tmp_path}: cannot read"):
        connect_args(settings(temporal_tls_server_ca_cert_path=str(tmp_path)))


def test_a_file_that_is_not_pem_or_holds_the_wrong_pem_is_named(tmp_path: Path) -> None:
    files = pem_files(tmp_path)
    (tmp_path / "cert.der").write_bytes(b"0\x82\x01\xb30\x82\x01Y\xa0\x03\x02\x01\x02")
    with pytest.raises(ConfigError, match=rf"^TEMPORAL_TLS_SERVER_CA_CERT_PATH={tmp_path / 'cert.der'} is not a PEM"):
        connect_args(settings(temporal_tls_server_ca_cert_path=str(tmp_path / "cert.der")))
    with pytest.raises(ConfigError, match=r"^TEMPORAL_TLS_CLIENT_KEY_PATH=.*cert\.pem is not a PEM client key"):
        connect_args(
            settings(temporal_tls_client_cert_path=files["cert.pem"], temporal_tls_client_key_path=files["cert.pem"])
        )


def test_a_client_certificate_without_its_key_or_given_twice_is_refused(tmp_path: Path) -> None:
    files = pem_files(tmp_path)
    with pytest.raises(ConfigError, match="both a client certificate and its key"):
        connect_args(settings(temporal_tls_client_cert_path=files["cert.pem"]))
    with pytest.raises(
        ConfigError, match="set TEMPORAL_TLS_CLIENT_CERT_PATH or TEMPORAL_TLS_CLIENT_CERT_DATA, not both"
    ):
        connect_args(
            settings(
                temporal_tls_client_cert_path=files["cert.pem"],
                temporal_tls_client_cert_data=CERT.decode(),
                temporal_tls_client_key_path=files["key.pem"],
            )
        )
