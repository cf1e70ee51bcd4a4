"""What a scanned training folder is: sets of images, and the problems found in it.

These plain data classes are what the GUI's set model, the trainer and ``lorastudio check``
all consume, so they carry only facts (paths, names, problems), no behaviour that needs
Qt or torch.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class Severity(str, enum.Enum):
    #: The set cannot be trained as it is; it is left out of training.
    ERROR = "error"
    #: Training works, but the result is likely worse; the set stays in.
    WARNING = "warning"
    #: Advice (e.g. the guide's dataset-size guidance).
    INFO = "info"


class Mode(str, enum.Enum):
    #: Image-editing sets: ``NAME_start[N]`` inputs and a ``NAME_end`` target.
    PAIRED = "paired"
    #: Text-to-image sets: one image and its caption, no inputs.
    SINGLE = "single"


@dataclass(frozen=True)
class Problem:
    severity: Severity
    #: A stable identifier tests, filters and the GUI can rely on (``missing_end`` …).
    code: str
    #: The files concerned, relative to the dataset folder (POSIX separators).
    files: tuple[str, ...]
    #: What is wrong and what to do, in words an artist understands.
    message: str
    #: The set this problem belongs to, if any (a stray file belongs to none).
    set_name: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"severity": self.severity.value, "code": self.code, "files": list(self.files),
                "message": self.message}


@dataclass
class ImageSet:
    """One training example: ordered input images (none for text-to-image) and a target."""

    name: str
    #: Inputs in order ``_start``, ``_start1``, ``_start2``, … (absolute paths).
    inputs: list[Path]
    #: The ``_end`` image (paired) or the single image (text-to-image); None if missing.
    target: Path | None
    #: Where this set's caption lives (``NAME.txt``), whether or not it exists yet.
    caption_path: Path
    #: The caption text, or None when there is no ``.txt`` file.
    caption: str | None = None
    problems: list[Problem] = field(default_factory=list)
    #: (width, height) as displayed (EXIF rotation applied) of each image whose header was
    #: read by the scan; empty when scanned without image checks. Lets the GUI show sizes
    #: and the trainer plan buckets without opening every file again.
    image_sizes: dict[Path, tuple[int, int]] = field(default_factory=dict)

    @property
    def has_error(self) -> bool:
        return any(p.severity is Severity.ERROR for p in self.problems)

    @property
    def images(self) -> list[Path]:
        """Inputs then target: every image of the set, in display order."""
        return [*self.inputs, *([self.target] if self.target else [])]


@dataclass
class Dataset:
    root: Path
    mode: Mode
    #: Every set found, sorted by name, including sets with errors.
    sets: list[ImageSet]
    #: Every problem found (set problems and dataset-wide ones), errors first.
    problems: list[Problem]

    def trainable_sets(self) -> list[ImageSet]:
        return [s for s in self.sets if not s.has_error and s.target is not None]

    def set_by_name(self, name: str) -> ImageSet | None:
        for s in self.sets:
            if s.name == name:
                return s
        return None

    @property
    def error_count(self) -> int:
        return sum(p.severity is Severity.ERROR for p in self.problems)

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def to_check_json(self, held_out: tuple[str, ...] | list[str] = ()) -> dict[str, Any]:
        """The object ``lorastudio check --json`` prints (DESIGN.md's contract); a set named in
        ``held_out`` (a project's ``dataset.validation``) carries ``"validation": true``."""
        return {
            "mode": self.mode.value,
            "sets": [
                {
                    "name": s.name,
                    "inputs": [self.relative(p) for p in s.inputs],
                    "target": self.relative(s.target) if s.target else None,
                    "caption": s.caption,
                    **({"validation": True} if s.name in held_out else {}),
                }
                for s in self.trainable_sets()
            ],
            "problems": [p.to_json() for p in self.problems],
        }
