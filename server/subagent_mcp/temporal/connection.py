"""How servers and workers reach Temporal: address, namespace, TLS and API key, from Temporal's own variables.

The names and their meaning are those of Temporal's CLI and SDK envconfig (``TEMPORAL_API_KEY``,
``TEMPORAL_TLS``, ``TEMPORAL_TLS_CLIENT_CERT_PATH``...), so a team's environment for Temporal Cloud works
unchanged: an API key or any TLS file turns TLS on unless ``TEMPORAL_TLS=false``. Certificate files are read
and checked here, before any connection attempt, so a wrong path is named instead of failing a handshake.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import SecretStr

from ..errors import ConfigError
from ..redact import all_forms, redact
from ..settings import Settings

if TYPE_CHECKING:
    from temporalio.service import TLSConfig


@dataclass(frozen=True)
class TLSOptions:
    """TLS towards Temporal: the PEM bytes to use (None: the SDK's default, the system's roots, no client cert)."""

    server_root_ca_cert: bytes | None = None
    domain: str | None = None
    client_cert: bytes | None = None
    client_private_key: bytes | None = field(default=None, repr=False)

    def for_sdk(self) -> TLSConfig:
        from temporalio.service import TLSConfig

        return TLSConfig(
            server_root_ca_cert=self.server_root_ca_cert,
            domain=self.domain,
            client_cert=self.client_cert,
            client_private_key=self.client_private_key,
        )


@dataclass(frozen=True)
class ConnectArgs:
    """What ``Client.connect`` is given: built once from the settings, by servers and workers alike."""

    target_host: str
    namespace: str
    tls: TLSOptions | None
    """None: plaintext (a local dev server); else TLS with these options."""
    api_key: SecretStr | None = None

    def where(self) -> str:
        """Temporal as messages name it (never the key): address, namespace, and whether TLS is on."""
        security = "TLS" if self.tls is not None else "no TLS"
        if self.api_key is not None:
            security += ", API key"
        return f"Temporal at {self.target_host} (namespace {self.namespace!r}, {security})"

    def secrets(self) -> list[str]:
        """Every form of the API key, to redact from the SDK's error texts."""
        return all_forms([self.api_key.get_secret_value()]) if self.api_key is not None else []


@dataclass(frozen=True)
class _Source:
    """One PEM input: the path variable and the data variable that may give it, and the PEM label it must carry."""

    what: str
    path_var: str
    data_var: str
    label: str


CLIENT_CERT = _Source(
    "client certificate", "TEMPORAL_TLS_CLIENT_CERT_PATH", "TEMPORAL_TLS_CLIENT_CERT_DATA", "CERTIFICATE"
)
CLIENT_KEY = _Source("client key", "TEMPORAL_TLS_CLIENT_KEY_PATH", "TEMPORAL_TLS_CLIENT_KEY_DATA", "PRIVATE KEY")
SERVER_CA = _Source(
    "server CA certificate", "TEMPORAL_TLS_SERVER_CA_CERT_PATH", "TEMPORAL_TLS_SERVER_CA_CERT_DATA", "CERTIFICATE"
)


def connect_args(settings: Settings) -> ConnectArgs:
    """The connect arguments ``settings`` describe, their certificate files read and checked.

    TLS is on when ``TEMPORAL_TLS`` says so, or, when it is unset, when an API key, a certificate or a server
    name is given (as Temporal's envconfig decides; Temporal Cloud needs TLS with its API keys).

    Raises:
        ConfigError: a certificate or key is missing, unreadable or not PEM, given twice, or a client
            certificate comes without its key (or the reverse); the message names the variable and the path.
    """
    s = settings
    key_data = s.temporal_tls_client_key_data.get_secret_value() if s.temporal_tls_client_key_data else None
    given = {
        CLIENT_CERT: (s.temporal_tls_client_cert_path, s.temporal_tls_client_cert_data),
        CLIENT_KEY: (s.temporal_tls_client_key_path, key_data),
        SERVER_CA: (s.temporal_tls_server_ca_cert_path, s.temporal_tls_server_ca_cert_data),
    }
    tls_asked = any(path or data for path, data in given.values()) or bool(s.temporal_tls_server_name)
    tls_on = s.temporal_tls if s.temporal_tls is not None else (s.temporal_api_key is not None or tls_asked)
    if not tls_on:
        return ConnectArgs(s.temporal_address, s.temporal_namespace, None, s.temporal_api_key)
    pems = {source: _pem(source, *pair) for source, pair in given.items()}
    if (pems[CLIENT_CERT] is None) != (pems[CLIENT_KEY] is None):
        raise ConfigError(
            "mTLS needs both a client certificate and its key: set TEMPORAL_TLS_CLIENT_CERT_PATH and "
            "TEMPORAL_TLS_CLIENT_KEY_PATH together (or the _DATA variables)"
        )
    tls = TLSOptions(
        server_root_ca_cert=pems[SERVER_CA],
        domain=s.temporal_tls_server_name or None,
        client_cert=pems[CLIENT_CERT],
        client_private_key=pems[CLIENT_KEY],
    )
    return ConnectArgs(s.temporal_address, s.temporal_namespace, tls, s.temporal_api_key)


