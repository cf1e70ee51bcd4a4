"""A project: a dataset folder plus training settings, saved as the config TOML the CLI reads.

Opening a folder looks for a project file that already points at it (``NAME.lorastudio.toml``
beside the folder, or a ``project.toml`` there as the demo writes); otherwise the
project starts from the defaults and is saved beside the folder when first needed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from lorastudio.config import (Config, ConfigError, DatasetConfig, ModelConfig, OutputConfig, TrainConfig,
                               config_from_dict, load_config, save_config)
from lorastudio.user_folders import data_dir

PROJECT_SUFFIX = ".lorastudio.toml"


def safe_name(text: str) -> str:
    """A LoRA file name from a folder name: letters, digits, - and _."""
    name = re.sub(r"[^\w\-]+", "_", text.strip(), flags=re.UNICODE).strip("._") or "my_lora"
    return name[:80]


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def find_project_for(folder: Path) -> Path | None:
    """An existing project file whose dataset is ``folder``."""
    folder = Path(folder)
    candidates = [folder.parent / f"{folder.name}{PROJECT_SUFFIX}", folder.parent / "project.toml",
                  folder / "project.toml"]
    for c in candidates:
        if c.is_file():
            try:
                cfg = load_config(c, check_paths=False)
            except ConfigError:
                continue
            if _same(cfg.dataset.path, folder):
                return c
    return None


@dataclass
class Project:
    config: Config
    #: The TOML file, or None while the project was never saved.
    path: Path | None = None

    @property
    def dataset_dir(self) -> Path:
        return self.config.dataset.path

    @property
    def title(self) -> str:
        return self.path.name if self.path else self.dataset_dir.name

    @classmethod
    def for_folder(cls, folder: Path, model_path: str = "") -> "Project":
        folder = Path(folder).resolve()
        existing = find_project_for(folder)
        if existing is not None:
            return cls.load(existing)
        out_dir = folder.parent / "output"
        if not (_writable_dir(out_dir) or (not out_dir.exists() and _writable_dir(folder.parent))):
            out_dir = data_dir() / "output"  # beside the dataset is read-only (a DVD, a share)
        config = Config(
            model=ModelConfig(path=Path(model_path) if model_path else Path("")),
            dataset=DatasetConfig(path=folder),
            train=TrainConfig(),
            output=OutputConfig(dir=out_dir, name=safe_name(folder.name)),
        )
        return cls(config, None)

    @classmethod
    def load(cls, path: Path) -> "Project":
        path = Path(path).resolve()
        return cls(load_config(path, check_paths=False), path)

    def default_path(self) -> Path:
        return self.dataset_dir.parent / f"{self.dataset_dir.name}{PROJECT_SUFFIX}"

    def fallback_path(self) -> Path:
        """Where to save when the folder beside the dataset is read-only (the user data folder)."""
        digest = hashlib.sha1(str(self.dataset_dir).encode("utf-8", "surrogatepass")).hexdigest()[:10]
        return data_dir() / "projects" / f"{safe_name(self.dataset_dir.name)}-{digest}{PROJECT_SUFFIX}"

    def save(self, path: Path | None = None) -> Path:
        """Write the config TOML (atomically). Without a path: where it was, or beside the dataset."""
        validate(self.config)
        target = Path(path) if path else self.path
        if target is None:
            target = self.default_path()
            if not _writable_dir(target.parent) or (target.exists() and not _ours(target, self.dataset_dir)):
                target = self.fallback_path()
        target.parent.mkdir(parents=True, exist_ok=True)
        save_config(self.config, target)
        self.path = target.resolve()
        self.config.source = self.path
        return self.path


def validate(config: Config) -> Config:
    """Run the config's own validator on what the form produced (raises ConfigError)."""
    if not str(config.model.path) or str(config.model.path) == ".":
        raise ConfigError("model.path: choose the base model folder (a local diffusers folder with "
                          "model_index.json)")
    base = config.source.parent if config.source else config.dataset.path.parent
    return config_from_dict(config.to_toml_dict(), base_dir=base, source=config.source)


def with_changes(config: Config, **sections) -> Config:
    """A copy of ``config`` with some fields of some sections replaced: ``train={"steps": 10}``."""
    parts = {}
    for name in ("model", "dataset", "train", "output", "caption"):
        current = getattr(config, name)
        parts[name] = dataclasses.replace(current, **sections.get(name, {}))
    return Config(**parts, source=config.source)


def _writable_dir(folder: Path) -> bool:
    return folder.is_dir() and os.access(folder, os.W_OK)


def _ours(path: Path, dataset_dir: Path) -> bool:
    try:
        return _same(load_config(path, check_paths=False).dataset.path, dataset_dir)
    except ConfigError:
        return False
