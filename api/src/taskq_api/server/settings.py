"""The API server's settings: TASKQ_API_* environment variables, overridden by flags (built in
main and passed in, never read at import)."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "TASKQ_API_"
# A session secret shorter than this is guessable offline from one signed cookie.
MIN_SESSION_SECRET = 32


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", frozen=True, populate_by_name=True
    )

    dsn: SecretStr = Field(
        validation_alias=AliasChoices("TASKQ_API_DSN", "TASKQ_DSN"),
        description="PostgreSQL DSN (TASKQ_API_DSN, else TASKQ_DSN as the other commands read)",
    )
    host: str = Field(
        default="127.0.0.1", description="bind address (0.0.0.0 to serve other hosts)"
    )
    port: int = Field(default=8000, ge=1, le=65535, description="HTTP port")
    grpc_port: int = Field(
        default=9090, ge=0, le=65535, description="gRPC port, on the same host; 0: no gRPC"
    )
    max_body_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1024,
        description="largest request body or gRPC message; over it, 413 or RESOURCE_EXHAUSTED "
        "(a batch of 10,000 small tasks is ~1 MiB)",
    )
    max_header_bytes: int = Field(
        default=16 * 1024,
        ge=1024,
        description="largest request line plus headers, or gRPC metadata",
    )
    max_wait_seconds: float = Field(
        default=60.0,
        gt=0,
        le=600,
        description="longest ?wait= of GET /v1/tasks/{id} (gRPC: GetTask's wait_seconds)",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default=[],
        description="origins allowed to call from a browser (comma-separated in the "
        "variable); none: CORS off",
    )
    # uvicorn's own default, made a setting so that a deployment names its proxies: only
    # these may say, by X-Forwarded-Proto and -For, that a request came over HTTPS and from
    # whom (the session cookie is Secure over HTTPS; docs/dashboard.md).
    forwarded_allow_ips: Annotated[list[str], NoDecode] = Field(
        default=["127.0.0.1", "::1"],
        description="addresses or networks (CIDR) of the proxies trusted to set "
        "X-Forwarded-Proto and X-Forwarded-For (comma-separated in the variable), e.g. a "
        "TLS-terminating Ingress's pod network; '*': any (only when nothing else can reach "
        "the server)",
    )
    pool_size: int = Field(default=10, ge=1, le=1000, description="database connections at most")
    # Off by default: a useful limit sits below what the server can take divided among the
    # keys that share it, which only the deployment knows (docs/api.md, "Request rate").
    rate_limit: float = Field(
        default=0.0,
        ge=0,
        allow_inf_nan=False,
        description="requests a second each API key may send to this process (429 over it); "
        "0: no limit",
    )
    rate_burst: int | None = Field(
        default=None,
        ge=1,
        description="requests a key may send at once, saved up while it sends fewer than "
        "rate_limit; default: one second's worth",
    )
    key_cache_seconds: float = Field(
        default=1.0,
        ge=0,
        le=60,
        allow_inf_nan=False,
        description="seconds an authenticated key is remembered: a key revoked or narrowed "
        "is honoured as it was for up to this long; 0: every request reads its key",
    )
    shutdown_grace: float = Field(
        default=10.0, ge=0, description="SIGTERM: seconds to finish requests and calls in flight"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="least level of the JSON log lines on stderr"
    )
    dashboard: bool = Field(
        default=False,
        description="serve the dashboard at /dashboard/ on the HTTP port (docs/dashboard.md); "
        "needs TASKQ_API_SESSION_SECRET",
    )
    # Required rather than generated: a per-process secret would log users out at each restart,
    # and at random behind a load balancer (one replica cannot read another's cookies).
    session_secret: SecretStr | None = Field(
        default=None,
        validate_default=True,
        description="signs the dashboard's session cookies: 32 or more characters, the same "
        "on every server behind one address (e.g. `openssl rand -base64 32`)",
    )

    @field_validator("rate_burst")
    @classmethod
    def _burst_needs_a_rate(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and not info.data.get("rate_limit"):
            raise PydanticCustomError(
                "burst_without_rate",
                "a burst without a rate limits nothing: set TASKQ_API_RATE_LIMIT "
                "(--rate-limit) too, or leave the burst out",
            )
        return value

    @field_validator("session_secret")
    @classmethod
    def _secret_for_dashboard(
        cls, value: SecretStr | None, info: ValidationInfo
    ) -> SecretStr | None:
        if value is None and info.data.get("dashboard"):
            raise PydanticCustomError(
                "session_secret_missing",
                "required when the dashboard is on (TASKQ_API_DASHBOARD): set it to 32 or more "
                "random characters, the same on every server, e.g. `openssl rand -base64 32`",
            )
        if value is not None and len(value.get_secret_value()) < MIN_SESSION_SECRET:
            raise PydanticCustomError(
                "session_secret_short",
                "{length} characters: use {least} or more random characters, e.g. "
                "`openssl rand -base64 32`",
                {"length": len(value.get_secret_value()), "least": MIN_SESSION_SECRET},
            )
        return value

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _proxies(cls, value: list[str]) -> list[str]:
        # uvicorn takes a malformed entry as a literal name that never matches: say so here
        if "*" in value and len(value) > 1:
            raise PydanticCustomError(
                "forwarded_any_and_more",
                "'*' trusts any address: give it alone, or list the proxies instead",
            )
        for entry in value:
            if entry == "*":
                continue
            try:
                if "/" in entry:
                    ipaddress.ip_network(entry)
                else:
                    ipaddress.ip_address(entry)
            except ValueError:
                raise PydanticCustomError(
                    "forwarded_not_an_address",
                    "{entry} is not an IP address or network: write e.g. 10.0.0.7, "
                    "10.244.0.0/16 or fd00::/8 (a host name is not resolved)",
                    {"entry": repr(entry[:60])},
                ) from None
        return value

    @field_validator("cors_origins", "forwarded_allow_ips", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value
