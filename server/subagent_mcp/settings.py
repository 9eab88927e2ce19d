"""Typed settings read from the environment and an optional ``.env`` file.

Every variable but the two Anthropic ones carries the ``SUBAGENT_MCP_`` prefix. The API key is a
``SecretStr`` so it never prints; a missing key is reported only when a tool needs a model.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args

from dotenv import dotenv_values
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, ValidationInfo, field_validator

from .contracts import DEFAULT_FETCH_CONTENT_TOKENS, SubtaskTier
from .core.pricing import DEFAULT_PRICES, ModelPrice
from .errors import ConfigError

PREFIX = "SUBAGENT_MCP_"

# Seed tiers: the strongest current model plans and synthesises, the fast cheap one does subtasks.
# None of these may be in anthropic's deprecated list (tests/test_settings.py checks).
DEFAULT_PLANNER_MODEL = "claude-opus-5-5"
DEFAULT_SYNTHESIS_MODEL = "claude-opus-5-5"
DEFAULT_SUBAGENT_MODEL = "claude-haiku-5-5"
DEFAULT_STRONG_SUBAGENT_MODEL = "claude-sonnet-5-5"

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]

STANDARD_NAMES = (
    "TEMPORAL_ADDRESS",
    "TEMPORAL_NAMESPACE",
    # Temporal's own client variables (its CLI and SDKs' envconfig), so a team's environment for Temporal Cloud works
    "TEMPORAL_API_KEY",
    "TEMPORAL_TLS",
    "TEMPORAL_TLS_CLIENT_CERT_PATH",
    "TEMPORAL_TLS_CLIENT_CERT_DATA",
    "TEMPORAL_TLS_CLIENT_KEY_PATH",
    "TEMPORAL_TLS_CLIENT_KEY_DATA",
    "TEMPORAL_TLS_SERVER_CA_CERT_PATH",
    "TEMPORAL_TLS_SERVER_CA_CERT_DATA",
    "TEMPORAL_TLS_SERVER_NAME",
)
"""Settings read under their ecosystem's own names, without the prefix."""


def _clean_key(value: object, name: str, source: str) -> object:
    """An API key without the whitespace a copy-paste leaves around it (None if empty).

    Raises:
        ConfigError: something other than printable ASCII inside it; the message never shows the key.
    """
    raw = value.get_secret_value() if isinstance(value, SecretStr) else value
    if not isinstance(raw, str):
        return value
    key = raw.strip()
    if not all("!" <= ch <= "~" for ch in key):  # printable ASCII, no spaces: what every API key is
        raise ConfigError(  # never the key itself: this message reaches logs and terminals
            f"{name} has a space, a control character (a line break, a tab) or a non-ASCII character inside it; "
            f"copy the key again from {source} and set it once more"
        )
    return SecretStr(key) if key else None


