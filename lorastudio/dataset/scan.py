"""Turn a folder into a :class:`Dataset`: list it, group files into sets, validate.

The work happens in three passes, each cheap:

1. one ``os.scandir`` of the folder, sorting each name into image / caption / ignored
   (subfolders, hidden files, ``Thumbs.db``, ``notes.md`` … are ignored silently);
2. grouping by base name with :mod:`lorastudio.dataset.naming` and checking each set's
   structure (a start without an end, gaps in the input numbers, two files for one role);
3. reading image headers (:func:`lorastudio.dataset.images.probe_image`, no pixel decoding
   for healthy files) and captions, then the checks that compare sets with each other.

Nothing here raises for a bad *dataset*: every finding becomes a :class:`Problem`. Only a
folder that does not exist or cannot be listed raises ``OSError``.
"""

from __future__ import annotations

import errno
import os
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from lorastudio.dataset import problems as catalog
from lorastudio.dataset.captions import CAPTION_EXTENSION, caption_path_for, has_caption, read_caption_text
from lorastudio.dataset.images import (
    IMAGE_EXTENSIONS,
    EmptyImageError,
    ImageError,
    ImageTooLargeError,
    probe_image,
    quiet_bomb_warning,
)
from lorastudio.dataset.model import Dataset, ImageSet, Mode, Problem, Severity
from lorastudio.dataset.naming import Role, is_clutter, natural_key, normalize, parse_stem, role_suffix, suggested_name

_SEVERITY_ORDER = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}
#: See :func:`_probe_all`: how many files are timed before deciding, the per-file time that
#: means "waiting for the disk", and the threads and chunk size used then.
_TIMING_SAMPLE = 32
_SLOW_PROBE_SECONDS = 0.002
_PROBE_THREADS = 8
_CHUNK = 32


@dataclass
class _Listing:
    """The folder's relevant file names (not paths: the folder is flat)."""

    images: list[str] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)


@dataclass
class _Group:
    """Every file that claims a base name, before it is judged."""

    name: str
    inputs: dict[int, list[str]] = field(default_factory=lambda: defaultdict(list))
    targets: list[str] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)

    @property
    def has_images(self) -> bool:
        return bool(self.inputs or self.targets)


def scan_dataset(root: str | os.PathLike[str], check_images: bool = True) -> Dataset:
    """Scan a dataset folder: sets sorted by name, problems errors first.

    With ``check_images`` every image header is read (size, validity, decompression-bomb
    guard) and sizes are compared; without it only names are looked at, which is instant
    even on slow drives (the GUI can show the sets first and validate afterwards).
    Raises ``FileNotFoundError`` / ``NotADirectoryError`` / ``OSError`` only for a folder
    that is missing or cannot be listed.
    """
    root = Path(root).expanduser().absolute()
    if not root.exists():
        raise FileNotFoundError(errno.ENOENT, "Dataset folder not found", str(root))
    if not root.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "Not a folder", str(root))

    listing = _list_folder(root)
    mode, groups, strays = _group_files(listing)
    image_groups = sorted((g for g in groups.values() if g.has_images), key=lambda g: natural_key(g.name))
    sets = [_build_set(root, g, mode) for g in image_groups]
    if check_images:
        _check_images(root, sets)
    _check_captions(root, sets)
    _check_input_counts(root, sets)
    if mode is Mode.SINGLE:
        _check_suspicious_names(root, sets)

    set_names = {s.name for s in sets}
    loose = [_stray_problem(f, set_names) for f in strays]
    loose += [_orphan_problem(f, set_names) for g in groups.values() if not g.has_images for f in g.captions]
    loose.sort(key=lambda p: natural_key(p.files[0]))

    dataset = Dataset(root=root, mode=mode, sets=sets, problems=[])
    overall = []
    if not listing.images:
        overall.append(catalog.no_images())
    trainable = len(dataset.trainable_sets())
    if 0 < trainable < catalog.SMALLEST_RECOMMENDED:
        overall.append(catalog.small_dataset(trainable, unit_of(mode)))

    everything = [p for s in sets for p in s.problems] + loose + overall
    dataset.problems = sorted(everything, key=lambda p: _SEVERITY_ORDER[p.severity])  # stable
    return dataset


def unit_of(mode: Mode) -> str:
    """What one training example is called in messages: a paired set or a single image."""
    return "sets" if mode is Mode.PAIRED else "images"


# -- pass 1: the folder ------------------------------------------------------------------------

def _list_folder(root: Path) -> _Listing:
    listing = _Listing()
    with os.scandir(root) as entries:
        for entry in entries:
            name = entry.name
            if is_clutter(name):
                continue
            extension = os.path.splitext(name)[1].lower()
            if extension not in IMAGE_EXTENSIONS and extension != CAPTION_EXTENSION:
                continue  # notes.md, .psd, .zip …: not ours to judge
            try:
                if not entry.is_file():
                    continue  # a subfolder (even one named "x.jpg")
            except OSError:
                continue
            (listing.images if extension in IMAGE_EXTENSIONS else listing.captions).append(name)
    return listing


