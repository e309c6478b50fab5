"""Head training on a seeded synthetic paired set: features are a fixed random linear map of the text
embedding of the sample's description, plus noise. A trained head must find the description again."""

from __future__ import annotations

import hashlib
import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from unibind.indexer.runtime.device import Device
from unibind.indexer.modalities.head import LinearHead
from unibind.indexer.training.infonce import HeadTrainConfig, _own_mask, _split, data_digest, train_head
from unibind.indexer.runtime.vectors import normalize

CPU = Device()
T, D, D_IN, N = 400, 64, 96, 2000  # descriptions, text dim, feature dim, samples
FAST = dict(max_epochs=6, lr=5e-3)


def synthetic(seed: int = 0, *, n: int = N, t: int = T, d_in: int = D_IN, noise: float = 0.08,
              paraphrases: int = 1, map_seed: int = 1234) -> tuple[np.ndarray, np.ndarray, list[list[int]], np.ndarray]:
    """(features [n, d_in], text vectors [t * paraphrases, D], text_ids, owner [n]); sample i describes
    base text owner[i]; its descriptions are that text's paraphrases (noisy copies when paraphrases > 1)."""
    rng = np.random.default_rng(seed)
    A = np.random.default_rng(map_seed).standard_normal((d_in, D)).astype(np.float32) / np.sqrt(D)  # the fixed map
    base = normalize(rng.standard_normal((t, D)))  # [t, D]
    owner = rng.integers(0, t, n)  # [n]
    feats = base[owner] @ A.T + noise * rng.standard_normal((n, d_in)).astype(np.float32)  # [n, d_in]
    if paraphrases == 1:
        return feats, base, [[int(o)] for o in owner], owner
    jitter = 0.25 * rng.standard_normal((t * paraphrases, D)) / np.sqrt(D)  # paraphrases: cosine ≈ 0.97 to the base
    texts = normalize(np.repeat(base, paraphrases, axis=0) + jitter)  # [t * paraphrases, D]
    return feats, texts, [list(range(o * paraphrases, (o + 1) * paraphrases)) for o in owner], owner


def recall_at_1(head: LinearHead, feats: np.ndarray, texts: np.ndarray, own: list[list[int]]) -> float:
    """NumPy reference: retrieve among all ``texts``; a hit when the top-1 is one of the sample's own."""
    top = np.argmax(head.project(feats) @ texts.T, axis=1)  # [n]
    return float(np.mean([int(top[i]) in own[i] for i in range(len(feats))]))


def val_recall_at_1(head: LinearHead, feats: np.ndarray, texts: np.ndarray, ids: list[list[int]], seed: int) -> float:
    """NumPy reference for the reported val R@1: the same seeded split, retrieval among the val texts."""
    _, val = _split(len(feats), 0.1, np.arange(len(feats)), np.random.default_rng(seed))
    cand = sorted({t for i in val for t in ids[i]})
    own = [[cand.index(t) for t in ids[i]] for i in val]
    return recall_at_1(head, feats[val], texts[cand], own)


@pytest.fixture(scope="module")
def trained():
    feats, texts, ids, owner = synthetic()
    result = train_head(feats, texts, ids, HeadTrainConfig(**FAST), CPU)
    return feats, texts, ids, owner, result


def test_trained_head_retrieves_own_descriptions_and_untrained_is_chance(trained):
    feats, texts, ids, _, result = trained
    m = result.metrics
    assert m["n_train"] + m["n_val"] == N and 150 <= m["n_val"] <= 250
    chance = 1 / m["val_texts"]  # retrieval among the distinct descriptions of the val set
    assert 100 < m["val_texts"] <= m["n_val"]
    assert m["val_r1"] >= 0.9 and m["val_r5"] >= m["val_r1"]
    assert m["untrained_val_r1"] <= 5 * chance
    assert m["val_loss"] < m["untrained_val_loss"]
    assert [h["epoch"] for h in result.history] == list(range(1, m["epochs"] + 1))
    assert m["val_r1"] == val_recall_at_1(result.head, feats, texts, ids, seed=0)
    assert m["untrained_val_r1"] == val_recall_at_1(LinearHead.init(D_IN, D, 0), feats, texts, ids, seed=0)
    # a fresh held-out set (new texts, same map): the NumPy projection retrieves them too
    feats2, texts2, ids2, _ = synthetic(seed=99, n=500)
    assert recall_at_1(result.head, feats2, texts2, ids2) >= 0.9
    assert recall_at_1(LinearHead.init(D_IN, D, 0), feats2, texts2, ids2) <= 5 / T + 0.01


