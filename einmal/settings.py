"""Settings: one frozen struct, built from CLI options and ``EINMAL_*`` environment variables.

Nothing is loaded at import time; ``load_settings`` is called by the CLI (or a test) and the
result is passed into the app factory.
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec

__all__ = ["COMPONENTS", "Settings", "SettingsError", "load_settings"]

COMPONENTS = frozenset({"broker", "cockpit", "registers"})


class SettingsError(ValueError):
    """A setting has a bad value; the message names the setting."""


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path(".einmal")
    #: None: one SQLite file per component in ``data_dir``. A URL (sqlite or postgresql)
    #: is shared by all components; their tables carry a component prefix.
    database_url: str | None = None
    #: Optional read replica for citizen queries (cockpit); writes always go to database_url.
    read_database_url: str | None = None
    components: frozenset[str] = COMPONENTS
    demo: bool = False
    #: Base URL clients use to reach this process (default ``http://host:port``).
    public_url: str | None = None
    #: Where the other components live when they run as separate processes.
    broker_url: str | None = None
    cockpit_url: str | None = None
    registers_url: str | None = None
    policies_dir: Path | None = None
    #: Citizen identity provider (OIDC issuer) and its public JWK set file. In demo mode the
    #: built-in demo identity provider is used when these are not set.
    citizen_issuer: str | None = None
    citizen_keys_file: Path | None = None
    #: ... or the identity provider's JWK set URL (fetched on first use, refreshed on an
    #: unknown key id), the audience its access tokens carry, and the IdNr claim's name.
    citizen_keys_url: str | None = None
    citizen_audience: str = "einmal-citizen"
    citizen_idnr_claim: str = "idnr"
    #: The citizen web view (cockpit) logs in with OpenID Connect (authorization code + PKCE).
    #: Demo mode without an issuer: the built-in demo identity provider.
    oidc_issuer: str | None = None
    oidc_client_id: str = "einmal-cockpit"
    oidc_client_secret: str | None = None
    oidc_scopes: str = "openid"
    #: Web sessions: idle timeout and absolute lifetime in seconds.
    web_session_idle_s: int = 900
    web_session_max_s: int = 28800
    #: The sources the cockpit asks for a citizen's session (issue 15): a folder of source
    #: documents (None: the shipped ones, the demo's registers and this broker); how long a
    #: query waits for them (a later one is named late and folded in when it answers) and
    #: the hard limit of one request to a source.
    sources_dir: Path | None = None
    source_deadline_s: float = 1.5
    source_timeout_s: float = 10.0
    #: The transfer log's origin line (its permanent name) and retention.
    log_origin: str | None = None
    log_retention_days: int = 730
    #: The log's witnesses (C2SP tlog-witness): a JSON list of {"name", "vkey", "url"} or the
    #: path of a file holding one; None: no witnesses (decision 0030).
    log_witnesses: str | None = None
    #: Cosignatures a checkpoint needs before it is published; None: every witness's.
    log_witness_quorum: int | None = None
    #: How long one cosigning round waits for each witness.
    log_witness_timeout_s: float = 5.0
    #: Auditors' public keys (JWK set). In demo mode the demo auditor's key is written there.
    auditor_keys_file: Path | None = None
    #: Where web sessions and abuse limits live (decision 0032): "database" - in the component's
    #: database, shared by every process using it (needed behind a round-robin proxy);
    #: "memory" - in this process only; "auto" - database on PostgreSQL, memory on SQLite
    #: (the embedded default: one process).
    shared_state: Literal["auto", "database", "memory"] = "auto"
    #: Abuse limits (token buckets): requests per second and burst; 0 = off.
    rate_limit_service_per_s: float = 1000.0
    rate_limit_service_burst: float = 2000.0
    rate_limit_citizen_per_s: float = 20.0
    rate_limit_citizen_burst: float = 60.0
    rate_limit_token_per_s: float = 100.0
    rate_limit_token_burst: float = 200.0
    #: Operator bearer token for /health/ready and /metrics (None: <keys>/ops.token, 0600).
    ops_token: str | None = None
    access_token_ttl_s: int = 300
    citizen_token_ttl_s: int = 3600
    register_timeout_s: float = 5.0
    register_retries: int = 2
    #: Calls in flight per register, at most; a call waits this long for a slot, then 503
    #: register-busy (connectors/_http.py).
    register_max_concurrency: int = 32
    register_queue_timeout_s: float = 1.0
    simulator_seed: int = 1
    simulator_families: int = 300
    delivery_interval_s: float = 1.0
    #: Preview (EU OOTS): how long a held proof waits for the citizen's release (and, once
    #: released, for the service to collect it) before it is destroyed; sweeper period.
    preview_ttl_s: int = 900
    preview_sweep_interval_s: float = 30.0
    #: Broker retention (broker/retention.py, docs/retention.md): how often the sweeper
    #: applies the rules; 0 = never by itself (then `einmal broker shred` only).
    retention_sweep_interval_s: float = 3600.0
    log_format: Literal["console", "json"] = "console"
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def broker_base_url(self) -> str:
        return (self.broker_url or self.base_url).rstrip("/")

    @property
    def cockpit_base_url(self) -> str:
        return (self.cockpit_url or self.base_url).rstrip("/")

    @property
    def demo_issuer(self) -> str:
        """The demo identity provider's issuer (demo mode only)."""
        return f"{self.cockpit_base_url}/demo"

    @property
    def registers_base_url(self) -> str:
        return (self.registers_url or f"{self.base_url}/registers").rstrip("/")

    @property
    def log_origin_line(self) -> str:
        if self.log_origin:
            return self.log_origin
        netloc = self.cockpit_base_url.split("://", 1)[-1]
        return f"{netloc}/einmal-transfer-log"

    @property
    def auditor_keys(self) -> Path:
        return self.auditor_keys_file or self.keys_dir / "auditors.public.json"

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    def shares_state(self, component: str) -> bool:
        """Do this component's sessions and limits live in its database (``shared_state``)?"""
        if self.shared_state == "auto":
            return not self.database_url_for(component).startswith("sqlite")
        return self.shared_state == "database"

    def database_url_for(self, component: str, *, read: bool = False) -> str:
        """The SQLAlchemy async URL of one component's store (``read``: the replica, if any)."""
        if read and self.read_database_url:
            return _async_driver(self.read_database_url)
        if self.database_url is None:
            return f"sqlite+aiosqlite:///{self.data_dir / (component + '.db')}"
        return _async_driver(self.database_url)