def _group_files(listing: _Listing) -> tuple[Mode, dict[str, _Group], list[str]]:
    """Sort every file into its set; images with no role in a paired folder are strays.

    A folder is paired as soon as one image has a ``_start``/``_end`` suffix; with none at
    all it is a text-to-image folder and every image is a set of its own.
    """
    parsed = {name: parse_stem(os.path.splitext(name)[0]) for name in listing.images}
    mode = Mode.PAIRED if any(p.role is not Role.PLAIN for p in parsed.values()) else Mode.SINGLE
    groups: dict[str, _Group] = {}
    strays: list[str] = []
    for file_name, name in parsed.items():
        if name.role is Role.INPUT:
            groups.setdefault(name.base, _Group(name.base)).inputs[name.index].append(file_name)
        elif name.role is Role.TARGET or mode is Mode.SINGLE:
            groups.setdefault(name.base, _Group(name.base)).targets.append(file_name)
        else:
            strays.append(file_name)
    for file_name in listing.captions:
        base = normalize(os.path.splitext(file_name)[0])
        groups.setdefault(base, _Group(base)).captions.append(file_name)
    return mode, groups, strays


# -- pass 2: structure -------------------------------------------------------------------------

def _build_set(root: Path, group: _Group, mode: Mode) -> ImageSet:
    name = group.name
    ordered = {index: sorted(files, key=natural_key) for index, files in sorted(group.inputs.items())}
    targets = sorted(group.targets, key=natural_key)
    captions = sorted(group.captions, key=natural_key)
    problems: list[Problem] = []

    for index, files in ordered.items():
        if len(files) > 1:
            problems.append(catalog.duplicate_role(name, files, f"input ({role_suffix(index)})"))
    if len(targets) > 1:
        role = "target (_end)" if mode is Mode.PAIRED else "image (same name, different type)"
        problems.append(catalog.duplicate_role(name, targets, role))
    if len(captions) > 1:
        problems.append(catalog.duplicate_role(name, captions, "caption"))

    input_files = [files[0] for files in ordered.values()]
    if mode is Mode.PAIRED:
        if input_files and not targets:
            problems.append(catalog.missing_end(name, input_files))
        if targets and not input_files:
            problems.append(catalog.missing_start(name, targets[0]))
        if input_files:
            missing = [f"{name}{role_suffix(i)}" for i in range(max(ordered) + 1) if i not in ordered]
            if missing:
                problems.append(catalog.input_gap(name, input_files, missing))

    caption_path = root / captions[0] if captions else caption_path_for(root, name)
    return ImageSet(
        name=name,
        inputs=[root / f for f in input_files],
        target=root / targets[0] if targets else None,
        caption_path=caption_path,
        caption=None,
        problems=problems,
    )


# -- pass 3: contents --------------------------------------------------------------------------

def _check_images(root: Path, sets: list[ImageSet]) -> None:
    """Probe every image of every set and compare the sizes within each set."""
    paths = [p for s in sets for p in s.images]
    with quiet_bomb_warning():
        outcomes = _probe_all(paths)
    result = dict(zip(paths, outcomes))

    for image_set in sets:
        sizes: dict[Path, tuple[int, int]] = {}
        for path in image_set.images:
            outcome = result[path]
            if isinstance(outcome, tuple):
                sizes[path] = outcome
            else:
                image_set.problems.append(_image_problem(root, image_set.name, path, outcome))
        image_set.image_sizes = sizes
        _check_sizes(root, image_set, sizes)


def _probe_all(paths: list[Path]) -> list[tuple[int, int] | ImageError]:
    """Probe in order; switch to threads only when the disk, not Python, is the bottleneck.

    Reading a header from a local disk with a warm cache costs ~0.1 ms of Python, and
    threads only add GIL contention there. On a network share or a cold drive each file
    waits milliseconds for I/O, and several threads in flight hide that wait. The first
    files are timed to tell the two apart.
    """
    head = paths[:_TIMING_SAMPLE]
    started = time.perf_counter()
    outcomes = [_probe(p) for p in head]
    rest = paths[len(head):]
    if not rest:
        return outcomes
    per_file = (time.perf_counter() - started) / max(1, len(head))
    if per_file < _SLOW_PROBE_SECONDS:
        return outcomes + [_probe(p) for p in rest]
    chunks = [rest[i:i + _CHUNK] for i in range(0, len(rest), _CHUNK)]
    with ThreadPoolExecutor(_PROBE_THREADS) as pool:
        for chunk_outcomes in pool.map(lambda chunk: [_probe(p) for p in chunk], chunks):
            outcomes += chunk_outcomes
    return outcomes


def _probe(path: Path) -> tuple[int, int] | ImageError:
    try:
        return probe_image(path, thorough=True, quiet=False).size
    except ImageError as exc:
        return exc