def test_groups_keep_a_description_on_one_side(trained):
    feats, texts, ids, owner, _ = trained
    train, val = _split(N, 0.1, owner, np.random.default_rng(0))
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(N)) and 150 <= len(val) <= 250
    assert not set(owner[train].tolist()) & set(owner[val].tolist())
    # groups = owner: every val description is unseen in training, so R@1 there is generalisation
    result = train_head(feats, texts, ids, HeadTrainConfig(**FAST), CPU, groups=owner.tolist())
    assert result.metrics["val_r1"] >= 0.9 and result.metrics["val_texts"] < result.metrics["n_val"]
    with pytest.raises(ValueError, match="all samples are in one group"):
        train_head(feats[:10], texts, ids[:10], HeadTrainConfig(), CPU, groups=[7] * 10)


def test_several_descriptions_per_sample():
    feats, texts, ids, owner = synthetic(seed=3, paraphrases=3)
    result = train_head(feats, texts, ids, HeadTrainConfig(**FAST), CPU, groups=owner.tolist())
    assert result.metrics["val_r1"] >= 0.9, result.metrics


def test_symmetric_loss_and_learned_temperature():
    feats, texts, ids, _ = synthetic(seed=4)
    result = train_head(feats, texts, ids, HeadTrainConfig(**FAST, symmetric=True, learn_temperature=True), CPU)
    assert result.metrics["val_r1"] >= 0.9
    assert result.metrics["temperature"] != pytest.approx(0.07, abs=1e-4)
    assert 0.01 <= result.metrics["temperature"] <= 10
    fixed = train_head(feats, texts, ids, HeadTrainConfig(max_epochs=2, symmetric=True), CPU)
    assert fixed.metrics["temperature"] == 0.07 and all(h["temperature"] == 0.07 for h in fixed.history)


def test_training_is_reproducible(trained):
    feats, texts, ids, _, _ = trained
    cfg = HeadTrainConfig(max_epochs=3, seed=7)
    a, b = (train_head(feats, texts, ids, cfg, CPU) for _ in range(2))
    np.testing.assert_array_equal(a.head.weight, b.head.weight)
    np.testing.assert_array_equal(a.head.bias, b.head.bias)
    strip = lambda rows: [{k: v for k, v in r.items() if not k.endswith("seconds")} for r in rows]  # noqa: E731
    assert strip(a.history) == strip(b.history)
    c = train_head(feats, texts, ids, HeadTrainConfig(max_epochs=3, seed=8), CPU)
    assert not np.array_equal(a.head.weight, c.head.weight)