def _async_driver(url: str) -> str:
    """Plain database URLs get the async driver Einmal uses."""
    for plain, driver in (("postgresql://", "postgresql+asyncpg://"),
                          ("postgres://", "postgresql+asyncpg://"),
                          ("sqlite:///", "sqlite+aiosqlite:///")):
        if url.startswith(plain):
            return driver + url[len(plain):]
    return url


_ENV_PREFIX = "EINMAL_"


def _coerce(name: str, raw: str) -> Any:
    if name == "components":
        return [part.strip() for part in raw.split(",") if part.strip()]
    if name == "demo":
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    return raw


def load_settings(environ: Mapping[str, str], **overrides: Any) -> Settings:
    """Settings from ``EINMAL_*`` variables, then ``overrides`` (CLI options; None = unset)."""
    fields = set(Settings.__struct_fields__)
    values: dict[str, Any] = {}
    for key, raw in environ.items():
        if key.startswith(_ENV_PREFIX):
            name = key[len(_ENV_PREFIX):].lower()
            if name in fields:
                values[name] = _coerce(name, raw)
    values.update({k: v for k, v in overrides.items() if v is not None})
    if "components" not in values:
        # NOTE: the register simulators serve (synthetic) register data without
        # authentication: they run by default only in demo mode.
        demo = values.get("demo") in (True, "true", "1")
        values["components"] = sorted(COMPONENTS if demo else COMPONENTS - {"registers"})
    if isinstance(values.get("components"), str):
        values["components"] = _coerce("components", values["components"])
    try:
        settings = msgspec.convert(values, Settings, strict=False, dec_hook=_dec_hook)
    except msgspec.ValidationError as exc:
        msg = f"invalid setting: {exc}"
        raise SettingsError(msg) from exc
    if "registers" in settings.components and not settings.demo:
        msg = ("the register simulators hold synthetic data and answer anyone: they run only "
               "with --demo (in production, point --registers-url at the real registers)")
        raise SettingsError(msg)
    if not 0 < settings.source_deadline_s <= settings.source_timeout_s:
        msg = ("invalid setting source_deadline_s: more than 0 and at most source_timeout_s "
               f"({settings.source_deadline_s:g} and {settings.source_timeout_s:g})")
        raise SettingsError(msg)
    unknown = settings.components - COMPONENTS
    if unknown or not settings.components:
        msg = (f"invalid setting components: {', '.join(sorted(unknown)) or 'empty'} "
               f"(choose from {', '.join(sorted(COMPONENTS))})")
        raise SettingsError(msg)
    return settings


def _dec_hook(type_: type, obj: Any) -> Any:
    if type_ is Path and isinstance(obj, str | Path):
        return Path(obj)
    raise NotImplementedError
