"""Tests for unibind.indexer.readers.features: round trips of .npy / .pt / .jsonl and every bad input."""

from __future__ import annotations

import codecs
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from unibind.indexer.readers.features import (
    FeatureError,
    FeatureSet,
    parse_row_index,
    read_features,
)
from unibind.indexer.readers.jsonio import read_jsonl
from unibind.schema.errors import InvalidInput


def vecs(n: int = 5, d: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def write_jsonl(path: Path, lines: list[object]) -> Path:
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return path


def error_of(path: Path, **kw: object) -> str:
    with pytest.raises(FeatureError) as excinfo:
        read_features(path, **kw)  # type: ignore[arg-type]
    msg = str(excinfo.value)
    assert str(path) in msg, msg
    return msg


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.int64, np.uint8, ">f4"])
def test_npy_round_trip(tmp_path: Path, dtype: object) -> None:
    a = (vecs() * 10).astype(dtype)
    p = tmp_path / "f.npy"
    np.save(p, a)
    fs = read_features(p, dim=8)
    assert isinstance(fs, FeatureSet) and fs.source == str(p) and fs.rows is None
    assert fs.vectors.dtype == np.float32 and fs.vectors.flags.c_contiguous
    assert not isinstance(fs.vectors, np.memmap)
    assert len(fs) == 5 and fs.dim == 8
    np.testing.assert_array_equal(fs.vectors, a.astype(np.float32))


def test_npy_fortran_order_and_one_vector(tmp_path: Path) -> None:
    a = vecs()
    np.save(tmp_path / "f.npy", np.asfortranarray(a))
    fs = read_features(tmp_path / "f.npy")
    assert fs.vectors.flags.c_contiguous
    np.testing.assert_array_equal(fs.vectors, a)
    np.save(tmp_path / "one.npy", a[2])
    one = read_features(tmp_path / "one.npy", dim=8)
    assert one.vectors.shape == (1, 8)
    np.testing.assert_array_equal(one.vectors, a[2:3])


@pytest.mark.parametrize("suffix", [".pt", ".pth"])
def test_pt_tensor_round_trip(tmp_path: Path, suffix: str) -> None:
    a = vecs()
    p = tmp_path / f"f{suffix}"
    torch.save(torch.from_numpy(a).double().requires_grad_(), p)
    fs = read_features(p, dim=8)
    assert fs.vectors.dtype == np.float32 and fs.vectors.flags.c_contiguous
    np.testing.assert_array_equal(fs.vectors, a)


@pytest.mark.parametrize("payload", [
    lambda t: {"features": t, "labels": torch.arange(5)},
    lambda t: {"vectors": t},
    lambda t: {"embeddings": t, "names": ["a", "b"]},
    lambda t: {"whatever": t, "n": 5},
])
def test_pt_dict_round_trip(tmp_path: Path, payload: object) -> None:
    a = vecs()
    p = tmp_path / "f.pt"
    torch.save(payload(torch.from_numpy(a)), p)  # type: ignore[operator]
    np.testing.assert_array_equal(read_features(p).vectors, a)


def test_pt_integer_and_half_tensors(tmp_path: Path) -> None:
    torch.save(torch.arange(12).reshape(3, 4), tmp_path / "i.pt")
    np.testing.assert_array_equal(read_features(tmp_path / "i.pt").vectors,
                                  np.arange(12, dtype=np.float32).reshape(3, 4))
    h = torch.tensor([[0.5, -1.25], [2.0, 3.0]], dtype=torch.bfloat16)
    torch.save(h, tmp_path / "h.pt")
    np.testing.assert_array_equal(read_features(tmp_path / "h.pt").vectors,
                                  h.float().numpy())