def test_early_stopping_restores_the_best_epoch(caplog: pytest.LogCaptureFixture):
    # few samples, wide features that are mostly noise, unseen val descriptions: the head memorises the
    # training noise within a few epochs and val loss turns up
    feats, texts, ids, _ = synthetic(seed=5, n=300, t=5000, d_in=512, noise=3.0)
    cfg = HeadTrainConfig(max_epochs=200, patience=2, lr=1e-2, batch_size=64, val_fraction=0.2)
    result = train_head(feats, texts, ids, cfg, CPU)
    m, losses = result.metrics, [h["val_loss"] for h in result.history]
    assert m["epochs"] < 50
    assert m["best_epoch"] == 1 + int(np.argmin(losses)) and m["epochs"] == m["best_epoch"] + cfg.patience
    assert m["val_loss"] == min(losses)
    # the same run stopped by max_epochs at the best epoch ends with the same weights: they were restored
    assert not m["stopped_improving"] and "still improving" not in caplog.text
    with caplog.at_level("WARNING", logger="unibind.indexer.training.infonce"):
        short = train_head(feats, texts, ids, dataclass_replace(cfg, max_epochs=m["best_epoch"]), CPU)
    np.testing.assert_array_equal(short.head.weight, result.head.weight)
    # that run ended at its cap on an improving epoch: it says so, and how to train longer
    assert short.metrics["stopped_improving"]
    assert (f"stopped at its cap of {m['best_epoch']} epochs while the validation loss was still improving "
            f"(best epoch {m['best_epoch']}): train longer (--epochs {2 * m['best_epoch']})") in caplog.text


def dataclass_replace(cfg: HeadTrainConfig, **changes: object) -> HeadTrainConfig:
    return HeadTrainConfig.from_dict({**cfg.to_dict(), **changes})


def test_no_validation_trains_max_epochs():
    feats, texts, ids, _ = synthetic(seed=6, n=300)
    result = train_head(feats, texts, ids, HeadTrainConfig(max_epochs=3, val_fraction=0.0), CPU)
    assert result.metrics["epochs"] == 3 and result.metrics["n_val"] == 0
    assert math.isnan(result.metrics["val_r1"]) and math.isnan(result.metrics["untrained_val_r1"])


def test_shared_descriptions_are_not_negatives():
    # every sample's only description is text 0: all other columns are masked, so the loss is exactly 0
    feats, texts, _, _ = synthetic(seed=7, n=200)
    result = train_head(feats, texts, [[0]] * 200, HeadTrainConfig(max_epochs=2, val_fraction=0.0), CPU)
    assert all(h["train_loss"] == 0.0 for h in result.history)


def test_own_mask_matches_a_brute_force_reference():
    rng = np.random.default_rng(0)
    ids = [sorted(set(rng.integers(0, 12, rng.integers(1, 4)).tolist())) for _ in range(40)]
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in ids])])
    flat = np.array(list(itertools.chain.from_iterable(ids)))
    rows = rng.permutation(40)[:16]
    picks = np.array([rng.choice(ids[r]) for r in rows])
    expect = np.array([[i != k and picks[k] in ids[r] for k in range(16)] for i, r in enumerate(rows)])
    np.testing.assert_array_equal(_own_mask(rows, picks, offsets, flat), expect)


def test_head_init_project_and_torch_round_trip():
    torch.manual_seed(3)
    reference = torch.nn.Linear(D_IN, D)  # torch's own default initialisation
    head = LinearHead.init(D_IN, D, 3)
    np.testing.assert_array_equal(head.weight, reference.weight.detach().numpy())
    np.testing.assert_array_equal(head.bias, reference.bias.detach().numpy())
    x = np.random.default_rng(0).standard_normal((5, D_IN)).astype(np.float32)
    out = head.project(x)
    assert out.shape == (5, D) and out.dtype == np.float32
    expect = torch.nn.functional.normalize(head.to_torch(CPU)(torch.from_numpy(x)), dim=-1).detach().numpy()
    np.testing.assert_allclose(out, expect, rtol=1e-5, atol=1e-6)
    back = LinearHead.from_torch(head.to_torch(CPU))
    np.testing.assert_array_equal(back.weight, head.weight)
    with pytest.raises(ValueError, match="features have 384 dimensions, the head expects 96"):
        head.project(np.ones((2, 384), dtype=np.float32))


