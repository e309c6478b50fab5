"""Labelled datasets for ``unibind eval zero-shot``, named by a SPEC:

- ``imagefolder:DIR``  one sub-folder per class (torchvision's layout)
- ``csv:FILE`` / ``jsonl:FILE``  an ``image`` path, a ``text`` or a feature ``row``, and a ``label`` per line
- ``webdataset:PATTERN``  tar shards with an image and a ``cls`` or ``txt`` entry per sample, streamed
- ``features:FILE.npy``  a feature modality's rows, with ``--labels FILE``
- ``clip_benchmark:NAME``  a CLIP_benchmark dataset under ``--dataset-root DIR``

Each reads as a stream of batches (:class:`~.base.Batch`); bad samples are one clear error naming the file, or
counted and skipped (:class:`~.base.BadSamples`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from unibind.retrieval.evaluation.datasets.base import BadSamples, Batch, LabelledDataset, match_categories, read_class_names
from unibind.schema.errors import InvalidInput

SPEC_KINDS = ("imagefolder", "csv", "jsonl", "webdataset", "features", "clip_benchmark")
SPEC_HELP = "imagefolder:DIR, csv:FILE, jsonl:FILE, webdataset:PATTERN, features:FILE.npy or clip_benchmark:NAME"

__all__ = ["BadSamples", "Batch", "DatasetOptions", "LabelledDataset", "match_categories", "open_dataset"]


@dataclass(frozen=True)
class DatasetOptions:
    """What a SPEC may need beside itself."""

    class_names: str | None = None  # a file: class names by index
    labels: str | None = None  # features: one label per row
    features: str | None = None  # csv/jsonl with a "row" field: the .npy file the rows index
    dataset_root: str | None = None  # clip_benchmark
    split: str = "test"  # clip_benchmark


def open_dataset(spec: str, options: DatasetOptions = DatasetOptions()) -> LabelledDataset:
    """The dataset a SPEC names (files are checked now; samples are read when batches are asked for)."""
    kind, sep, rest = spec.partition(":")
    if not sep or kind not in SPEC_KINDS or not rest.strip():
        raise InvalidInput(f"dataset {spec!r} is not one of: {SPEC_HELP}")
    rest = rest.strip()
    names = read_class_names(options.class_names) if options.class_names else None
    if kind == "imagefolder":
        from unibind.retrieval.evaluation.datasets.files import ImageFolder

        return ImageFolder(rest, names)
    if kind in ("csv", "jsonl"):
        import numpy as np

        from unibind.retrieval.evaluation.datasets.files import Table

        features = None
        if options.features:
            if not Path(options.features).is_file():
                raise FileNotFoundError(f"features file not found: {options.features}")
            features = np.load(options.features, mmap_mode="r", allow_pickle=False)
        return Table(rest, kind, names, features)
    if kind == "webdataset":
        from unibind.retrieval.evaluation.datasets.webdataset import WebDataset

        return WebDataset(rest, names)
    if kind == "features":
        from unibind.retrieval.evaluation.datasets.features import FeatureRows

        return FeatureRows(rest, options.labels, names)
    from unibind.retrieval.evaluation.datasets.clip_benchmark import ClipBenchmarkDataset

    if names is not None:
        raise InvalidInput("--class-names does not go with clip_benchmark: datasets (they name their classes)")
    return ClipBenchmarkDataset(rest, options.dataset_root, options.split)
