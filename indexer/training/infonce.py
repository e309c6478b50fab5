"""Training a modality head with InfoNCE against the text embeddings of each sample's own descriptions.

Each step: v = normalize(Linear(x)) for a batch of samples, one of each sample's descriptions z (drawn
afresh every epoch), logits = v @ z.T / τ, loss = cross-entropy towards the diagonal (UniBind's InfoNCE).
A column whose text is one of the row's own descriptions (two samples drew the same description, or
share descriptions, e.g. category-level ones) is not a negative: it is masked out (-inf), except the row's
own column. Optional: symmetric loss (mean with the text→sample direction), learned temperature
(log 1/τ, as CLIP's logit_scale, capped at 100). AdamW; weight decay on the weight only. A seeded
validation split (optionally by groups) drives early stopping; the best epoch's weights are kept.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from unibind.indexer.runtime.device import Device
from unibind.indexer.modalities.head import LinearHead
from unibind.indexer.runtime.vectors import normalize
from unibind.schema.errors import InvalidInput

log = logging.getLogger(__name__)

PROGRESS_MIN_PAIR_EPOCHS = 2_000_000  # show a progress bar when N * max_epochs is at least this
MAX_LOGIT_SCALE = math.log(100.0)  # a learned temperature never drops below 1/100, as in CLIP
EVAL_CHUNK = 2048  # validation queries scored at once


@dataclass(frozen=True)
class HeadTrainConfig:
    temperature: float = 0.07
    learn_temperature: bool = False
    symmetric: bool = False
    lr: float = 1e-3
    weight_decay: float = 0.01
    batch_size: int = 256
    max_epochs: int = 100
    patience: int = 5  # epochs without a val-loss improvement before stopping
    val_fraction: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.type == "bool" and not isinstance(v, bool):
                raise InvalidInput(f"{f.name} must be true or false, got {v!r}")
            if f.type == "int" and (isinstance(v, bool) or not isinstance(v, int)):
                raise InvalidInput(f"{f.name} must be an integer, got {v!r}")
            if f.type == "float":
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                    raise InvalidInput(f"{f.name} must be a finite number, got {v!r}")
                object.__setattr__(self, f.name, float(v))
        checks = [
            ("temperature", 1 / 100 <= self.temperature <= 10, "in [0.01, 10]"),
            ("lr", self.lr > 0, "> 0"),
            ("weight_decay", self.weight_decay >= 0, ">= 0"),
            ("batch_size", self.batch_size >= 2, ">= 2 (a batch needs negatives)"),
            ("max_epochs", self.max_epochs >= 1, ">= 1"),
            ("patience", self.patience >= 1, ">= 1"),
            ("val_fraction", 0 <= self.val_fraction < 1, "in [0, 1)"),
            ("seed", self.seed >= 0, ">= 0"),
        ]
        for name, ok, rule in checks:
            if not ok:
                raise InvalidInput(f"{name} must be {rule}, got {getattr(self, name)!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HeadTrainConfig:
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise InvalidInput(f"unknown head training option(s): {', '.join(unknown)}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TrainResult:
    head: LinearHead
    metrics: dict[str, float | int]
    history: list[dict[str, float | int]]


def data_digest(features: np.ndarray, texts: Sequence[str], text_ids: Sequence[Sequence[int]]) -> str:
    """sha256 over the features (float32 bytes and shape), the texts and the sample→texts pairing."""
    f = np.ascontiguousarray(features, dtype="<f4")
    h = hashlib.sha256(f"features {f.shape}\n".encode())
    h.update(f.tobytes())
    h.update(f"texts {len(texts)}\n".encode())
    for t in texts:
        b = t.encode("utf-8")
        h.update(len(b).to_bytes(8, "little") + b)
    offsets, flat = _csr(text_ids)
    h.update(f"pairs {len(offsets) - 1}\n".encode())
    h.update(offsets.astype("<i8").tobytes() + flat.astype("<i8").tobytes())
    return h.hexdigest()


def _csr(text_ids: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Ragged text ids as (offsets [N+1], flat ids): sample i owns flat[offsets[i]:offsets[i+1]]."""
    lengths = np.fromiter((len(s) for s in text_ids), dtype=np.int64, count=len(text_ids))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    flat = np.fromiter((int(t) for s in text_ids for t in s), dtype=np.int64, count=int(offsets[-1]))
    return offsets, flat