def _image_problem(root: Path, set_name: str, path: Path, error: ImageError) -> Problem:
    file = _rel(root, path)
    if isinstance(error, EmptyImageError):
        return catalog.empty_file(set_name, file)
    if isinstance(error, ImageTooLargeError):
        return catalog.image_too_large(set_name, file, str(error))
    return catalog.unreadable_image(set_name, file, str(error))


def _check_sizes(root: Path, image_set: ImageSet, sizes: dict[Path, tuple[int, int]]) -> None:
    target = image_set.target
    if target is None or target not in sizes or not image_set.inputs:
        return
    for path in image_set.inputs:
        if path in sizes and sizes[path] != sizes[target]:
            image_set.problems.append(catalog.size_mismatch(
                image_set.name, _rel(root, path), sizes[path], _rel(root, target), sizes[target]))


def _check_captions(root: Path, sets: list[ImageSet]) -> None:
    """Read captions; when some sets have one and others not, point out the others."""
    for image_set in sets:
        path = image_set.caption_path
        if not path.exists():
            continue
        try:
            read = read_caption_text(path)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            image_set.problems.append(catalog.unreadable_caption(image_set.name, _rel(root, path), reason))
            continue
        image_set.caption = read.text
        if read.used_fallback:
            image_set.problems.append(catalog.caption_encoding(
                image_set.name, _rel(root, path), _encoding_name(read.encoding)))

    total = len(sets)
    captioned = sum(has_caption(s) for s in sets)
    if not 0 < captioned < total:
        return
    for image_set in sets:
        if has_caption(image_set):
            continue
        if image_set.caption is not None:
            image_set.problems.append(catalog.empty_caption(
                image_set.name, _rel(root, image_set.caption_path), captioned, total))
        elif not any(p.code == "unreadable_caption" for p in image_set.problems):
            files = [_rel(root, p) for p in image_set.images]
            image_set.problems.append(catalog.missing_caption(
                image_set.name, files, image_set.caption_path.name, captioned, total))


def _check_input_counts(root: Path, sets: list[ImageSet]) -> None:
    """Flag sets whose number of inputs differs from what most (well-formed) sets have."""
    complete = [s for s in sets if s.inputs and s.target is not None and not _has_structure_error(s)]
    counts = Counter(len(s.inputs) for s in complete)
    if len(counts) < 2:
        return
    # Most common count; on a tie the smaller count, so the message is deterministic.
    usual, usual_sets = min(counts.items(), key=lambda item: (-item[1], item[0]))
    for image_set in complete:
        if len(image_set.inputs) != usual:
            files = [_rel(root, p) for p in image_set.inputs]
            image_set.problems.append(catalog.input_count_mismatch(
                image_set.name, files, len(image_set.inputs), usual, usual_sets, len(complete)))


_STRUCTURE_CODES = frozenset({"missing_end", "missing_start", "input_gap", "duplicate_role"})


def _has_structure_error(image_set: ImageSet) -> bool:
    return any(p.code in _STRUCTURE_CODES for p in image_set.problems)


def _check_suspicious_names(root: Path, sets: list[ImageSet]) -> None:
    """In a text-to-image folder, point out names that look like misspelt before/after pairs.

    Only when a "start"-like and an "end"-like name share a base, so a lone photo called
    "the end.jpg" is left alone.
    """
    roles_by_base: dict[str, set[str]] = defaultdict(set)
    suggestions: dict[str, str] = {}
    for image_set in sets:
        suggestion = suggested_name(image_set.name)
        if suggestion is None:
            continue
        parsed = parse_stem(suggestion)
        suggestions[image_set.name] = suggestion
        roles_by_base[parsed.base].add(parsed.role.value)
    for image_set in sets:
        suggestion = suggestions.get(image_set.name)
        if suggestion is None or image_set.target is None:
            continue
        if len(roles_by_base[parse_stem(suggestion).base]) < 2:
            continue
        extension = image_set.target.suffix
        image_set.problems.append(catalog.suspicious_name(
            image_set.name, _rel(root, image_set.target), suggestion + extension))


# -- files outside any set ---------------------------------------------------------------------

def _stray_problem(file_name: str, set_names: set[str]) -> Problem:
    stem = os.path.splitext(file_name)[0]
    suggestion = suggested_name(stem)
    extension = os.path.splitext(file_name)[1]
    near_set = normalize(stem) if normalize(stem) in set_names else None
    return catalog.stray_image(file_name, suggestion + extension if suggestion else None, near_set)


def _orphan_problem(file_name: str, set_names: set[str]) -> Problem:
    parsed = parse_stem(os.path.splitext(file_name)[0])
    suggestion = None
    if parsed.role is not Role.PLAIN and parsed.base in set_names:
        suggestion = parsed.base + CAPTION_EXTENSION
    return catalog.orphan_caption(file_name, suggestion)


def _rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def _encoding_name(encoding: str) -> str:
    return {"cp1252": "Windows-1252", "latin-1": "Latin-1"}.get(encoding, encoding)

