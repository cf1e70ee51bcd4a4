"""Session fixtures for the training tests: each tiny model is built once per session.

Tests must not modify these folders (copy one first if a test needs to break it).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lorastudio import catalog

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"


def _tiny(tmp_path_factory: pytest.TempPathFactory, family: str) -> Path:
    """Build ``family``'s tiny model once per test session, shared by the xdist workers: a few
    builds take seconds (and tens of seconds when the shipped pretrained tiny transformers are
    stale), and every worker used to build its own. The first worker to need one builds it under a file lock; the folder
    counts only once its ``built`` mark exists, so a build that failed half way is redone."""
    import shutil

    from filelock import FileLock

    from lorastudio.training.tiny import build_tiny_model

    if os.environ.get("PYTEST_XDIST_WORKER") is None:  # one process: its own temp folder
        return build_tiny_model(family, tmp_path_factory.mktemp(f"tiny-{family}") / "model")
    shared = tmp_path_factory.getbasetemp().parent / f"tiny-{family}"  # the session's, above the workers'
    with FileLock(f"{shared}.lock"):
        if not (shared / "built").is_file():
            shutil.rmtree(shared, ignore_errors=True)
            build_tiny_model(family, shared / "model")
            (shared / "built").touch()
    return shared / "model"


@pytest.fixture(scope="session")
def tiny_kontext_dir(tmp_path_factory) -> Path:
    """A tiny FluxKontextPipeline folder (FLUX.1 Kontext layout)."""
    return _tiny(tmp_path_factory, "kontext")


@pytest.fixture(scope="session")
def tiny_flux_dir(tmp_path_factory) -> Path:
    """A tiny FluxPipeline folder (FLUX.1-dev text-to-image layout)."""
    return _tiny(tmp_path_factory, "flux")


@pytest.fixture(scope="session")
def tiny_qwen_edit_plus_dir(tmp_path_factory) -> Path:
    """A tiny QwenImageEditPlusPipeline folder (2511 layout: ``zero_cond_t`` on)."""
    return _tiny(tmp_path_factory, "qwen-edit-plus")


@pytest.fixture(scope="session")
def tiny_qwen_edit_plus_2509_dir(tmp_path_factory) -> Path:
    """A tiny QwenImageEditPlusPipeline folder (2509 layout: ``zero_cond_t`` off)."""
    return _tiny(tmp_path_factory, "qwen-edit-plus-2509")


@pytest.fixture(scope="session")
def tiny_qwen_image_dir(tmp_path_factory) -> Path:
    """A tiny QwenImagePipeline folder (Qwen-Image text-to-image layout)."""
    return _tiny(tmp_path_factory, "qwen-image")


@pytest.fixture(scope="session")
def tiny_flux2_klein_dir(tmp_path_factory) -> Path:
    """A tiny Flux2KleinPipeline folder (FLUX.2 [klein] base layout: Qwen3 text encoder, CFG)."""
    return _tiny(tmp_path_factory, "flux2-klein")


@pytest.fixture(scope="session")
def tiny_flux2_dir(tmp_path_factory) -> Path:
    """A tiny Flux2Pipeline folder (FLUX.2 [dev] layout: Mistral3 text encoder, guidance embedding)."""
    return _tiny(tmp_path_factory, "flux2")


@pytest.fixture(scope="session")
def tiny_zimage_dir(tmp_path_factory) -> Path:
    """A tiny ZImagePipeline folder (Z-Image-Turbo layout: Qwen3 text encoder, FLUX.1 VAE)."""
    return _tiny(tmp_path_factory, "zimage")


@pytest.fixture(scope="session")
def tiny_zimage_omni_dir(tmp_path_factory) -> Path:
    """A tiny ZImageOmniPipeline folder (Z-Image plus the SigLIP2 vision tower and branch)."""
    return _tiny(tmp_path_factory, "zimage-omni")


@pytest.fixture(scope="session")
def tiny_longcat_edit_dir(tmp_path_factory) -> Path:
    """A tiny LongCatImageEditPipeline folder (LongCat-Image-Edit layout: Qwen2.5-VL + text_processor)."""
    return _tiny(tmp_path_factory, "longcat-edit")


@pytest.fixture(scope="session")
def tiny_longcat_dir(tmp_path_factory) -> Path:
    """A tiny LongCatImagePipeline folder (LongCat-Image text-to-image layout)."""
    return _tiny(tmp_path_factory, "longcat")


@pytest.fixture(scope="session")
def demo_project(tmp_path_factory) -> Path:
    """``create_demo()`` for kontext: the project.toml path (model/, dataset/ beside it)."""
    from lorastudio.training.demo import create_demo

    return create_demo(tmp_path_factory.mktemp("demo") / "kontext", "kontext")


@pytest.fixture(scope="session")
def tiny_qwen_image21_dir(tmp_path_factory) -> Path:
    """A tiny QwenImage21Pipeline folder (Qwen-Image 2.1: Qwen3-VL encoder, RGBA 16x VAE, single-stream)."""
    return _tiny(tmp_path_factory, "qwen-image-2.1")


@pytest.fixture(scope="session")
def tiny_joyimage_edit_plus_dir(tmp_path_factory) -> Path:
    """A tiny JoyImageEditPlusPipeline folder (Qwen3-VL encoder, Wan VAE, double-stream DiT)."""
    return _tiny(tmp_path_factory, "joyimage-edit-plus")



def tiny_dir_fixture(family: str) -> str:
    """The session fixture that builds ``family``'s tiny model folder: ``tiny_<id>_dir`` with the
    id's dashes as underscores and its dots dropped (``qwen-image-2.1`` → ``tiny_qwen_image21_dir``)."""
    return "tiny_" + family.replace("-", "_").replace(".", "") + "_dir"


def _catalog_fixture(family: str, name: str):
    def build(tmp_path_factory) -> Path:
        return _tiny(tmp_path_factory, family)

    build.__doc__ = f"A tiny {catalog.family(family).pipeline_class} folder ({family})."
    return pytest.fixture(scope="session", name=name)(build)


# Every catalog family gets its folder fixture without an edit here (the ones above say more about theirs).
for _record in catalog.FAMILIES:
    if tiny_dir_fixture(_record.id) not in globals():
        globals()[tiny_dir_fixture(_record.id)] = _catalog_fixture(_record.id, tiny_dir_fixture(_record.id))