class Settings(BaseModel):
    """Everything the server can be told; defaults are sensible for a single user on a laptop."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    anthropic_api_key: SecretStr | None = None
    anthropic_base_url: str | None = None

    planner_model: str = DEFAULT_PLANNER_MODEL
    subagent_model: str = DEFAULT_SUBAGENT_MODEL
    synthesis_model: str = DEFAULT_SYNTHESIS_MODEL
    strong_subagent_model: str = Field(
        default=DEFAULT_STRONG_SUBAGENT_MODEL, description="Strong-tier roles (coder) and agent files' model: sonnet."
    )
    deep_model: str | None = Field(
        default=None, description="Model for subtasks the plan marks tier 'deep'; None: the planner model."
    )
    role_models: dict[str, str] = Field(
        default_factory=dict[str, str], description="Per-role model override, e.g. {'coder': 'claude-sonnet-5-5'}."
    )

    escalate: bool = Field(
        default=False,
        description="Try a subtask whose output stays invalid after its repair turn once more on the next tier's "
        "model (fast, balanced, deep); a role pinned in role_models is never moved.",
    )

    agent_dirs: list[str] | None = Field(
        default=None,
        description="Folders of Claude Code agent files (Markdown + YAML front matter), earlier ones winning; "
        "None: ./.claude/agents then ~/.claude/agents.",
    )

    max_subtasks: int = Field(
        default=12, ge=1, le=20_000, description="Most subtasks the planner is asked for (plan_task, orchestrate)."
    )
    max_plan_subtasks: int = Field(
        default=500, ge=1, le=20_000, description="Largest plan execute_plan accepts, e.g. one a host wrote itself."
    )
    max_concurrency: int = Field(
        default=8, ge=1, le=1024, description="Model calls in flight at most, across every run of the process."
    )
    adaptive_concurrency: bool = Field(
        default=True,
        description="Halve the calls in flight on 429/529 and honour retry-after for all of them, then recover.",
    )
    max_output_tokens: int = Field(default=4096, ge=64, le=128_000)
    request_timeout_s: float = Field(default=120.0, gt=0)
    task_timeout_s: float = Field(default=600.0, gt=0)
    run_timeout_s: float = Field(default=3600.0, gt=0)
    max_retries: int = Field(
        default=3, ge=0, le=10, description="Retries after the first attempt, transient errors only."
    )
    retry_max_wait_s: float = Field(default=30.0, ge=0, description="Cap on one retry's wait, retry-after included.")
    tool_wait_s: float = Field(
        default=40.0, ge=0, le=3600, description="How long a run tool waits before it returns a handle to wait on."
    )
    context_budget_tokens: int = Field(default=24_000, ge=256)
    synthesis_reads: Literal["final", "all"] = Field(
        default="final",
        description="'final': the synthesizer reads whole the results no later subtask used, and the others by "
        "their summary (the subtasks that used them carry their content); 'all': every result whole.",
    )
    max_run_cost_usd: float | None = Field(
        default=5.0, gt=0, description="Per-run USD ceiling, checked before each call with its worst case."
    )
    max_run_tokens: int | None = Field(default=None, gt=0, description="Per-run ceiling on total tokens.")

    prompt_cache: bool = Field(
        default=True, description="Mark prefixes that several subtasks of a run share for the API's prompt cache."
    )
    prompt_cache_ttl: Literal["5m", "1h"] = Field(
        default="5m",
        description="Cache lifetime: 1h keeps a prefix across pauses over 5 min; writes cost 2x, not 1.25x.",
    )

    server_tools: bool = Field(
        default=True,
        description="Offer roles their API server tools (web_search, web_fetch, code_execution); off: none anywhere.",
    )

    db_path: str | None = Field(
        default=None, description="SQLite file for plans and runs (':memory:' for none); default: user data dir."
    )
    db_url: SecretStr | None = Field(
        default=None,
        description="postgresql://user:password@host:port/db: keep runs in PostgreSQL (several servers share it; "
        'needs pip install "subagent-mcp[scale]"); overrides db_path.',
    )
    lease_s: float = Field(
        default=30.0,
        ge=0.3,
        le=3600,
        description="A run is its server's while heartbeats renew this lease; past it, another server may resume it.",
    )
    prices: dict[str, ModelPrice] = Field(default_factory=lambda: dict(DEFAULT_PRICES), validate_default=True)
    log_level: LogLevel = "INFO"
    log_format: Literal["text", "json"] = Field(default="text", description="stderr log lines as text or JSON.")
    demo: bool = False

    http_token: SecretStr | None = Field(
        default=None, description="Bearer token every HTTP request must carry; required to bind a non-loopback host."
    )
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8765, ge=0, le=65535)

    # For teams (docs/scale-out.md): runs on Temporal; TEMPORAL_ADDRESS and TEMPORAL_NAMESPACE keep their own names.
    executor: Literal["embedded", "temporal"] = Field(
        default="embedded", description="Where runs execute: in this process, or as Temporal workflows on workers."
    )
    temporal_address: str = Field(default="localhost:7233", description="TEMPORAL_ADDRESS: the Temporal frontend.")
    temporal_namespace: str = Field(default="default", description="TEMPORAL_NAMESPACE.")
    temporal_task_queue: str = Field(default="subagent-mcp", min_length=1, description="Task queue of the workers.")
    temporal_heartbeat_s: float = Field(
        default=20.0, gt=0, le=600, description="A model call whose worker is silent this long is retried elsewhere."
    )
    temporal_connect_s: float = Field(default=10.0, gt=0, le=600, description="How long to try reaching Temporal.")
    temporal_api_key: SecretStr | None = Field(
        default=None, description="TEMPORAL_API_KEY: Temporal Cloud's API key; turns TLS on unless TEMPORAL_TLS=false."
    )
    temporal_tls: bool | None = Field(
        default=None,
        description="TEMPORAL_TLS: true/false; unset: on when an API key, a certificate or a server name is set.",
    )
    temporal_tls_client_cert_path: str | None = Field(default=None, description="mTLS client certificate (PEM).")
    temporal_tls_client_cert_data: str | None = Field(default=None, description="The same, as PEM text.")
    temporal_tls_client_key_path: str | None = Field(default=None, description="mTLS client private key (PEM).")
    temporal_tls_client_key_data: SecretStr | None = Field(default=None, description="The same, as PEM text.")
    temporal_tls_server_ca_cert_path: str | None = Field(
        default=None, description="CA certificate (PEM) to trust for the server; default: the system's roots."
    )
    temporal_tls_server_ca_cert_data: str | None = Field(default=None, description="The same, as PEM text.")
    temporal_tls_server_name: str | None = Field(default=None, description="TLS server name (SNI) override.")
    batch_poll_s: float = Field(
        default=30.0, gt=0, le=3600, description="Batch mode: how often a Message Batch in flight is polled."
    )
    batch_gather_s: float = Field(
        default=2.0,
        ge=0,
        le=600,
        description="Batch mode: most seconds a ready subtask waits for others to join its batch.",
    )
    web_fetch_max_content_tokens: int = Field(
        default=DEFAULT_FETCH_CONTENT_TOKENS,
        ge=100,
        le=1_000_000,
        description="web_fetch's max_content_tokens: a fetched page's text is cut to about this many tokens; "
        "budgets reserve it for each of a call's fetches.",
    )

    @field_validator("prices")
    @classmethod
    def _price_cache_writes(cls, prices: dict[str, ModelPrice], info: ValidationInfo) -> dict[str, ModelPrice]:
        """Cache writes cost more with the 1-hour TTL: price them at each model's 1-hour rate."""
        ttl = info.data.get("prompt_cache_ttl", "5m")
        return {model: p.for_ttl(ttl) for model, p in prices.items()}

    @field_validator("anthropic_api_key", mode="before")
    @classmethod
    def _clean_api_key(cls, value: object) -> object:
        """Strip the whitespace a copy-paste leaves around the key; refuse one with anything odd inside it."""
        return _clean_key(value, "ANTHROPIC_API_KEY", "the Anthropic Console")

    @field_validator("temporal_api_key", mode="before")
    @classmethod
    def _clean_temporal_api_key(cls, value: object) -> object:
        """Strip a copy-paste's whitespace; refuse a key with a line break inside (it goes in a gRPC header)."""
        return _clean_key(value, "TEMPORAL_API_KEY", "Temporal Cloud")

    @field_validator("db_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        """Only PostgreSQL URLs: anything else would be taken for a SQLite file name."""
        if value is None or not value.get_secret_value().strip():
            return None
        if not value.get_secret_value().strip().startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql://user:password@host:port/database URL (SQLite: use DB_PATH)")
        return SecretStr(value.get_secret_value().strip())

    @field_validator("anthropic_base_url")
    @classmethod
    def _strip_base_url(cls, value: str | None) -> str | None:
        return value.rstrip("/") or None if value else None

    def model_for_role(
        self,
        role: str,
        role_default_tier: Literal["fast", "strong"] = "fast",
        role_model: str | None = None,
        tier: SubtaskTier | None = None,
    ) -> str:
        """The model a subagent of ``role`` uses, first match wins: SUBAGENT_MCP_ROLE_MODELS for the role,
        the subtask's ``tier``, the role's own model (an agent file's), then the role's default tier's model."""
        if role in self.role_models:
            return self.role_models[role]
        if tier is not None:
            return self.model_for_tier(tier)
        if role_model is not None:
            return role_model
        return self.subagent_model if role_default_tier == "fast" else self.strong_subagent_model

    def model_for_tier(self, tier: SubtaskTier) -> str:
        """fast: the subagent model; balanced: the strong subagent model; deep: the deep model (else the planner's)."""
        if tier == "fast":
            return self.subagent_model
        if tier == "balanced":
            return self.strong_subagent_model
        return self.deep_model or self.planner_model

    def require_api_key(self) -> SecretStr:
        """The API key, or a ``ConfigError`` that says which variable to set and where."""
        if self.anthropic_api_key is None or not self.anthropic_api_key.get_secret_value().strip():
            raise ConfigError(
                "ANTHROPIC_API_KEY is not set. Put it in the server's environment: in Claude Desktop, the "
                '"env" block of this server in claude_desktop_config.json; in Claude Code, '
                "`claude mcp add ... -e ANTHROPIC_API_KEY=...`; from a shell, export it or add it to a .env "
                "file in the working directory. Or start with --demo to try the server without a key."
            )
        return self.anthropic_api_key

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, env_file: str | Path | None = ".env", **overrides: Any
    ) -> Settings:
        """Read settings from ``environ`` (default ``os.environ``) over values in ``env_file``.

        Raises:
            ConfigError: a variable has a value that cannot be used; the message names it.
        """
        values: dict[str, str] = {}
        if env_file is not None and Path(env_file).is_file():
            values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
        values.update(os.environ if environ is None else environ)

        data: dict[str, Any] = {}
        for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", *STANDARD_NAMES):
            if values.get(name):
                data[name.lower()] = values[name]
        json_fields = {"role_models", "prices"}
        for field, info in cls.model_fields.items():
            raw = values.get(PREFIX + field.upper())
            if raw is None or field.startswith("anthropic_") or field.upper() in STANDARD_NAMES:
                continue
            if field in json_fields:
                data[field] = _parse_json_setting(PREFIX + field.upper(), raw)
            elif field == "agent_dirs":  # a path list like PATH; empty (or none/off) loads no agent files
                off = raw.strip().lower() in {"none", "off"}
                data[field] = [] if off else [part for part in raw.split(os.pathsep) if part.strip()]
            elif raw.strip().lower() in {"", "none", "off"} and type(None) in get_args(info.annotation):
                data[field] = None
            else:
                data[field] = raw
        if "prices" in data:
            data["prices"] = {**DEFAULT_PRICES, **data["prices"]}
        data.update(overrides)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{_variable(str(err['loc'][0]))}: {err['msg']}" for err in exc.errors(include_input=False)
            )
            raise ConfigError(f"invalid setting(s): {problems}") from None


def _variable(field: str) -> str:
    """The environment variable that sets ``field``."""
    return field.upper() if field.upper() in STANDARD_NAMES else PREFIX + field.upper()


def _parse_json_setting(name: str, raw: str) -> Any:
    """Accept JSON, or ``key=value,key=value`` for simple string maps."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        pairs = [part.split("=", 1) for part in raw.split(",") if part.strip()]
        if all(len(p) == 2 for p in pairs):
            return {k.strip(): v.strip() for k, v in pairs}
        raise ConfigError(f"{name} must be JSON or key=value pairs separated by commas") from None