def test_jsonl_round_trip_with_rows(tmp_path: Path) -> None:
    a = vecs(4, 3)
    lines = [
        {"vector": a[0].tolist(), "uri": "a.wav", "label": "dog"},
        {"features": a[1].tolist()},
        a[2].tolist(),
        {"embedding": a[3].tolist(), "meta": {"k": [1, 2]}},
    ]
    p = tmp_path / "f.jsonl"
    p.write_text(json.dumps(lines[0]) + "\n\n  \n" + "\n".join(json.dumps(x) for x in lines[1:]))
    fs = read_features(p, dim=3, modality="audio")
    np.testing.assert_array_equal(fs.vectors, a)  # float32 -> JSON -> float32 is exact
    assert fs.rows == [{"uri": "a.wav", "label": "dog"}, {}, {}, {"meta": {"k": [1, 2]}}]


def test_jsonl_bom_and_integers(tmp_path: Path) -> None:
    p = tmp_path / "f.jsonl"
    p.write_bytes(codecs.BOM_UTF8 + b"[1, 2]\r\n[3, 4.5]\r\n")
    np.testing.assert_array_equal(read_features(p).vectors,
                                  np.array([[1, 2], [3, 4.5]], dtype=np.float32))


# --------------------------------------------------------------------------- bad files


def test_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "nope.npy"
    with pytest.raises(FileNotFoundError, match=re.escape(f"features file not found: {p}")):
        read_features(p)


def test_unknown_suffix_lists_supported(tmp_path: Path) -> None:
    p = tmp_path / "f.csv"
    p.write_text("1,2\n")
    msg = error_of(p)
    assert "unsupported features file type '.csv'" in msg
    assert all(s in msg for s in (".npy", ".pt", ".pth", ".jsonl")), msg


@pytest.mark.parametrize("content,rule", [
    (b"", "the file is empty; expected a .npy array"),
    (b"not an npy file at all", "not a .npy file (no NumPy header)"),
    (b"\x93NUMPY\x01\x00garbage", "cannot read as a .npy array: bad header"),
    (b"\x93NUMPY\x09\x00" + b"x" * 200, "cannot read as a .npy array: bad header"),
])
def test_corrupt_npy(tmp_path: Path, content: bytes, rule: str) -> None:
    p = tmp_path / "bad.npy"
    p.write_bytes(content)
    assert f"bad.npy: {rule}" in error_of(p)


def test_truncated_npy(tmp_path: Path) -> None:
    p = tmp_path / "t.npy"
    np.save(p, vecs(100, 16))
    p.write_bytes(p.read_bytes()[:-100])
    assert "t.npy: truncated: the header says shape (100, 16) of float32 (6400 bytes of data) " \
           "but the file holds 6300" in error_of(p)


def test_npz_under_npy_name(tmp_path: Path) -> None:
    p = tmp_path / "z.npy"
    with open(p, "wb") as f:
        np.savez(f, a=vecs())
    assert "z.npy: an .npz archive (no NumPy header)" in error_of(p)


def test_pickled_object_npy_refused(tmp_path: Path) -> None:
    p = tmp_path / "o.npy"
    np.save(p, np.array([[1, "a"]], dtype=object), allow_pickle=True)
    assert "o.npy: array dtype object is not a real number type" in error_of(p)


@pytest.mark.parametrize("arr,dtype", [
    (np.array([["a", "b"]]), "<U1"),
    (np.ones((2, 2), dtype=np.complex64), "complex64"),
    (np.ones((2, 2), dtype=bool), "bool"),
    (np.zeros(2, dtype=[("x", "f4")]), "[('x', '<f4')]"),
])
def test_non_numeric_npy_dtype(tmp_path: Path, arr: np.ndarray, dtype: str) -> None:
    p = tmp_path / "s.npy"
    np.save(p, arr)
    assert f"s.npy: array dtype {dtype} is not a real number type" in error_of(p)


def test_corrupt_pt(tmp_path: Path) -> None:
    p = tmp_path / "bad.pt"
    p.write_bytes(b"PK\x03\x04 this is not a torch zip")
    assert "bad.pt: cannot read as a torch file: " in error_of(p)


def test_pt_with_code_refused_by_weights_only(tmp_path: Path) -> None:
    p = tmp_path / "obj.pt"
    torch.save({"features": torch.zeros(2, 2), "fn": Path("x")}, p)
    msg = error_of(p)
    assert "obj.pt: holds Python objects that a weights-only torch.load refuses" in msg
    assert "pathlib" in msg and "save only tensors" in msg


