"""Settings, read from `NEXUS_*` environment variables and validated per environment.

Only composition roots (web/app.py, agents/app.py, the CLI) call `load_settings()`;
everything else receives a `Settings` instance.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from nexus import secret_rules


class Env(StrEnum):
    LOCAL = "local"
    TEST = "test"
    STAGING = "staging"
    PROD = "prod"


class SettingsError(Exception):
    """Raised when the environment does not describe a runnable configuration."""


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _missing(*checks: tuple[str, bool]) -> list[str]:
    """The variable names whose check failed, in order (for one refusal naming them all)."""
    return [name for name, present in checks if not present]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NEXUS_", extra="ignore", frozen=True)

    env: Env = Env.LOCAL
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/nexus"
    database_pool_size: int = Field(default=10, ge=1, le=200)
    kafka_bootstrap: str = "127.0.0.1:9092"
    topic_prefix: str = "nexus."
    topic_partitions: int = Field(default=8, ge=1, le=1024)
    topic_replication_factor: int = Field(default=1, ge=1, le=16)
    internal_secret: SecretStr | None = None
    jwt_hs256_secret: SecretStr | None = None
    jwks_url: str | None = None
    jwt_issuer: str = "nexus"
    jwt_audiences: Annotated[list[str], NoDecode] = ["authenticated"]
    jwks_cache_seconds: int = Field(default=300, ge=0)
    # While the identity provider is unreachable, cached keys stay usable this long after
    # their last successful fetch; then user requests get 503 E_AUTH_UNAVAILABLE.
    jwks_max_stale_seconds: int = Field(default=86400, ge=0)
    storage_dir: Path = Path("./var/storage")
    backfill_retry_delays: Annotated[tuple[float, ...], NoDecode] = (60, 300, 900, 3600, 21600)
    ingest_retry_delays: Annotated[tuple[float, ...], NoDecode] = (30, 120, 600)
    lease_seconds: float = Field(default=300, gt=0)
    # Media per backfill chunk (one transaction each; revocation wins between chunks).
    backfill_chunk_size: int = Field(default=5000, ge=1, le=100_000)
    # Background operations (bulk requeue): retry schedule of a failed attempt, and the
    # most jobs one step handles (one transaction, one progress update; docs/operations.md).
    operation_retry_delays: Annotated[tuple[float, ...], NoDecode] = (5, 30, 120)
    operation_chunk_size: int = Field(default=200, ge=1, le=10_000)
    fetch_allow_hosts: Annotated[list[str], NoDecode] = []
    fetch_allowed_ports: Annotated[list[int], NoDecode] = [80, 443]
    rate_limit_ingest_per_minute: int = Field(default=60, ge=1)
    # Pre-signed upload/download URLs (docs/uploads.md). Mandatory in staging/prod; in
    # local/test a key is derived from NEXUS_INTERNAL_SECRET (or a fixed dev key).
    upload_signing_key: SecretStr | None = None
    upload_url_ttl_seconds: int = Field(default=900, ge=10, le=7 * 86400)
    download_url_ttl_seconds: int = Field(default=900, ge=10, le=7 * 86400)
    # Base URL clients reach the API at; when set, pre-signed URLs are absolute.
    public_api_url: str | None = None
    # Fetcher total deadline (SPEC §8: 30 s); tests shorten it.
    fetch_timeout_seconds: float = Field(default=30.0, gt=0)
    # GET /media/{id}/events: safety re-read of the row and keep-alive comment intervals.
    media_events_reread_seconds: float = Field(default=15.0, gt=0)
    media_events_keepalive_seconds: float = Field(default=15.0, gt=0)
    # Ingest messages one agents worker handles at once: while one document is in the
    # extraction pool, others fetch or write, so the pool always has the next one queued.
    ingest_concurrency: int = Field(default=8, ge=1, le=64)
    # Extraction runs in this many worker processes per agents worker (nexus/ingest/
    # extraction_pool.py), each document within the time and address-space limits below.
    ingest_extract_processes: int = Field(default=1, ge=1, le=64)
    ingest_extract_timeout_seconds: float = Field(default=120.0, gt=0)
    ingest_extract_memory_mb: int = Field(default=2048, ge=0)
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=0, le=65535)
    # Hypercorn worker processes; unset: one per core in staging/prod, 1 in local/test.
    api_workers: int | None = Field(default=None, ge=1, le=256)
    # Server-side deadline of one request's handler (docs/security.md: SSE and the
    # pre-signed upload PUT have their own bounds) → 503.
    request_timeout_seconds: float = Field(default=30.0, gt=0)
    # GET /media/{id}/events: concurrent streams per user (per API process) and the
    # longest a stream lasts before its final `end` event.
    sse_max_streams_per_user: int = Field(default=10, ge=1)
    sse_max_seconds: float = Field(default=600.0, gt=0)
    agents_web_host: str = "127.0.0.1"
    agents_web_port: int = Field(default=6066, ge=0, le=65535)
    agents_worker_id: str | None = None
    # Worker liveness and self-healing (SPEC §10 "Workers"; docs/operations.md §8).
    worker_heartbeat_seconds: float = Field(default=5.0, gt=0)
    drain_seconds: float = Field(default=30.0, ge=0)
    stall_seconds: float = Field(default=60.0, gt=0)
    # Test-only fault injection into an agents worker (refused outside NEXUS_ENV=test):
    # `block-loop:<seconds>`, `stall-consumer` or `stall-rebalance`; with `test_fault_once_file`
    # the fault fires only in the first worker that creates that file.
    test_fault: str | None = None
    test_fault_once_file: str | None = None
    # Outbox relay: rows older than this many seconds are re-published by the agents' leader.
    outbox_relay_after_seconds: float = Field(default=5.0, ge=0)
    outbox_relay_interval_seconds: float = Field(default=1.0, gt=0)
    outbox_relay_batch: int = Field(default=500, ge=1)
    # A row the broker refuses backs off exponentially (base doubling up to the cap) and is
    # parked after this many failed publishes (docs/operations.md "Outbox").
    # Database-derived Prometheus gauges are re-read at most this often (a scrape never
    # costs more than one refresh; runtime/db_gauges.py).
    metrics_db_cache_seconds: float = Field(default=5.0, ge=0)
    outbox_max_attempts: int = Field(default=10, ge=1)
    outbox_backoff_base_seconds: float = Field(default=1.0, gt=0)
    outbox_backoff_max_seconds: float = Field(default=300.0, gt=0)
    publish_timeout_seconds: float = Field(default=5.0, gt=0)
    # Signed webhooks (SPEC §10; docs/webhooks.md): a failed delivery (network error, 5xx,
    # 429) waits base x 2^(attempt-1) seconds, capped (60 s ... 8 h: 12 attempts span ~24 h),
    # or what `Retry-After` asks (up to the cap); after the last attempt it is `dead`.
    webhook_max_attempts: int = Field(default=12, ge=1, le=100)
    webhook_backoff_base_seconds: float = Field(default=60.0, gt=0)
    webhook_backoff_max_seconds: float = Field(default=28800.0, gt=0)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    webhook_interval_seconds: float = Field(default=1.0, gt=0)
    webhook_batch: int = Field(default=50, ge=1, le=1000)
    # Scheduler and lease rescue (leader-only timers in the agents).
    scheduler_interval_seconds: float = Field(default=2.0, gt=0)
    scheduler_redeliver_after_seconds: float = Field(default=300.0, gt=0)
    rescue_interval_seconds: float = Field(default=5.0, gt=0)
    # Backlog health (SPEC §7 guardrails): degraded above either threshold; alerting once
    # degraded has lasted `backlog_alert_after_seconds` (see docs/operations.md).
    backlog_degraded_pending_count: int = Field(default=500, ge=0)
    backlog_degraded_p95_seconds: float = Field(default=900.0, ge=0)
    backlog_alert_after_seconds: float = Field(default=900.0, ge=0)
    prune_interval_seconds: float = Field(default=600.0, gt=0)
    # Consumer liveness; tests shorten these to fail over quickly.
    kafka_session_timeout_seconds: float = Field(default=30.0, gt=0)
    kafka_heartbeat_seconds: float = Field(default=3.0, gt=0)
    # How long the agents' consumer lets the broker hold an empty fetch. It bounds the
    # pickup latency of a message on an idle worker where the broker does not answer a
    # waiting fetch when data arrives (Tansu, with several partitions: docs/ingestion.md).
    kafka_fetch_max_wait_ms: int = Field(default=100, ge=1, le=30_000)
    log_level: str = "INFO"
    log_json: bool = True
    # Kafka security (SPEC §10, docs/operations.md "Locking Kafka down"): used by every
    # producer, consumer and admin client, the agents' Faust app included.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    # Storage quota (docs/uploads.md): the declared sizes of a user's uploads (files kept
    # plus uploads in flight) may not exceed this; counted at upload init.
    storage_quota_bytes_per_user: int = Field(default=1024**3, ge=0)
    # An upload not completed within its URL lifetime plus this grace is removed with its
    # media by the agents' leader (`upload_cleanup_interval_seconds` between sweeps).
    upload_cleanup_grace_seconds: float = Field(default=3600.0, ge=0)
    upload_cleanup_interval_seconds: float = Field(default=300.0, gt=0)
    # Per operator key, per minute (docs/operations.md "Operator keys"), by the key's role.
    operator_rate_limit_viewer_per_minute: int = Field(default=600, ge=1)
    operator_rate_limit_operator_per_minute: int = Field(default=300, ge=1)
    operator_rate_limit_admin_per_minute: int = Field(default=300, ge=1)
    # OpenTelemetry's standard variable (no NEXUS_ prefix): the OTLP/HTTP base URL
    # (spans go to <url>/v1/traces). Unset: no tracing, no exporter.
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None,
        validation_alias=AliasChoices("otel_exporter_otlp_endpoint", "OTEL_EXPORTER_OTLP_ENDPOINT"),
    )

    @field_validator(
        "jwt_audiences",
        "fetch_allow_hosts",
        "fetch_allowed_ports",
        "backfill_retry_delays",
        "ingest_retry_delays",
        "operation_retry_delays",
        mode="before",
    )
    @classmethod
    def _csv_list(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("backfill_retry_delays", "ingest_retry_delays", "operation_retry_delays")
    @classmethod
    def _delays_non_negative(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or any(d < 0 for d in value):
            raise ValueError("must be a non-empty comma list of non-negative seconds")
        return value

    @field_validator("database_url")
    @classmethod
    def _asyncpg_url(cls, value: str) -> str:
        if not value.startswith("postgresql+asyncpg://"):
            raise ValueError("must start with postgresql+asyncpg://")
        return value

    @field_validator("topic_prefix")
    @classmethod
    def _prefix_shape(cls, value: str) -> str:
        if value and not value.endswith("."):
            raise ValueError("must end with '.' (e.g. 'nexus.')")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @field_validator("jwks_url", "otel_exporter_otlp_endpoint")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return value

    @model_validator(mode="after")
    def _kafka_security(self) -> Self:
        sasl = self.kafka_security_protocol.startswith("SASL_")
        tls = self.kafka_security_protocol.endswith("SSL")
        if sasl:
            missing = _missing(
                ("NEXUS_KAFKA_SASL_MECHANISM", self.kafka_sasl_mechanism is not None),
                ("NEXUS_KAFKA_SASL_USERNAME", bool(self.kafka_sasl_username)),
                (
                    "NEXUS_KAFKA_SASL_PASSWORD",
                    self.kafka_sasl_password is not None
                    and bool(self.kafka_sasl_password.get_secret_value()),
                ),
            )
            if missing:
                raise ValueError(
                    f"NEXUS_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} "
                    f"requires {', '.join(missing)}"
                )
        elif (
            self.kafka_sasl_mechanism is not None
            or self.kafka_sasl_username is not None
            or self.kafka_sasl_password is not None
        ):
            raise ValueError(
                "NEXUS_KAFKA_SASL_* are set but NEXUS_KAFKA_SECURITY_PROTOCOL is "
                f"{self.kafka_security_protocol} (use SASL_PLAINTEXT or SASL_SSL)"
            )
        if self.kafka_ssl_cafile is not None:
            if not tls:
                raise ValueError(
                    "NEXUS_KAFKA_SSL_CAFILE is set but NEXUS_KAFKA_SECURITY_PROTOCOL is "
                    f"{self.kafka_security_protocol} (use SSL or SASL_SSL)"
                )
            if not self.kafka_ssl_cafile.is_file():
                raise ValueError(f"NEXUS_KAFKA_SSL_CAFILE {self.kafka_ssl_cafile} is not a file")
        return self

    def operator_rate_limit(self, role: str) -> int:
        """Requests per minute allowed to one operator key of `role`."""
        return {
            "viewer": self.operator_rate_limit_viewer_per_minute,
            "operator": self.operator_rate_limit_operator_per_minute,
            "admin": self.operator_rate_limit_admin_per_minute,
        }[role]

    @model_validator(mode="after")
    def _per_environment(self) -> Self:
        if self.internal_secret is not None and not self.internal_secret.get_secret_value().strip():
            raise ValueError("NEXUS_INTERNAL_SECRET must not be empty when set")
        if self.env in (Env.STAGING, Env.PROD):
            self._production_requirements()
        self._exposed_api_requirements()
        return self

    @model_validator(mode="after")
    def _faults_only_in_tests(self) -> Self:
        if self.test_fault is not None and self.env is not Env.TEST:
            raise ValueError("NEXUS_TEST_FAULT is refused outside NEXUS_ENV=test")
        return self

    def _production_requirements(self) -> None:
        """staging/prod fail closed (docs/security.md): every refusal names its variable."""
        missing = _missing(
            ("NEXUS_INTERNAL_SECRET", self.internal_secret is not None),
            ("NEXUS_JWKS_URL", bool(self.jwks_url)),
            ("NEXUS_DATABASE_URL", "database_url" in self.model_fields_set),
            ("NEXUS_UPLOAD_SIGNING_KEY", self.upload_signing_key is not None),
            ("NEXUS_JWT_ISSUER", "jwt_issuer" in self.model_fields_set),
        )
        if missing:
            raise ValueError(f"{self.env.value} requires {', '.join(missing)}")
        if self.jwt_hs256_secret is not None:
            raise ValueError("NEXUS_JWT_HS256_SECRET is for local/test only")
        if not str(self.jwks_url).startswith("https://"):
            raise ValueError(f"NEXUS_JWKS_URL must be https:// in {self.env.value}")
        if not self.jwt_audiences:
            raise ValueError(f"NEXUS_JWT_AUDIENCES must not be empty in {self.env.value}")
        if self.fetch_allow_hosts:
            raise ValueError(
                f"NEXUS_FETCH_ALLOW_HOSTS is for tests only; unset it in {self.env.value}"
            )
        for name, value, minimum in (
            ("NEXUS_INTERNAL_SECRET", self.internal_secret, 16),
            ("NEXUS_UPLOAD_SIGNING_KEY", self.upload_signing_key, 32),
        ):
            secret = value.get_secret_value() if value is not None else ""
            if len(secret.strip()) < minimum:
                raise ValueError(f"{name} must be at least {minimum} characters")
            reason = secret_rules.weakness(secret)
            if reason is not None:
                raise ValueError(f"{name} {reason}")
        password = urlsplit(self.database_url).password
        if password is not None and (
            password.lower() in secret_rules.DEFAULT_PASSWORDS
            or secret_rules.is_placeholder(password)
        ):
            raise ValueError("NEXUS_DATABASE_URL has a default or placeholder password")

    def _exposed_api_requirements(self) -> None:
        """In any environment: an API reachable from other hosts needs the BFF secret and
        its own URL-signing key (the derived development key would be forgeable)."""
        if secret_rules.is_loopback(self.api_host):
            return
        missing = _missing(
            ("NEXUS_INTERNAL_SECRET", self.internal_secret is not None),
            ("NEXUS_UPLOAD_SIGNING_KEY", self.upload_signing_key is not None),
        )
        if missing:
            raise ValueError(
                f"NEXUS_API_HOST={self.api_host} is not a loopback address: "
                f"it requires {' and '.join(missing)}"
            )

    @property
    def upload_signing_key_bytes(self) -> bytes:
        """The HMAC key of pre-signed URLs. Outside staging/prod without an explicit key it
        is derived from the internal secret (shared by every API process of a deployment)
        or, with neither, a fixed development key."""
        if self.upload_signing_key is not None:
            return self.upload_signing_key.get_secret_value().encode()
        seed = self.internal_secret.get_secret_value() if self.internal_secret else "nexus-dev"
        return hmac.new(seed.encode(), b"nexus-upload-signing-v1", hashlib.sha256).digest()

    @property
    def api_worker_count(self) -> int:
        if self.api_workers is not None:
            return self.api_workers
        if self.env in (Env.STAGING, Env.PROD):
            return os.cpu_count() or 1
        return 1

    @property
    def backfill_max_attempts(self) -> int:
        return len(self.backfill_retry_delays) + 1

    @property
    def ingest_max_attempts(self) -> int:
        return len(self.ingest_retry_delays) + 1

    @property
    def faust_app_id(self) -> str:
        return f"{self.topic_prefix}agents"


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment; raise `SettingsError` with a readable reason."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        reasons = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in exc.errors()
        )
        raise SettingsError(f"invalid Nexus configuration: {reasons}") from None
