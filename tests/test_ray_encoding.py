"""Encoding on Ray (``unibind ingest --ray``, ``unibind gallery add --ray``) on a real local Ray: the vectors equal the
local encoder's, come back in input order whatever order Ray's batches finish in, and a model that fails inside an
actor fails the command with one line naming Ray and the cause, publishing nothing.

Needs the optional extra (``pip install 'unibind[ray]'``): skipped without it, except under CI (``CI=true``), where
``.ci/run`` installs it and a missing Ray fails the tests.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from unibind.indexer.encoders.ray_encoder import RayConfig, RayEncoder, ray_error
from unibind.indexer.runtime.device import select_device
from unibind.indexer.runtime.vectors import from_bytes
from unibind.retrieval.cli.main import main
from unibind.schema import Database, Description, Item
from unibind.schema.errors import InvalidInput, Unavailable
from tests.corpus_samples import ANIMALS, write_json

pytestmark = pytest.mark.slow

IN_CI = os.environ.get("CI", "").lower() == "true"
TOL = 1e-5


def _ray_module() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        message = f"Ray is not installed ({e}): make extras (or pip install 'unibind[ray]')"
        if IN_CI:
            pytest.fail(message + " (CI=true: make test installs the extras, so the Ray tests must run)")
        pytest.skip(message)
    return ray


@pytest.fixture(scope="module")
def ray_local() -> Iterator[Any]:
    """A local Ray for this module: 2 CPUs, a small object store; shut down at the end."""
    ray = _ray_module()
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, object_store_memory=80 * 2**20, include_dashboard=False, log_to_driver=False,
                 ignore_reinit_error=True)
    yield ray
    if started:
        ray.shutdown()


def texts(n: int) -> list[str]:
    """Distinct texts of varied length (so padding and batching differ between the two paths)."""
    animals = [t for ts in ANIMALS.values() for t in ts]
    return [f"{animals[i % len(animals)]} {' and more' * (i % 5)} (note {i})" for i in range(n)]


def cli(url: str, home: Path, *args: str) -> int:
    return main(["--db", url, "--home", str(home), "--device", "cpu", *args])


def stored_vectors(url: str) -> dict[str, np.ndarray]:
    """text → its stored description vector."""
    db = Database(url)
    try:
        with db.session() as s:
            rows = list(s.execute(select(Description.text, Description.vector)))
    finally:
        db.dispose()
    vectors = from_bytes([v for _, v in rows], 384)
    return {t: vectors[i] for i, (t, _) in enumerate(rows)}


# -- RayEncoder against the local encoder --------------------------------------------------------------------------
def test_ray_text_vectors_equal_the_local_encoder_in_input_order(ray_local: Any, minilm: Any) -> None:
    inputs = texts(300)
    local = minilm.encode_text(inputs)
    # batches of 16 over 2 actors: 19 batches that finish in whatever order the actors reach them
    remote = RayEncoder(minilm, RayConfig(concurrency=2, batch_size=16)).encode_text(inputs)
    assert remote.shape == local.shape and remote.dtype == np.float32
    assert np.abs(remote - local).max() < TOL
    # the check is order-sensitive: any other order of the rows is far from the local vectors
    perm = np.random.default_rng(0).permutation(len(inputs))
    assert np.abs(local[perm] - local).max() > 0.1
    assert (np.argmax(remote @ local.T, axis=1) == np.arange(len(inputs))).all()


def test_the_probe_gives_dim_spec_and_modalities(ray_local: Any, minilm: Any) -> None:
    encoder = RayEncoder(minilm, RayConfig())
    assert (encoder.spec, encoder.dim, encoder.modalities) == (minilm.spec, minilm.dim, minilm.modalities)
    assert encoder.encode_text([]).shape == (0, minilm.dim)  # nothing to encode: no job
    with pytest.raises(InvalidInput, match="no image tower"):
        encoder.encode_images(["x.png"])


# -- the CLI: ingest ----------------------------------------------------------------------------------------------
def test_ingest_with_ray_stores_the_local_vectors(ray_local: Any, tmp_path: Path) -> None:
    corpus = {f"class {i}": texts(300)[i::6] for i in range(6)}
    path = write_json(tmp_path / "corpus.json", corpus)
    plain, on_ray = f"sqlite:///{tmp_path / 'plain.db'}", f"sqlite:///{tmp_path / 'ray.db'}"
    assert cli(plain, tmp_path / "h1", "ingest", str(path), "--name", "x", "--encoder", "minilm") == 0
    assert cli(on_ray, tmp_path / "h2", "ingest", str(path), "--name", "x", "--encoder", "minilm", "--ray",
               "--batch-size", "32") == 0
    a, b = stored_vectors(plain), stored_vectors(on_ray)
    assert len(a) == 300 and a.keys() == b.keys()
    assert max(float(np.abs(a[t] - b[t]).max()) for t in a) < TOL
    assert cli(on_ray, tmp_path / "h2", "index", "verify") == 0


def test_a_model_that_fails_in_the_actors_fails_the_ingest_and_publishes_nothing(
        ray_local: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from unibind.indexer.encoders.factory import build_encoder
    from unibind.indexer.encoders.sentence import minilm_path

    folder = tmp_path / "st-model"
    shutil.copytree(minilm_path(), folder)
    spec = f"st:{folder}"
    build_encoder(spec, select_device("cpu"))  # the driver's probe loads (and keeps) the good model...
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # ...then the weights are truncated: every actor fails to load
    url, home = f"sqlite:///{tmp_path / 'kb.db'}", tmp_path / "home"
    path = write_json(tmp_path / "corpus.json", ANIMALS)
    capsys.readouterr()
    code = cli(url, home, "ingest", str(path), "--name", "x", "--encoder", spec, "--ray")
    err = capsys.readouterr().err.strip()
    assert code != 0
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("unibind: error: encoding on Ray failed"), err
    assert "SafetensorError" in lines[0] or "safetensors" in lines[0].lower(), err
    assert cli(url, home, "corpus", "list", "--json") == 0
    assert json.loads(capsys.readouterr().out) == []


# -- the CLI: gallery add -----------------------------------------------------------------------------------------
def test_gallery_add_with_ray_equals_the_local_path(ray_local: Any, tmp_path: Path) -> None:
    from tests.image_site import COLOURS, SHAPES, draw
    from tests.tiny_models import make_tiny_open_clip

    spec = make_tiny_open_clip(tmp_path / "clip")
    folder = tmp_path / "images"
    folder.mkdir()
    images = [str(draw(folder / f"{c}-{s}.png", rgb, s)) for c, rgb in COLOURS.items() for s in SHAPES]
    kb = write_json(tmp_path / "animals.json", ANIMALS)
    raws = []
    for name, extra in (("plain", ()), ("ray", ("--ray", "--ray-concurrency", "2"))):
        url, home = f"sqlite:///{tmp_path / f'{name}.db'}", tmp_path / name
        assert cli(url, home, "ingest", str(kb), "--name", "kb", "--encoder", spec) == 0
        assert cli(url, home, "gallery", "add", "--modality", "image", "--files", *images, "--label", "shape",
                   *extra) == 0
        db = Database(url)
        with db.session() as s:
            rows = list(s.execute(select(Item.uri, Item.raw, Item.vector).order_by(Item.id)))
        db.dispose()
        assert [r.uri for r in rows] == [str(Path(i).resolve()) for i in images]
        raws.append((from_bytes([r.raw for r in rows], 32), from_bytes([r.vector for r in rows], 32)))
    (raw_a, vec_a), (raw_b, vec_b) = raws
    assert np.abs(raw_a - raw_b).max() < TOL and np.abs(vec_a - vec_b).max() < TOL


def test_ray_with_a_features_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Feature files are vectors already: nothing to encode on Ray (refused before Ray or the store is touched)."""
    feats = tmp_path / "f.npy"
    np.save(feats, np.zeros((2, 4), dtype=np.float32))
    url = f"sqlite:///{tmp_path / 'kb.db'}"
    assert cli(url, tmp_path, "gallery", "add", "--modality", "audio", "--features", str(feats), "--ray") == 2
    assert "nothing to encode on Ray" in capsys.readouterr().err