def test_save_load_round_trip_and_integrity(tmp_path: Path):
    from safetensors.numpy import save_file

    head = LinearHead.init(D_IN, D, 1)
    path = tmp_path / "heads" / "audio.safetensors"
    digest, size = head.save(path, {"modality": "audio", "config": '{"lr": 0.001}'})
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest() and size == path.stat().st_size
    assert [p.name for p in path.parent.iterdir()] == ["audio.safetensors"]  # no temp file left
    loaded, meta = LinearHead.load(path, expect_sha256=digest)
    np.testing.assert_array_equal(loaded.weight, head.weight)
    np.testing.assert_array_equal(loaded.bias, head.bias)
    assert meta == {"modality": "audio", "config": '{"lr": 0.001}'}

    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="file changed since it was recorded"):
        LinearHead.load(path, expect_sha256=digest)
    path.write_bytes(b"\x00garbage, not safetensors")
    with pytest.raises(ValueError, match="not a readable safetensors head file"):
        LinearHead.load(path)
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        LinearHead.load(tmp_path / "missing.safetensors")
    save_file({"weight": head.weight}, str(path))
    with pytest.raises(ValueError, match="missing tensor.*bias"):
        LinearHead.load(path)
    save_file({"weight": head.weight, "bias": np.zeros(D + 1, dtype=np.float32)}, str(path))
    with pytest.raises(ValueError, match=r"bias has shape \(65,\), expected \(64,\)"):
        LinearHead.load(path)
    with pytest.raises(ValueError, match="str to str"):
        head.save(path, {"epochs": 3})  # type: ignore[dict-item]


def test_config_validation():
    cfg = HeadTrainConfig(temperature=0.05, symmetric=True, batch_size=32)
    assert HeadTrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown head training option.*epochs, tau"):
        HeadTrainConfig.from_dict({"tau": 0.1, "epochs": 3})
    for bad, msg in [
        (dict(temperature=0.0), "temperature must be in"), (dict(lr=-1.0), "lr must be > 0"),
        (dict(batch_size=1), "batch_size must be >= 2"), (dict(val_fraction=1.0), r"val_fraction must be in \[0, 1\)"),
        (dict(patience=0), "patience must be >= 1"), (dict(max_epochs=2.5), "max_epochs must be an integer"),
        (dict(learn_temperature="yes"), "learn_temperature must be true or false"),
        (dict(weight_decay=float("nan")), "weight_decay must be a finite number"),
    ]:
        with pytest.raises(ValueError, match=msg):
            HeadTrainConfig(**bad)


def test_bad_inputs_are_named():
    feats, texts, ids, _ = synthetic(seed=8, n=20)
    cfg = HeadTrainConfig(max_epochs=1)
    nan = feats.copy()
    nan[4, 2] = np.nan
    for args, msg in [
        ((nan, texts, ids), "features row 4 contains NaN"),
        ((feats, texts, ids[:-1] + [[T]]), f"sample 19: text id {T} is out of range"),
        ((feats, texts, ids[:3] + [[]] + ids[4:]), "sample 3 has no descriptions"),
        ((feats, texts, ids[:-1]), "text_ids has 19 entries, features have 20 rows"),
        ((feats[:1], texts, ids[:1]), "N >= 2"),
    ]:
        with pytest.raises(ValueError, match=msg):
            train_head(*args, cfg, CPU)


def test_data_digest_covers_features_texts_and_pairing():
    feats, _, ids, _ = synthetic(seed=9, n=10)
    names = [f"description {i}" for i in range(T)]
    d0 = data_digest(feats, names, ids)
    assert d0 == data_digest(feats.copy(), list(names), [list(s) for s in ids])
    changed = feats.copy()
    changed[0, 0] += 1
    assert len({d0, data_digest(changed, names, ids), data_digest(feats, names[:-1] + ["x"], ids),
                data_digest(feats, names, [[0]] + ids[1:])}) == 4


def test_too_few_samples_to_train_is_an_error(cpu) -> None:  # type: ignore[no-untyped-def]
    x = np.ones((2, 4), dtype=np.float32) + np.eye(2, 4, dtype=np.float32)
    z = np.eye(2, 3, dtype=np.float32)
    with pytest.raises(ValueError, match="2 samples leave 1 to train on"):
        train_head(x, z, [[0], [1]], HeadTrainConfig(max_epochs=1), cpu)
