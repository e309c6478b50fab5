"""Every ``UNIBIND_*`` setting, read in one place: a flag beats the environment beats the default.

:class:`Settings` is the one object the CLI, ``unibind serve`` and the migrations resolve their configuration
with; it records where each value came from (``unibind config`` prints that), and knows which values are
secrets (the API key, the database password) so nothing prints them in clear.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from unibind.schema.errors import InvalidInput

Source = Literal["flag", "environment", "default"]

HOME_ENV = "UNIBIND_HOME"
DATABASE_ENV = "UNIBIND_DATABASE_URL"
DEVICE_ENV = "UNIBIND_DEVICE"
ENCODER_ENV = "UNIBIND_ENCODER"
API_KEY_ENV = "UNIBIND_API_KEY"

DEFAULT_HOME = "./unibind-data"
DEFAULT_ENCODER = "open_clip:ViT-B-32/laion2b_s34b_b79k"
DEFAULT_HOST = "127.0.0.1"  # loopback only
DEFAULT_PORT = 8000
DEFAULT_MAX_BATCH = 64  # queries per request
DEFAULT_MAX_K = 100
DEFAULT_MAX_LABELS = 1000
DEFAULT_MAX_UPLOAD_MB = 10.0
DEFAULT_MAX_IMAGE_PIXELS = 25_000_000
DEFAULT_MAX_QUEUED_UPLOADS = 8  # corpus uploads queued or running in one service process
MAX_PORT = 65535
SECRET_SHOWN = "****"


# -- parsing: a flag's value arrives typed, an environment variable's as text --------------------------------
def _text(value: Any, where: str) -> str:
    text = str(value).strip()
    if not text:
        raise InvalidInput(f"{where} must not be blank")
    return text


def _secret(value: Any, where: str) -> str:
    return str(value)  # a blank key is refused by the service, which names the variable without its value


def _int_in(low: int, high: int | None = None) -> Callable[[Any, str], int]:
    def parse(value: Any, where: str) -> int:
        if isinstance(value, bool):
            raise InvalidInput(f"{where} must be an integer, got {value!r}")
        try:
            number = int(value.strip()) if isinstance(value, str) else int(value)
        except (TypeError, ValueError):
            raise InvalidInput(f"{where} must be an integer, got {value!r}") from None
        if number < low or (high is not None and number > high):
            bound = f"in {low}..{high}" if high is not None else f">= {low}"
            raise InvalidInput(f"{where} must be an integer {bound}, got {number}")
        return number

    return parse


def _positive_float(value: Any, where: str) -> float:
    try:
        number = float(value.strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{where} must be a number, got {value!r}") from None
    if not number > 0 or number == float("inf"):
        raise InvalidInput(f"{where} must be a number > 0, got {value!r}")
    return number


def _bool(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise InvalidInput(f"{where} must be one of 1, true, yes, on, 0, false, no, off; got {value!r}")


def _device(value: Any, where: str) -> str:
    text = str(value).strip().lower()
    if text not in ("auto", "cpu", "cuda") and not (text.startswith("cuda:") and text[5:].isdigit()):
        raise InvalidInput(f"{where}: device {value!r} is not one of auto, cpu, cuda, cuda:N")
    return text


def _home(value: Any, where: str) -> Path:
    return Path(_text(value, where)).expanduser().resolve()


VECTORS_FORMS = "faiss (the default), milvus-lite:PATH or milvus://host:port"


@dataclass(frozen=True)
class VectorsSpec:
    """Where index vectors live: ``kind`` "faiss" (uri None), "milvus-lite" (uri = a folder) or "milvus" (uri =
    ``http://host:port``)."""

    kind: Literal["faiss", "milvus-lite", "milvus"]
    uri: str | None = None


def parse_vectors_spec(spec: str | None, where: str = "--vectors") -> VectorsSpec:
    """``faiss`` / None / "" → FAISS files; ``milvus-lite:PATH``; ``milvus://host:port`` (port required)."""
    if spec is None or spec.strip() in ("", "faiss"):
        return VectorsSpec("faiss")
    spec = spec.strip()
    if spec.startswith("milvus-lite:"):
        path = spec[len("milvus-lite:"):]
        if path.strip():
            return VectorsSpec("milvus-lite", str(Path(path.strip()).expanduser().absolute()))
    m = re.fullmatch(r"milvus://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})/?", spec)
    if m and 0 < int(m.group(2)) < 65536:
        return VectorsSpec("milvus", f"http://{m.group(1)}:{int(m.group(2))}")
    raise InvalidInput(f"{where} {spec!r} is not understood; use {VECTORS_FORMS}")


def _vectors(value: Any, where: str) -> str:
    """The ``--vectors`` setting, checked, in its canonical spelling (a milvus-lite folder made absolute)."""
    spec = parse_vectors_spec(_text(value, where), where)
    return "faiss" if spec.kind == "faiss" else f"milvus-lite:{spec.uri}" if spec.kind == "milvus-lite" else \
        f"milvus://{str(spec.uri).removeprefix('http://')}"


@dataclass(frozen=True)
class SettingSpec:
    """One setting: its environment variable, its flag (None: environment only), how a value is read."""

    name: str
    env: str
    flag: str | None
    parse: Callable[[Any, str], Any]
    help: str
    secret: bool = False


SPECS: tuple[SettingSpec, ...] = (
    SettingSpec("home", HOME_ENV, "--home", _home, "data folder: the SQLite store, FAISS and head files"),
    SettingSpec("database_url", DATABASE_ENV, "--db", _text, "database URL (default: SQLite in the data folder)",
                secret=True),
    SettingSpec("vectors", "UNIBIND_VECTORS", "--vectors", _vectors,
                f"where index vectors live: {VECTORS_FORMS}"),
    SettingSpec("device", DEVICE_ENV, "--device", _device, "auto, cpu, cuda or cuda:N"),
    SettingSpec("fp16", "UNIBIND_FP16", "--fp16", _bool, "store vectors as float16 in FAISS GPU indexes"),
    SettingSpec("encoder", ENCODER_ENV, "--encoder", _text,
                f"the space's encoder spec (default: the only space's, else {DEFAULT_ENCODER})"),
    SettingSpec("api_key", API_KEY_ENV, None, _secret, "serve: the key every data route needs", secret=True),
    SettingSpec("host", "UNIBIND_HOST", "--host", _text, "serve: the address to bind"),
    SettingSpec("port", "UNIBIND_PORT", "--port", _int_in(0, MAX_PORT), "serve: the port"),
    SettingSpec("max_batch", "UNIBIND_MAX_BATCH", "--max-batch", _int_in(1), "serve: queries per request"),
    SettingSpec("max_k", "UNIBIND_MAX_K", "--max-k", _int_in(1), "serve: the largest k"),
    SettingSpec("max_labels", "UNIBIND_MAX_LABELS", "--max-labels", _int_in(1),
                "serve: most labels in one recognize request"),
    SettingSpec("max_upload_mb", "UNIBIND_MAX_UPLOAD_MB", "--max-upload-mb", _positive_float,
                "serve: the largest upload in MiB"),
    SettingSpec("max_image_pixels", "UNIBIND_MAX_IMAGE_PIXELS", "--max-image-pixels", _int_in(1),
                "serve: the largest image, width x height"),
    SettingSpec("max_queued_uploads", "UNIBIND_MAX_QUEUED_UPLOADS", "--max-queued-uploads", _int_in(1),
                "serve: corpus uploads queued or running at once (more are answered 429)"),
    SettingSpec("milvus_token", "UNIBIND_MILVUS_TOKEN", None, _secret,
                "milvus://: the server's token (user:password, or an API key)", secret=True),
    SettingSpec("milvus_user", "UNIBIND_MILVUS_USER", None, _text, "milvus://: the user (with UNIBIND_MILVUS_PASSWORD)"),
    SettingSpec("milvus_password", "UNIBIND_MILVUS_PASSWORD", None, _secret, "milvus://: that user's password",
                secret=True),
    SettingSpec("milvus_db", "UNIBIND_MILVUS_DB", None, _text, "milvus://: the database of the collections "
                "(default: the server's default database)"),
    SettingSpec("milvus_tls", "UNIBIND_MILVUS_TLS", None, _bool, "milvus://: connect with TLS"),
    SettingSpec("milvus_ca", "UNIBIND_MILVUS_CA", None, _text, "milvus://: the CA certificate file (PEM) TLS trusts"),
    SettingSpec("milvus_nlist", "UNIBIND_MILVUS_NLIST", None, _int_in(1, 65_536),
                "Milvus IVF lists of a new collection (default: 4 sqrt(rows), 16 to 65,536)"),
    SettingSpec("milvus_hnsw_m", "UNIBIND_MILVUS_HNSW_M", None, _int_in(2, 2048), "Milvus HNSW: M (default 16)"),
    SettingSpec("milvus_hnsw_ef_construction", "UNIBIND_MILVUS_HNSW_EF_CONSTRUCTION", None, _int_in(1),
                "Milvus HNSW: efConstruction (default 200)"),
    SettingSpec("llm_base_url", "UNIBIND_LLM_BASE_URL", "--base-url", _text,
                "kb: the OpenAI-compatible server of --llm openai:MODEL (default: $OPENAI_BASE_URL, else OpenAI's)"),
    SettingSpec("llm_api_key", "UNIBIND_LLM_API_KEY", None, _secret,
                "kb: the key sent to that server (default: $OPENAI_API_KEY)", secret=True),
)
SPEC_BY_NAME: Mapping[str, SettingSpec] = MappingProxyType({s.name: s for s in SPECS})


def env_value(name: str, environ: Mapping[str, str] | None = None) -> Any | None:
    """The value of one setting's environment variable (None when unset or empty), parsed and checked."""
    spec = SPEC_BY_NAME[name]
    raw = (os.environ if environ is None else environ).get(spec.env)
    return spec.parse(raw, f"${spec.env}") if raw else None


@dataclass(frozen=True)
class ShownSetting:
    """One line of ``unibind config``: the value as it may be shown (secrets masked) and where it came from."""

    name: str
    value: Any
    source: Source
    env: str
    flag: str | None
    help: str


@dataclass(frozen=True)
class Settings:
    """The effective settings. ``sources`` says, per field, whether a flag, the environment or the default set it."""

    home: Path
    database_url: str
    vectors: str = "faiss"
    device: str = "auto"
    fp16: bool = False
    encoder: str | None = None  # None: the only space's encoder, else DEFAULT_ENCODER (decided where the store is read)
    api_key: str | None = None
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    max_batch: int = DEFAULT_MAX_BATCH
    max_k: int = DEFAULT_MAX_K
    max_labels: int = DEFAULT_MAX_LABELS
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    max_queued_uploads: int = DEFAULT_MAX_QUEUED_UPLOADS
    milvus_token: str | None = None
    milvus_user: str | None = None
    milvus_password: str | None = None
    milvus_db: str | None = None
    milvus_tls: bool = False
    milvus_ca: str | None = None
    milvus_nlist: int | None = None
    milvus_hnsw_m: int = 16
    milvus_hnsw_ef_construction: int = 200
    llm_base_url: str | None = None
    llm_api_key: str | None = None
    sources: Mapping[str, Source] = field(default_factory=lambda: MappingProxyType({}), compare=False, repr=False)

    @classmethod
    def resolve(cls, db: str | None = None, home: str | os.PathLike[str] | None = None, *,
                environ: Mapping[str, str] | None = None, **flags: Any) -> Settings:
        """Each field from its flag (a keyword here; None: not given), else its environment variable, else the
        default; ``db`` is ``--db`` (``database_url``). A value that breaks a rule raises InvalidInput naming the
        flag or variable."""
        given = {"database_url": db, "home": home, **flags}
        unknown = sorted(set(given) - set(SPEC_BY_NAME))
        if unknown:
            raise TypeError(f"unknown setting(s): {', '.join(unknown)} (known: {', '.join(SPEC_BY_NAME)})")
        values: dict[str, Any] = {}
        sources: dict[str, Source] = {}
        for spec in SPECS:
            flag_value = given.get(spec.name)
            if flag_value is not None:
                values[spec.name] = spec.parse(flag_value, spec.flag or spec.name)
                sources[spec.name] = "flag"
                continue
            from_env = env_value(spec.name, environ)
            if from_env is not None:
                values[spec.name] = from_env
                sources[spec.name] = "environment"
            else:
                sources[spec.name] = "default"
        values.setdefault("home", _home(DEFAULT_HOME, "the default data folder"))
        values.setdefault("database_url", f"sqlite:///{values['home'] / 'unibind.db'}")
        return cls(**values, sources=MappingProxyType(sources))

    def source(self, name: str) -> Source:
        """Where ``name`` came from ("default" for a Settings built by hand)."""
        return self.sources.get(name, "default")

    def shown(self) -> list[ShownSetting]:
        """Every setting as ``unibind config`` prints it: the API key masked, the database password hidden."""
        rows = []
        for spec in SPECS:
            value = getattr(self, spec.name)
            if spec.name == "database_url":
                value = mask_database_url(value)
            elif spec.secret and value is not None:
                value = SECRET_SHOWN
            elif isinstance(value, Path):
                value = str(value)
            rows.append(ShownSetting(spec.name, value, self.source(spec.name), spec.env, spec.flag, spec.help))
        return rows


@dataclass(frozen=True)
class MilvusOptions:
    """How a ``milvus://`` server is reached and how new collections are indexed (the Milvus
    settings; environment only, read when a connection is made). ``repr`` shows no secret."""

    token: str | None = field(default=None, repr=False)
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    db: str | None = None
    tls: bool = False
    ca: str | None = None
    nlist: int | None = None
    hnsw_m: int = 16
    hnsw_ef_construction: int = 200

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> MilvusOptions:
        values = {name: env_value(f"milvus_{name}", environ) for name in (
            "token", "user", "password", "db", "tls", "ca", "nlist", "hnsw_m", "hnsw_ef_construction")}
        opts = cls(**{k: v for k, v in values.items() if v is not None})
        if opts.password and not opts.user:
            raise InvalidInput("$UNIBIND_MILVUS_PASSWORD is set without $UNIBIND_MILVUS_USER")
        if opts.ca and not Path(opts.ca).expanduser().is_file():
            raise InvalidInput(f"$UNIBIND_MILVUS_CA: no such file: {opts.ca}")
        return opts

    def client_kwargs(self) -> dict[str, Any]:
        """The ``MilvusClient`` arguments for a server (secrets included: never log them)."""
        kwargs: dict[str, Any] = {}
        if self.token:
            kwargs["token"] = self.token
        if self.user:
            kwargs["user"], kwargs["password"] = self.user, self.password or ""
        if self.db:
            kwargs["db_name"] = self.db
        if self.tls or self.ca:
            kwargs["secure"] = True
        if self.ca:
            kwargs["server_pem_path"] = str(Path(self.ca).expanduser())
        return kwargs


def mask_database_url(url: str) -> str:
    """``url`` with its password replaced by ``***``; a URL that does not parse is not shown at all."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "(not a valid SQLAlchemy URL; not shown)"

