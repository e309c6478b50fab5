"""One settings object: flag > environment > default for every UNIBIND_* variable, the source of each value,
every command and ``serve`` configured the same way, and ``unibind config`` never printing a secret."""

from __future__ import annotations

import json
import re
from dataclasses import fields
from pathlib import Path

import pytest

from unibind.retrieval.cli.context import settings_from_args
from unibind.retrieval.cli.main import build_parser, main
from unibind.retrieval.service.config import ServiceConfig
from unibind.schema.errors import InvalidInput
from unibind.schema.settings import DEFAULT_MAX_K, SPEC_BY_NAME, SPECS, Settings
from tests.corpus_samples import ANIMALS, write_json

ROOT = Path(__file__).resolve().parent.parent
ALL_ENV = [s.env for s in SPECS]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ALL_ENV:
        monkeypatch.delenv(name, raising=False)


def test_every_field_has_one_spec_and_every_variable_in_the_code_is_a_setting() -> None:
    assert {f.name for f in fields(Settings)} - {"sources"} == set(SPEC_BY_NAME)
    assert len(set(ALL_ENV)) == len(ALL_ENV)
    found: dict[str, list[str]] = {}
    for folder in ("schema", "indexer", "retrieval", "migrations"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text()
            for name in re.findall(r"UNIBIND_[A-Z0-9_]+", text):
                found.setdefault(name, []).append(str(path.relative_to(ROOT)))
            if path.name != "settings.py":  # the environment is read in one place
                assert not re.search(r"(environ|getenv)\W.*UNIBIND_|(environ|getenv)\W.*_ENV\b", text), path
    assert set(found) <= set(ALL_ENV), {k: v for k, v in found.items() if k not in ALL_ENV}


def test_flag_beats_environment_beats_default(tmp_path: Path) -> None:
    env = {"UNIBIND_HOME": str(tmp_path / "env-home"), "UNIBIND_DEVICE": "CPU", "UNIBIND_PORT": "9001",
           "UNIBIND_MAX_UPLOAD_MB": "2.5", "UNIBIND_FP16": "yes", "UNIBIND_ENCODER": "minilm"}
    s = Settings.resolve(environ=env, port=9002, encoder="st:/models/x")
    assert (s.home, s.device, s.port, s.max_upload_mb, s.fp16, s.encoder) == (
        (tmp_path / "env-home").resolve(), "cpu", 9002, 2.5, True, "st:/models/x")
    assert s.database_url == f"sqlite:///{(tmp_path / 'env-home').resolve() / 'unibind.db'}"
    assert dict(s.sources) == {
        "home": "environment", "database_url": "default", "vectors": "default", "device": "environment",
        "fp16": "environment",
        "encoder": "flag", "api_key": "default", "host": "default", "port": "flag", "max_batch": "default",
        "max_k": "default", "max_labels": "default", "max_upload_mb": "environment", "max_image_pixels": "default",
        "max_queued_uploads": "default", "llm_base_url": "default", "llm_api_key": "default",
        **{name: "default" for name in SPEC_BY_NAME if name.startswith("milvus_")}}
    d = Settings.resolve(environ={})
    assert (d.home, d.device, d.fp16, d.encoder, d.port, d.max_k) == (
        (Path.cwd() / "unibind-data").resolve(), "auto", False, None, 8000, DEFAULT_MAX_K)
    assert Settings.resolve(environ={"UNIBIND_ENCODER": ""}).source("encoder") == "default"  # empty = unset


@pytest.mark.parametrize("env,needle", [
    ({"UNIBIND_PORT": "eighty"}, "$UNIBIND_PORT must be an integer, got 'eighty'"),
    ({"UNIBIND_PORT": "70000"}, "$UNIBIND_PORT must be an integer in 0..65535, got 70000"),
    ({"UNIBIND_MAX_K": "0"}, "$UNIBIND_MAX_K must be an integer >= 1, got 0"),
    ({"UNIBIND_MAX_UPLOAD_MB": "-1"}, "$UNIBIND_MAX_UPLOAD_MB must be a number > 0, got '-1'"),
    ({"UNIBIND_FP16": "maybe"}, "$UNIBIND_FP16 must be one of 1, true, yes, on, 0, false, no, off; got 'maybe'"),
    ({"UNIBIND_DEVICE": "gpu"}, "$UNIBIND_DEVICE: device 'gpu' is not one of auto, cpu, cuda, cuda:N"),
    ({"UNIBIND_HOST": "  "}, "$UNIBIND_HOST must not be blank"),
])
def test_a_bad_variable_is_named(env: dict[str, str], needle: str) -> None:
    with pytest.raises(InvalidInput) as info:
        Settings.resolve(environ=env)
    assert str(info.value) == needle


def test_a_bad_flag_is_named() -> None:
    with pytest.raises(InvalidInput, match=r"^--device: device 'tpu' is not one of auto, cpu, cuda, cuda:N$"):
        Settings.resolve(device="tpu")
    with pytest.raises(InvalidInput, match=r"^--port must be an integer in 0\.\.65535, got -1$"):
        Settings.resolve(port=-1)


def test_config_shows_sources_and_never_a_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("UNIBIND_API_KEY", "k3y-s3cret")
    monkeypatch.setenv("UNIBIND_ENCODER", "minilm")
    monkeypatch.setenv("UNIBIND_MAX_K", "7")
    url = "postgresql+psycopg://alice:pa55word@db.example:5432/unibind"
    assert main(["--db", url, "--home", str(tmp_path), "--device", "cpu", "config", "--json"]) == 0
    out = capsys.readouterr().out
    shown = json.loads(out)
    assert "k3y-s3cret" not in out and "pa55word" not in out
    assert shown["api_key"] == {"value": "****", "source": "environment", "env": "UNIBIND_API_KEY", "flag": None}
    assert shown["database_url"] == {"value": "postgresql+psycopg://alice:***@db.example:5432/unibind",
                                     "source": "flag", "env": "UNIBIND_DATABASE_URL", "flag": "--db"}
    assert (shown["encoder"]["value"], shown["encoder"]["source"]) == ("minilm", "environment")
    assert (shown["device"]["value"], shown["device"]["source"]) == ("cpu", "flag")
    assert (shown["max_k"]["value"], shown["max_k"]["source"]) == (7, "environment")
    assert (shown["port"]["value"], shown["port"]["source"]) == (8000, "default")
    assert shown["home"]["value"] == str(tmp_path.resolve())
    assert main(["--db", url, "--home", str(tmp_path), "config"]) == 0
    table = capsys.readouterr().out
    assert "k3y-s3cret" not in table and "pa55word" not in table
    rows = {line.split()[0]: line for line in table.splitlines()[2:]}
    assert "****" in rows["api_key"] and "$UNIBIND_API_KEY" in rows["api_key"]
    assert "flag --db" in rows["database_url"] and " default " in rows["port"]
    assert not (tmp_path / "unibind.db").exists()  # config opens nothing


def test_config_never_shows_an_unparseable_url(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--db", "not a url with pa55word", "config", "--json"]) == 0
    out = capsys.readouterr().out
    assert "pa55word" not in out and json.loads(out)["database_url"]["value"].startswith("(not a valid")


def test_a_bad_variable_fails_every_command_in_one_line(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("UNIBIND_DEVICE", "gpu")
    assert main(["config"]) == 2
    err = capsys.readouterr().err
    assert err == "unibind: error: $UNIBIND_DEVICE: device 'gpu' is not one of auto, cpu, cuda, cuda:N\n"


def test_serve_takes_the_same_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``unibind serve`` builds its ServiceConfig from the settings: flags, else UNIBIND_*, else the defaults."""
    for name, value in {"UNIBIND_API_KEY": "k", "UNIBIND_ENCODER": "minilm", "UNIBIND_PORT": "9100",
                        "UNIBIND_MAX_K": "7", "UNIBIND_MAX_UPLOAD_MB": "2", "UNIBIND_DEVICE": "cpu",
                        "UNIBIND_FP16": "yes", "UNIBIND_HOME": str(tmp_path)}.items():
        monkeypatch.setenv(name, value)
    args = build_parser().parse_args(["serve", "--port", "9200", "--max-labels", "5"])
    config = ServiceConfig.from_settings(settings=settings_from_args(args))
    assert (config.api_key, config.encoder, config.port, config.max_k, config.max_labels, config.max_upload_bytes,
            config.device, config.fp16, config.host, config.home) == (
        "k", "minilm", 9200, 7, 5, 2 * 2**20, "cpu", True, "127.0.0.1", tmp_path.resolve())
    assert config.database_url == f"sqlite:///{tmp_path.resolve() / 'unibind.db'}"
    assert config.settings.source("fp16") == "environment" and config.settings.source("port") == "flag"
    # every setting of the service is one of the settings', read from them (nothing of its own); the kb settings
    # are the LLM client's (`unibind kb`), and the Milvus ones the Milvus client's (read where it connects)
    for spec in (s for s in SPECS if not s.help.startswith("kb:") and not s.name.startswith("milvus_")):
        shown = "max_upload_bytes" if spec.name == "max_upload_mb" else spec.name
        expected = getattr(config.settings, spec.name)
        assert getattr(config, shown) == (int(expected * 2**20) if shown == "max_upload_bytes" else expected), shown


@pytest.mark.parametrize("argv, env, fp16", [
    (["serve"], {}, False),
    (["serve"], {"UNIBIND_FP16": "1"}, True),
    (["--fp16", "serve"], {"UNIBIND_FP16": "0"}, True),  # the flag beats the variable
    (["serve"], {"UNIBIND_FP16": "off"}, False),
])
def test_serve_honours_fp16(argv: list[str], env: dict[str, str], fp16: bool, tmp_path: Path,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    """--fp16 / $UNIBIND_FP16 reach the service's configuration (its device takes it: the test below, on a GPU)."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    args = build_parser().parse_args(["--home", str(tmp_path), *argv])
    assert ServiceConfig.from_settings(settings=settings_from_args(args)).fp16 is fp16


@pytest.mark.gpu
@pytest.mark.parametrize("fp16", [True, False])
def test_the_service_device_takes_fp16(fp16: bool, tmp_path: Path) -> None:
    """ServiceState selects its device with the settings' fp16: FAISS GPU indexes store float16 vectors."""
    from unibind.indexer.runtime.device import select_device
    from unibind.retrieval.service.state import ServiceState

    if select_device("auto").faiss_gpu is None:
        pytest.skip("no GPU that both torch and FAISS see")
    config = ServiceConfig(Settings(home=tmp_path, database_url=f"sqlite:///{tmp_path / 'u.db'}", device="cuda",
                                    fp16=fp16))
    state = ServiceState(config)
    try:
        assert (state.device.torch, state.device.faiss_gpu, state.device.faiss_fp16) == ("cuda:0", 0, fp16)
    finally:
        state.close()


def test_a_bad_fp16_variable_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNIBIND_FP16", "maybe")
    with pytest.raises(InvalidInput, match=r"^\$UNIBIND_FP16 must be one of 1, true, yes, on, 0, false, no, off; "
                                           r"got 'maybe'$"):
        ServiceConfig.from_settings(home=tmp_path)


COMMANDS_THAT_READ_A_SPACE = [
    ["corpus", "list"], ["corpus", "show", "x"], ["corpus", "delete", "x"], ["categories"], ["index", "verify"],
    ["index", "rebuild"], ["search", "--text", "a fish", "--target", "descriptions"], ["search-descriptions", "a fish"],
    ["recognize", "--text", "a fish"], ["centres", "build"], ["centres", "show", "tench"], ["modality", "list"],
    ["modality", "add", "lidar", "--dim", "4"], ["head", "list"], ["head", "show", "--modality", "audio"],
    ["gallery", "list"], ["gallery", "verify"], ["gallery", "rebuild"],
    ["gallery", "remove", "--modality", "audio", "--all"],
]


@pytest.mark.parametrize("argv", COMMANDS_THAT_READ_A_SPACE, ids=[" ".join(a) for a in COMMANDS_THAT_READ_A_SPACE])
def test_unibind_encoder_reaches_every_command(argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """With $UNIBIND_ENCODER naming a space that does not exist, every command says so: the variable is honoured
    wherever --encoder is."""
    monkeypatch.setenv("UNIBIND_ENCODER", "st:/no/such/model")
    assert main(["--home", str(tmp_path), "--device", "cpu", *argv]) == 2
    assert "no space for encoder 'st:/no/such/model'" in capsys.readouterr().err


def test_ingest_and_eval_take_the_encoder_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--home", str(tmp_path / "h"), "--device", "cpu"]
    monkeypatch.setenv("UNIBIND_ENCODER", "minilm")
    assert main([*base, "ingest", str(write_json(tmp_path / "a.json", ANIMALS)), "--name", "animals"]) == 0
    assert "with minilm" in capsys.readouterr().out
    queries = tmp_path / "q.jsonl"
    queries.write_text(json.dumps({"text": "a small orange fish in a bowl", "label": "goldfish"}) + "\n")
    monkeypatch.setenv("UNIBIND_ENCODER", "st:/no/such/model")  # eval's space is the variable's too
    assert main([*base, "eval", "recognition", "--queries", str(queries), "--strategies", "top"]) == 2
    assert "no space for encoder 'st:/no/such/model'" in capsys.readouterr().err
    assert main([*base, "eval", "recognition", "--queries", str(queries), "--strategies", "top",
                 "--encoder", "minilm", "--json"]) == 0  # the flag beats the variable
    assert json.loads(capsys.readouterr().out)[0]["queries"] == 1


def test_milvus_connection_settings_are_read_checked_and_never_shown(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Token, user and password, database and TLS for ``milvus://`` come from the environment; ``unibind config``
    masks the secrets, no repr or error message carries them, and bad values name their variable."""
    from unibind.schema.settings import MilvusOptions

    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    env = {"UNIBIND_MILVUS_TOKEN": "tok-s3cret", "UNIBIND_MILVUS_USER": "alice",
           "UNIBIND_MILVUS_PASSWORD": "pw-s3cret", "UNIBIND_MILVUS_DB": "prod", "UNIBIND_MILVUS_TLS": "yes",
           "UNIBIND_MILVUS_CA": str(ca)}
    opts = MilvusOptions.from_env(env)
    assert opts.client_kwargs() == {"token": "tok-s3cret", "user": "alice", "password": "pw-s3cret",
                                    "db_name": "prod", "secure": True, "server_pem_path": str(ca)}
    assert "s3cret" not in repr(opts)
    shown = {s.name: s.value for s in Settings.resolve(home=tmp_path, environ=env).shown()}
    assert shown["milvus_token"] == shown["milvus_password"] == "****" and shown["milvus_user"] == "alice"
    assert MilvusOptions.from_env({}).client_kwargs() == {}
    for bad, rule in ((dict(env, UNIBIND_MILVUS_NLIST="0"), "$UNIBIND_MILVUS_NLIST"),
                      ({"UNIBIND_MILVUS_PASSWORD": "x"}, "without $UNIBIND_MILVUS_USER"),
                      ({"UNIBIND_MILVUS_CA": str(tmp_path / "none.pem")}, "$UNIBIND_MILVUS_CA: no such file"),
                      ({"UNIBIND_MILVUS_TLS": "maybe"}, "$UNIBIND_MILVUS_TLS")):
        with pytest.raises(InvalidInput, match=re.escape(rule)):
            MilvusOptions.from_env(bad)
    # a server that cannot be reached: the error names the server, never the secrets
    pytest.importorskip("pymilvus")
    from unibind.indexer.index.milvus_backend import MilvusBackend
    from unibind.schema.errors import Unavailable

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("UNIBIND_MILVUS_CA")
    monkeypatch.delenv("UNIBIND_MILVUS_TLS")
    with pytest.raises(Unavailable) as caught:
        MilvusBackend("http://127.0.0.1:1", "rows", 4, timeout=3)
    assert "127.0.0.1:1" in str(caught.value) and "s3cret" not in str(caught.value)


def test_milvus_index_parameters_scale_with_the_rows() -> None:
    """IVF lists: 4 sqrt(rows) within 16 and 65,536 unless fixed; HNSW's M and efConstruction from settings."""
    pytest.importorskip("pymilvus")
    from unibind.indexer.index.milvus_backend import index_params

    assert index_params("FLAT", 10**6) == {}
    assert index_params("IVF_FLAT", 10) == {"nlist": 16}
    assert index_params("IVF_SQ8", 1_000_000) == {"nlist": 4000}
    assert index_params("IVF_FLAT", 10**12) == {"nlist": 65_536}
    assert index_params("HNSW", 5) == {"M": 16, "efConstruction": 200}
    mp = pytest.MonkeyPatch()
    try:
        mp.setenv("UNIBIND_MILVUS_NLIST", "256")
        mp.setenv("UNIBIND_MILVUS_HNSW_M", "32")
        assert index_params("IVF_FLAT", 10**6) == {"nlist": 256}
        assert index_params("HNSW", 5) == {"M": 32, "efConstruction": 200}
    finally:
        mp.undo()