def _pem(source: _Source, path: str | None, data: str | None) -> bytes | None:
    """The PEM bytes of one input, from its file or its text; None if neither is set."""
    if path and data:
        raise ConfigError(f"set {source.path_var} or {source.data_var}, not both")
    if data:
        if not _is_pem(data.encode(), source.label):
            raise ConfigError(f"{source.data_var} is not a PEM {source.what} (-----BEGIN ...{source.label}-----)")
        return data.encode()
    if not path:
        return None
    file = Path(path).expanduser()
    try:
        content = file.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{source.path_var}={path}: no such file (the {source.what} for Temporal's TLS)") from None
    except OSError as exc:  # a folder, no permission
        raise ConfigError(f"{source.path_var}={path}: cannot read the {source.what} ({exc.strerror})") from None
    if not _is_pem(content, source.label):
        raise ConfigError(
            f"{source.path_var}={path} is not a PEM {source.what} (a text file with a "
            f"-----BEGIN ...{source.label}----- block)"
        )
    return content


def _is_pem(content: bytes, label: str) -> bool:
    """Whether ``content`` holds a PEM block whose label ends with ``label`` (CERTIFICATE; RSA/EC PRIVATE KEY)."""
    text = content.decode("ascii", "replace")
    return (
        re.search(rf"-----BEGIN [A-Z0-9 ]*{label}-----.+-----END [A-Z0-9 ]*{label}-----", text, re.DOTALL) is not None
    )


def connect_timeout(args: ConnectArgs, seconds: float) -> str:
    """Temporal did not answer in time: what to start or set."""
    tls = "TEMPORAL_TLS=false" if args.tls is not None else "TEMPORAL_TLS=true (or TEMPORAL_API_KEY)"
    return (
        f"{args.where()} did not answer within {seconds:g} s. Start it (for a try: `temporal server start-dev`), "
        f"or point TEMPORAL_ADDRESS at it; if it serves {'plaintext' if args.tls is not None else 'TLS'}, set "
        f"{tls}. SUBAGENT_MCP_EXECUTOR=embedded runs plans here."
    )


def connect_failure(args: ConnectArgs, exc: BaseException) -> str:
    """Why connecting failed, the SDK's reason (its key redacted) and what to check, TLS first when it is on."""
    reason = redact(f"{type(exc).__name__}: {str(exc)[:300]}", args.secrets())
    if args.tls is not None:
        return (
            f"{args.where()} could not be reached over TLS ({reason}). Check the TLS setting: TEMPORAL_TLS=false "
            "for a server without TLS (such as `temporal server start-dev`; an API key turns TLS on unless "
            "TEMPORAL_TLS=false), and the certificates and TEMPORAL_TLS_SERVER_NAME for one with it; or point "
            "TEMPORAL_ADDRESS at the right server. SUBAGENT_MCP_EXECUTOR=embedded runs plans in this process."
        )
    return (
        f"{args.where()} could not be reached ({reason}). Start it, or point TEMPORAL_ADDRESS at it (a server "
        "that requires TLS, such as Temporal Cloud, needs TEMPORAL_TLS=true or TEMPORAL_API_KEY); "
        "SUBAGENT_MCP_EXECUTOR=embedded runs plans in this process."
    )
