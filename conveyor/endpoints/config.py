"""Endpoint configuration: URLs or field maps, validated at the boundary.

``postgresql://user:pass@host:5432/db?sslmode=verify-full&sslrootcert=/ca.pem``
``mysql://user:pass@host:3306/db?ssl-mode=VERIFY_IDENTITY&ssl-ca=/ca.pem`` (MySQL and MariaDB)
``sqlite:///relative/or/absolute.db`` (``sqlite:////abs/path.db`` is absolute too)
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, TypeAdapter, ValidationError

from conveyor.errors import ConfigError

_STRICT = ConfigDict(extra="forbid", frozen=True)


class PostgresConfig(BaseModel):
    model_config = _STRICT
    engine: Literal["postgresql"] = Field("postgresql", description="PostgreSQL 12 or newer.")
    host: str = Field("127.0.0.1", description="Host name or address.")
    port: int = Field(5432, description="TCP port.", ge=1, le=65535)
    user: str = Field("postgres", description="Login role.")
    password: SecretStr | None = Field(None, description="Password; use ${ENV_VAR} in task files.")
    database: str = Field("postgres", description="Database name.")
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = Field(
        "prefer", description="libpq sslmode."
    )
    sslrootcert: str | None = Field(None, description="CA certificate file for verify-ca / verify-full.")
    connect_timeout: int = Field(10, description="Seconds to wait for a connection.", ge=1)

    def display(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.database}"


class MySQLConfig(BaseModel):
    model_config = _STRICT
    engine: Literal["mysql"] = Field("mysql", description="MySQL 5.7+/8 or MariaDB 10.4+.")
    host: str = Field("127.0.0.1", description="Host name or address.")
    port: int = Field(3306, description="TCP port.", ge=1, le=65535)
    user: str = Field("root", description="Login user.")
    password: SecretStr | None = Field(None, description="Password; use ${ENV_VAR} in task files.")
    database: str = Field(..., description="Database (schema) name.")
    ssl_mode: Literal["DISABLED", "PREFERRED", "REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY"] = Field(
        "PREFERRED", description="Like the mysql client's --ssl-mode."
    )
    ssl_ca: str | None = Field(None, description="CA certificate file for VERIFY_CA / VERIFY_IDENTITY.")
    connect_timeout: int = Field(10, description="Seconds to wait for a connection.", ge=1)

    def display(self) -> str:
        return f"mysql://{self.user}@{self.host}:{self.port}/{self.database}"


class SQLiteConfig(BaseModel):
    model_config = _STRICT
    engine: Literal["sqlite"] = Field("sqlite", description="SQLite 3 database file.")
    path: str = Field(..., description="Path of the database file.")

    def display(self) -> str:
        return f"sqlite:///{self.path}"


EndpointConfig = Annotated[PostgresConfig | MySQLConfig | SQLiteConfig, Field(discriminator="engine")]
_ADAPTER: TypeAdapter[PostgresConfig | MySQLConfig | SQLiteConfig] = TypeAdapter(EndpointConfig)

_SCHEMES = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
    "sqlite": "sqlite",
}
# Query parameters in URLs use the clients' spelling; fields use Python names.
_QUERY_ALIASES = {"ssl-mode": "ssl_mode", "ssl-ca": "ssl_ca", "sslmode": "sslmode", "sslrootcert": "sslrootcert"}


def url_to_fields(url: str, path: str) -> dict[str, Any]:
    """Split an endpoint URL into config fields; errors name ``path``."""
    parts = urlsplit(url)
    engine = _SCHEMES.get(parts.scheme.lower())
    if engine is None:
        known = ", ".join(sorted({f"{s}://" for s in _SCHEMES}))
        raise ConfigError(f"unknown engine in URL scheme {parts.scheme + '://'!r}; use one of {known}", path)
    if engine == "sqlite":
        file_path = unquote(parts.path)
        if parts.netloc or not file_path.startswith("/") or file_path == "/":
            raise ConfigError("SQLite URLs look like sqlite:///relative.db or sqlite:////abs/path.db", path)
        return {"engine": "sqlite", "path": file_path[1:]}
    fields: dict[str, Any] = {"engine": engine}
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"bad port in URL {_redact(url)!r}", path) from None
    if parts.hostname:
        fields["host"] = parts.hostname
    if port:
        fields["port"] = port
    if parts.username:
        fields["user"] = unquote(parts.username)
    if parts.password is not None:
        fields["password"] = unquote(parts.password)
    database = unquote(parts.path.lstrip("/"))
    if database:
        fields["database"] = database
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        name = _QUERY_ALIASES.get(key, key.replace("-", "_"))
        fields[name] = value
    return fields


def parse_endpoint(value: object, path: str) -> PostgresConfig | MySQLConfig | SQLiteConfig:
    """A URL string or a field map -> a validated endpoint config."""
    if isinstance(value, str):
        fields: object = url_to_fields(value, path)
    elif isinstance(value, dict):
        fields = dict(value)
        if "url" in fields:
            url_fields = url_to_fields(str(fields.pop("url")), f"{path}.url")
            fields = {**url_fields, **fields}
    else:
        raise ConfigError("an endpoint is a URL string or a map of fields", path)
    try:
        return _ADAPTER.validate_python(fields)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc), path) from None


def describe_validation_error(exc: ValidationError) -> str:
    """First error of a pydantic ValidationError, in one line, without input values (secrets)."""
    err = exc.errors(include_input=False)[0]
    parts = [str(p) for p in err["loc"]]
    if parts and parts[0] in _SCHEMES.values():  # the discriminator's tag, not a key
        parts = parts[1:]
    loc = ".".join(parts)
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    return f"{loc}: {msg}" if loc else msg


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()