@pytest.mark.parametrize("payload,rule", [
    ([torch.zeros(2, 2)], "holds list; expected a tensor"),
    ({"a": torch.zeros(2, 2), "b": torch.zeros(2, 2)}, "exactly one tensor or one of the keys"),
    ({"n": 3}, "exactly one tensor"),
    ({"features": torch.zeros(2, 2), "vectors": torch.zeros(2, 2)}, "more than one of the keys"),
    ({"features": [1.0, 2.0]}, "key 'features' holds list, not a tensor"),
    (torch.ones(2, 2, dtype=torch.complex64), "tensor dtype torch.complex64 is not a real number"),
    (torch.ones(2, 2, dtype=torch.bool), "tensor dtype torch.bool is not a real number"),
])
def test_bad_pt_contents(tmp_path: Path, payload: object, rule: str) -> None:
    p = tmp_path / "f.pt"
    torch.save(payload, p)
    assert rule in error_of(p)


@pytest.mark.parametrize("shape", [(2, 3, 4), ()])
def test_wrong_ndim(tmp_path: Path, shape: tuple[int, ...]) -> None:
    p = tmp_path / "d.npy"
    np.save(p, np.zeros(shape, dtype=np.float32))
    assert f"expected a 2-D array [N, d] (or 1-D [d] for one vector), got shape {shape}" \
        in error_of(p)


def test_wrong_ndim_pt(tmp_path: Path) -> None:
    p = tmp_path / "d.pt"
    torch.save(torch.zeros(2, 3, 4), p)
    assert "got shape (2, 3, 4)" in error_of(p)


def test_zero_rows_and_zero_columns(tmp_path: Path) -> None:
    np.save(tmp_path / "r.npy", np.zeros((0, 512), dtype=np.float32))
    assert "holds no vectors (shape (0, 512))" in error_of(tmp_path / "r.npy")
    np.save(tmp_path / "c.npy", np.zeros((3, 0), dtype=np.float32))
    assert "vectors have 0 dimensions (shape (3, 0))" in error_of(tmp_path / "c.npy")
    np.save(tmp_path / "e.npy", np.zeros((0,), dtype=np.float32))
    assert "vectors have 0 dimensions" in error_of(tmp_path / "e.npy")


def test_dim_mismatch_names_modality(tmp_path: Path) -> None:
    p = tmp_path / "a.npy"
    np.save(p, vecs(3, 384))
    msg = error_of(p, dim=512, modality="audio")
    assert msg == f"{p}: vectors have 384 dimensions, modality audio expects 512"
    assert "vectors have 384 dimensions, the caller expects 512" in error_of(p, dim=512)


def test_nan_and_inf_name_first_row_and_count(tmp_path: Path) -> None:
    a = vecs(10, 4)
    a[3, 1] = np.nan
    a[7, 0] = np.inf
    a[8, 2] = -np.inf
    np.save(tmp_path / "n.npy", a)
    msg = error_of(tmp_path / "n.npy")
    assert "n.npy: row 3 contains NaN or inf (3 of 10 rows do)" in msg
    torch.save(torch.from_numpy(a), tmp_path / "n.pt")
    assert "n.pt: row 3 contains NaN or inf (3 of 10 rows do)" in error_of(tmp_path / "n.pt")


def test_float64_overflow_to_inf(tmp_path: Path) -> None:
    a = np.ones((3, 2))
    a[2, 1] = 1e300
    np.save(tmp_path / "big.npy", a)
    assert "row 2 contains NaN or inf (1 of 3 rows do)" in error_of(tmp_path / "big.npy")


# --------------------------------------------------------------------------- bad JSONL