def _check_inputs(features: np.ndarray, text_vectors: np.ndarray, text_ids: Sequence[Sequence[int]],
                  groups: Sequence[int] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validated (features [N, d_in], unit text vectors [T, d], offsets, flat ids, groups [N])."""
    x = np.ascontiguousarray(features, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 1:
        raise InvalidInput(f"features must be [N, d_in] with N >= 2, got shape {x.shape}")
    bad = np.argwhere(~np.isfinite(x).all(axis=1))
    if len(bad):
        raise InvalidInput(f"features row {int(bad[0, 0])} contains NaN or inf")
    if np.ndim(text_vectors) != 2:
        raise InvalidInput(f"text_vectors must be [T, d], got shape {np.shape(text_vectors)}")
    try:
        z = normalize(text_vectors)
    except ValueError as e:
        raise InvalidInput(f"text_vectors: {e}") from e
    if len(text_ids) != len(x):
        raise InvalidInput(f"text_ids has {len(text_ids)} entries, features have {len(x)} rows")
    offsets, flat = _csr(text_ids)
    empty = np.flatnonzero(offsets[1:] == offsets[:-1])
    if len(empty):
        raise InvalidInput(f"sample {int(empty[0])} has no descriptions (every sample needs at least one)")
    out = np.flatnonzero((flat < 0) | (flat >= len(z)))
    if len(out):
        sample = int(np.searchsorted(offsets, out[0], side="right") - 1)
        raise InvalidInput(f"sample {sample}: text id {int(flat[out[0]])} is out of range (0..{len(z) - 1})")
    g = np.arange(len(x)) if groups is None else np.asarray(groups)
    if g.shape != (len(x),):
        raise InvalidInput(f"groups has {len(g)} entries, features have {len(x)} rows")
    return x, z, offsets, flat, g


def _split(n: int, val_fraction: float, groups: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train, val) sample indices; a group never straddles the split; train is never empty."""
    if val_fraction == 0:
        return rng.permutation(n), np.empty(0, dtype=np.int64)
    uniq, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    if len(uniq) < 2:
        raise InvalidInput("groups: all samples are in one group, so no validation split can be held out")
    order = rng.permutation(len(uniq))
    target = min(n - 1, max(1, round(val_fraction * n)))
    taken = np.cumsum(counts[order]) <= target
    taken[0] = True  # at least one group
    taken[-1] = False  # at least one group left to train on
    is_val = np.isin(inverse, order[taken])
    return rng.permutation(np.flatnonzero(~is_val)), rng.permutation(np.flatnonzero(is_val))


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The concatenation of range(starts[i], starts[i] + lengths[i]) over i, vectorised."""
    return np.repeat(starts, lengths) + np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)


def _owned(rows: np.ndarray, offsets: np.ndarray, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(local row, own text id) pairs of the samples ``rows``: two [P] arrays."""
    lengths = offsets[rows + 1] - offsets[rows]  # [B]
    return np.repeat(np.arange(len(rows)), lengths), flat[_ranges(offsets[rows], lengths)]


def _own_mask(rows: np.ndarray, picks: np.ndarray, offsets: np.ndarray, flat: np.ndarray) -> np.ndarray:
    """[B, B] bool: True where column k's picked text is one of row i's own descriptions, k != i."""
    owner, own = _owned(rows, offsets, flat)  # [P], [P]
    order = np.argsort(picks, kind="stable")
    lo = np.searchsorted(picks[order], own, side="left")  # [P]
    n = np.searchsorted(picks[order], own, side="right") - lo  # [P] columns that picked this own text
    r, c = np.repeat(owner, n), order[_ranges(lo, n)]
    mask = np.zeros((len(rows), len(rows)), dtype=bool)
    mask[r, c] = True
    np.fill_diagonal(mask, False)
    return mask


def _draw(offsets: np.ndarray, flat: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One description per sample: [N] text ids."""
    counts = offsets[1:] - offsets[:-1]
    return flat[offsets[:-1] + rng.integers(0, counts)]


def train_head(
    features: np.ndarray,
    text_vectors: np.ndarray,
    text_ids: Sequence[Sequence[int]],
    config: HeadTrainConfig,
    device: Device,
    *,
    progress: bool | None = None,
    groups: Sequence[int] | None = None,
) -> TrainResult:
    """Train ``Linear(d_in, d)`` so that each sample's projection retrieves its own descriptions.

    features [N, d_in]; text_vectors [T, d] (unit rows); text_ids[i]: indices into text_vectors of sample
    i's descriptions (one or more); groups[i]: samples with the same group stay on one side of the split."""
    import torch
    import torch.nn.functional as F

    started = time.perf_counter()
    x_np, z_np, offsets, flat, g_np = _check_inputs(features, text_vectors, text_ids, groups)
    rng = np.random.default_rng(config.seed)
    train_idx, val_idx = _split(len(x_np), config.val_fraction, g_np, rng)
    if len(train_idx) < 2:
        raise InvalidInput(f"{len(x_np)} samples leave {len(train_idx)} to train on after the validation split "
                           f"(val_fraction {config.val_fraction}); InfoNCE needs at least 2 per batch")
    val_picks = _draw(offsets, flat, rng)[val_idx]  # [n_val], fixed so val loss is comparable across epochs
    dev = device.torch
    X = torch.from_numpy(x_np).to(dev)  # [N, d_in]
    Z = torch.from_numpy(z_np).to(dev)  # [T, d]
    head0 = LinearHead.init(x_np.shape[1], z_np.shape[1], config.seed)
    linear = head0.to_torch(device)
    logit_scale = torch.nn.Parameter(torch.tensor(math.log(1 / config.temperature), device=dev),
                                     requires_grad=config.learn_temperature)
    groups_opt = [{"params": [linear.weight], "weight_decay": config.weight_decay},
                  {"params": [linear.bias], "weight_decay": 0.0}]
    if config.learn_temperature:
        groups_opt.append({"params": [logit_scale], "weight_decay": 0.0})
    opt = torch.optim.AdamW(groups_opt, lr=config.lr)

    def on_device(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a).to(dev)

    def temperature(scale: torch.Tensor) -> float:
        return float(1 / scale.exp().item()) if config.learn_temperature else config.temperature

    def batch_loss(rows: np.ndarray, picks: np.ndarray, rows_t: torch.Tensor, picks_t: torch.Tensor) -> torch.Tensor:
        """Mean InfoNCE loss of one batch; ``*_t`` are the same sample and text indices on the device."""
        v = F.normalize(linear(X[rows_t]), dim=-1)  # [B, d]
        logits = logit_scale.exp() * (v @ Z[picks_t].T)  # [B, B]
        mask = _own_mask(rows, picks, offsets, flat)  # [B, B], the row's own texts in other columns
        if mask.any():
            logits = logits.masked_fill(on_device(mask), float("-inf"))
        target = torch.arange(len(rows), device=dev)  # [B]
        loss = F.cross_entropy(logits, target)
        return (loss + F.cross_entropy(logits.T, target)) / 2 if config.symmetric else loss

    # validation retrieval: each val sample against the distinct descriptions of the val set
    val_owner, val_own = _owned(val_idx, offsets, flat)  # [P], [P]
    cand = np.unique(val_own)  # [C]
    own_keys = np.unique(val_owner * len(z_np) + val_own)  # (val row, own text) as one int64 key
    val_idx_t, val_picks_t = on_device(val_idx), on_device(val_picks)

    @torch.no_grad()
    def evaluate() -> dict[str, float]:
        if not len(val_idx):
            return {"val_loss": math.nan, "val_r1": math.nan, "val_r5": math.nan}
        total = torch.zeros((), device=dev)
        for s in range(0, len(val_idx), config.batch_size):
            b = slice(s, s + config.batch_size)
            total += batch_loss(val_idx[b], val_picks[b], val_idx_t[b], val_picks_t[b]) * len(val_idx[b])
        zc, k = Z[on_device(cand)], min(5, len(cand))  # [C, d]
        hits = np.zeros((len(val_idx), k), dtype=bool)
        for s in range(0, len(val_idx), EVAL_CHUNK):
            v = F.normalize(linear(X[val_idx_t[s : s + EVAL_CHUNK]]), dim=-1)  # [b, d]
            top = cand[(v @ zc.T).topk(k, dim=1).indices.cpu().numpy()]  # [b, k] text ids, best first
            hits[s : s + len(top)] = np.isin(np.arange(s, s + len(top))[:, None] * len(z_np) + top, own_keys)
        return {"val_loss": total.item() / len(val_idx), "val_r1": float(hits[:, 0].mean()),
                "val_r5": float(hits.any(axis=1).mean())}

    untrained = evaluate()
    best = {**untrained, "val_loss": math.inf}  # the best epoch is one of 1..epochs
    best_state = ({k: v.clone() for k, v in linear.state_dict().items()}, logit_scale.detach().clone())
    best_epoch, stale, history = 0, 0, []
    show = len(x_np) * config.max_epochs >= PROGRESS_MIN_PAIR_EPOCHS if progress is None else progress
    bar = tqdm(range(1, config.max_epochs + 1), desc="train head", unit="epoch", disable=not show, leave=False)
    for epoch in bar:
        t0 = time.perf_counter()
        order = train_idx[rng.permutation(len(train_idx))]
        picks = _draw(offsets, flat, rng)[order]  # [n_train]
        order_t, picks_t = on_device(order), on_device(picks)
        total, seen = torch.zeros((), device=dev), 0  # summed on the device: no sync per step
        for s in range(0, len(order), config.batch_size):
            b = slice(s, s + config.batch_size)
            if len(order[b]) < 2:  # a lone sample has no negatives
                continue
            loss = batch_loss(order[b], picks[b], order_t[b], picks_t[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if config.learn_temperature:
                with torch.no_grad():
                    logit_scale.clamp_(max=MAX_LOGIT_SCALE)
            total, seen = total + loss.detach() * len(order[b]), seen + len(order[b])
        train_loss = total.item() / max(seen, 1)  # waits for the device
        t1 = time.perf_counter()
        ev = evaluate()
        row = {"epoch": epoch, "train_loss": train_loss, **ev,
               "temperature": temperature(logit_scale),
               "train_seconds": t1 - t0, "val_seconds": time.perf_counter() - t1}
        history.append(row)
        log.debug("head epoch %d: train loss %.4f, val loss %.4f, val R@1 %.3f", epoch, row["train_loss"],
                  ev["val_loss"], ev["val_r1"])
        bar.set_postfix(loss=f"{row['train_loss']:.3f}", val_r1=f"{ev['val_r1']:.3f}", refresh=False)  # no redraw
        if not len(val_idx) or ev["val_loss"] < best["val_loss"]:
            best, best_epoch, stale = {**ev, "train_loss": row["train_loss"]}, epoch, 0
            best_state = ({k: v.clone() for k, v in linear.state_dict().items()}, logit_scale.detach().clone())
        else:
            stale += 1
            if stale >= config.patience:
                log.info("head training: early stop at epoch %d (best epoch %d)", epoch, best_epoch)
                break
    bar.close()
    linear.load_state_dict(best_state[0])
    metrics: dict[str, float | int] = {
        "val_r1": best["val_r1"], "val_r5": best["val_r5"], "val_loss": best["val_loss"],
        "untrained_val_r1": untrained["val_r1"], "untrained_val_loss": untrained["val_loss"],
        "train_loss": best.get("train_loss", math.nan), "epochs": len(history), "best_epoch": best_epoch,
        "n_train": len(train_idx), "n_val": len(val_idx), "val_texts": len(cand),
        "seconds": time.perf_counter() - started,
        "temperature": temperature(best_state[1]),
        # the cap ended it while the validation loss still improved: more epochs would likely help
        "stopped_improving": len(val_idx) > 0 and len(history) == config.max_epochs and best_epoch == len(history),
    }
    if metrics["stopped_improving"]:
        log.warning("head training stopped at its cap of %d epochs while the validation loss was still improving "
                    "(best epoch %d): train longer (--epochs %d) for a better head", config.max_epochs, best_epoch,
                    2 * config.max_epochs)
    log.info("head trained: %d epochs (best %d), val R@1 %.3f (untrained %.3f), %.1fs", metrics["epochs"],
             best_epoch, metrics["val_r1"], metrics["untrained_val_r1"], metrics["seconds"])
    return TrainResult(LinearHead.from_torch(linear), metrics, history)