# -- options and errors, without a Ray job ------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,needle", [
    ({"concurrency": 0}, "--ray-concurrency"),
    ({"num_cpus": 0.0}, "--ray-cpus"),
    ({"num_gpus": -1.0}, "--ray-gpus"),
    ({"address": "descriptions.json"}, "--ray 'descriptions.json'"),
    ({"batch_size": 0}, "--batch-size"),
])
def test_ray_options_are_checked(kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(InvalidInput, match=needle.replace(".", r"\.")):
        RayConfig(**kwargs)


def test_addresses_that_are_accepted() -> None:
    for address in (None, "local", "auto", "10.0.0.5:6379", "ray://head.example:10001"):
        assert RayConfig(address=address).local == (address in (None, "local"))


def test_a_ray_option_without_ray_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli(f"sqlite:///{tmp_path / 'kb.db'}", tmp_path, "ingest", str(write_json(tmp_path / "a.json", ANIMALS)),
               "--name", "x", "--ray-gpus", "1")
    assert code == 2 and "--ray-gpus apply only with --ray" in capsys.readouterr().err


def test_a_remote_traceback_becomes_one_typed_line() -> None:
    remote = ("\x1b[36mray::MapWorker(MapBatches(_EncodeBatch)).submit()\x1b[39m (pid=1)\n"
              "  File \"x.py\", line 1, in f\n    raise OSError('bad')\n"
              "OSError: It looks like the config file is not valid JSON.\n\n"
              "The above exception was the direct cause of the following exception:\n\n"
              "unibind.schema.errors.InvalidInput: /m: not a sentence-transformers model folder (bad)\n\n"
              "ray.exceptions.UserCodeException: UDF failed to process a data block.\n")
    error = ray_error(Exception(remote))
    assert type(error) is InvalidInput and str(error) == (
        "encoding on Ray failed in an actor: /m: not a sentence-transformers model folder (bad)")
    other = ray_error(Exception("ray::MapWorker()\nsafetensors._rust.SafetensorError: invalid header\n"))
    assert type(other) is Unavailable and "SafetensorError: invalid header" in str(other)