@pytest.mark.parametrize("lines,rule", [
    (["[1, 2]", "[1, 2", "[3, 4]"], r"f\.jsonl:2: invalid JSON: .*\(column \d+\)"),
    (["[1, 2]", '"text"'], r"f\.jsonl:2: each line must be a JSON object with a \"vector\" array"),
    (["[1, 2]", "7"], r"f\.jsonl:2: each line must be .*\(got number\)"),
    (["[1, 2]", '{"vec": [1, 2]}'], r"f\.jsonl:2: missing the vector: .*\"vector\", \"features\""),
    (['{"vector": [1], "embedding": [2]}'], r"f\.jsonl:1: the object has more than one vector key"),
    (['{"vector": "1, 2"}'], r"f\.jsonl:1: \"vector\" must be an array of numbers \(got string\)"),
    (['{"vector": [1, "2"]}'], r"f\.jsonl:1: \"vector\" entry 1 must be a number \(got string\)"),
    (['[1, true]'], r"f\.jsonl:1: the line entry 1 must be a number \(got boolean\)"),
    (['[1, null]'], r"f\.jsonl:1: the line entry 1 must be a number \(got null\)"),
    (['[1, [2]]'], r"f\.jsonl:1: the line entry 1 must be a number \(got array\)"),
    (["[1, 2]", "", "[1, 2, 3]"],
     r"f\.jsonl:3: the vector has 3 numbers but the one on line 1 has 2"),
    (['{"vector": []}'], r"f\.jsonl:1: the vector is empty \(0 dimensions\)"),
    (['{"vector": [1], "a": 1, "a": 2}'], r"f\.jsonl:1: invalid JSON: duplicate key \"a\""),
    (["", "  "], r"f\.jsonl: holds no vectors \(no non-blank lines\)"),
])
def test_bad_jsonl(tmp_path: Path, lines: list[str], rule: str) -> None:
    msg = error_of(write_jsonl(tmp_path / "f.jsonl", lines))
    assert re.search(rule, msg), msg


def test_jsonl_nan_and_overflow_name_row_and_line(tmp_path: Path) -> None:
    p = write_jsonl(tmp_path / "f.jsonl", ["[1, 2]", "", "[1, NaN]", "[1, 1e39]", "[0, 0]"])
    assert "f.jsonl:3: row 1 contains NaN or inf (2 of 4 rows do)" in error_of(p)


def test_jsonl_dim_mismatch(tmp_path: Path) -> None:
    p = write_jsonl(tmp_path / "f.jsonl", [[1, 2, 3], [4, 5, 6]])
    assert "f.jsonl: vectors have 3 dimensions, modality point expects 4" in \
        error_of(p, dim=4, modality="point")


def test_jsonl_invalid_utf8_names_line_and_offset(tmp_path: Path) -> None:
    raw = b"[1, 2]\n{\"vector\": [1, 2], \"name\": \"caf\xe9\"}\n"
    p = tmp_path / "f.jsonl"
    p.write_bytes(raw)
    assert f"f.jsonl:2: invalid UTF-8 (byte 0xe9 at byte offset {raw.index(0xE9)})" in error_of(p)


def test_read_jsonl_rejects_nan_by_default(tmp_path: Path) -> None:
    p = write_jsonl(tmp_path / "m.jsonl", ['{"a": 1}', '{"a": Infinity}'])
    with pytest.raises(FeatureError, match=re.escape(f"{p}:2: invalid JSON: Infinity is not")):
        read_jsonl(p, what="metadata", error=FeatureError)
    assert read_jsonl(p, what="metadata", error=FeatureError, allow_nan=True)[0] == (1, {"a": 1})


# --------------------------------------------------------------------------- row indices


def test_parse_row_index() -> None:
    assert parse_row_index(0, 3, where="p:1") == 0 and parse_row_index(2, 3, where="p:1") == 2
    assert parse_row_index(10**6, None, where="p:1") == 10**6
    with pytest.raises(InvalidInput, match=r"^p:4: row index 3 is out of range; the features file "
                                         r"has 3 rows \(0\.\.2\)$"):
        parse_row_index(3, 3, where="p:4")
    for bad, shown in ((True, "boolean"), (-1, "-1"), (1.0, "1.0"), ("1", "string"),
                       (None, "null")):
        with pytest.raises(InvalidInput, match=re.escape(
                f"p:2: row index must be a non-negative integer (got {shown})")):
            parse_row_index(bad, 3, where="p:2")
