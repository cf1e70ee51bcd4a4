"""Every problem the scanner can report: its stable code, its severity and its words.

The codes are a contract (the GUI filters and badges by them, ``lorastudio check --json``
prints them, tests assert them), so they are listed once here in :data:`SEVERITY_OF`.
The messages are for artists: each says what is wrong in plain words and what to do
about it. Keeping all of them in one module keeps the tone consistent and makes them easy
to review.

``files`` are paths relative to the dataset folder with ``/`` separators. A problem about
the whole folder (too few sets, no images) names ``"."``, the folder itself, so that every
problem names something that exists.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from lorastudio.dataset.model import Problem, Severity

ERROR, WARNING, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO

#: Every code the scanner emits, with its severity. An ``error`` keeps its set out of
#: training; a ``warning`` does not; ``info`` is advice.
SEVERITY_OF: dict[str, Severity] = {
    # A set that cannot be trained as it is.
    "missing_end": ERROR,            # inputs but no NAME_end image
    "missing_start": ERROR,          # NAME_end but no NAME_start image
    "input_gap": ERROR,              # numbered inputs with a hole (no _start1 between _start and _start2, or no _start)
    "duplicate_role": ERROR,         # two files for one role (x_start.jpg + x_start.png)
    "unreadable_image": ERROR,       # not an image, damaged or cut short
    "empty_file": ERROR,             # a 0-byte image
    "image_too_large": ERROR,        # over the decompression-bomb pixel limit
    "no_images": ERROR,              # the folder has no images at all
    # Trainable, but probably not what the artist wants.
    "stray_image": WARNING,          # an image in a paired folder that belongs to no set
    "orphan_caption": WARNING,       # a .txt with no images of its name
    "size_mismatch": WARNING,        # an input and the target differ in size ("Match resolutions")
    "input_count_mismatch": WARNING, # a set with a different number of inputs than most sets
    "missing_caption": WARNING,      # some sets have captions, this one has none
    "empty_caption": WARNING,        # the .txt exists but is empty, while other sets have captions
    "caption_encoding": WARNING,     # the .txt is not UTF-8; it was read as Windows-1252 / Latin-1
    "unreadable_caption": WARNING,   # the .txt cannot be read at all
    "suspicious_name": WARNING,      # text-to-image folder whose names look like misspelt pairs
    # Advice.
    "small_dataset": INFO,           # fewer sets than the guide's smallest recommendation
}

#: The guide's dataset-size guidance: (lowest, highest or None, kind of concept).
SIZE_GUIDANCE: tuple[tuple[int, int | None, str], ...] = (
    (15, 30, "simple concept (a single style)"),
    (30, 60, "medium-complexity concept (a character with variations)"),
    (60, None, "complex concept (several use cases)"),
)
SMALLEST_RECOMMENDED = SIZE_GUIDANCE[0][0]
DATASET_FOLDER = "."


def make(code: str, files: Iterable[str], message: str, set_name: str | None = None) -> Problem:
    """A :class:`Problem` with the severity registered for ``code``."""
    return Problem(SEVERITY_OF[code], code, tuple(files), message, set_name)


def _names(files: Sequence[str]) -> str:
    quoted = [f'"{f}"' for f in files]
    if len(quoted) <= 2:
        return " and ".join(quoted)
    return ", ".join(quoted[:-1]) + " and " + quoted[-1]


# -- set structure -----------------------------------------------------------------------------

def missing_end(set_name: str, inputs: Sequence[str]) -> Problem:
    return make("missing_end", inputs,
                f'Set "{set_name}" has no target image: add "{set_name}_end" (the "after" image) '
                f"next to {_names(inputs)}, or remove the set.", set_name)


def missing_start(set_name: str, target: str) -> Problem:
    return make("missing_start", [target],
                f'Set "{set_name}" has a target ("{target}") but no input image: add '
                f'"{set_name}_start" (the "before" image), or remove the set.', set_name)


def input_gap(set_name: str, files: Sequence[str], missing: Sequence[str]) -> Problem:
    return make("input_gap", files,
                f'Set "{set_name}" is missing input {_names(missing)}: inputs are numbered '
                f"_start, _start1, _start2 ... without gaps. Add the missing image or renumber "
                f"the others.", set_name)


def duplicate_role(set_name: str, files: Sequence[str], role: str) -> Problem:
    return make("duplicate_role", files,
                f'Set "{set_name}" has {len(files)} files for the same {role}: {_names(files)}. '
                f"Keep one and delete or rename the others.", set_name)


# -- image files -------------------------------------------------------------------------------

def unreadable_image(set_name: str | None, file: str, detail: str) -> Problem:
    return make("unreadable_image", [file], detail, set_name)


def empty_file(set_name: str | None, file: str) -> Problem:
    return make("empty_file", [file],
                f'"{file}" is empty (0 bytes), probably an interrupted copy or download. Copy '
                f"the image again or remove it.", set_name)


def image_too_large(set_name: str | None, file: str, detail: str) -> Problem:
    return make("image_too_large", [file], detail, set_name)


def size_mismatch(set_name: str, input_file: str, input_size: tuple[int, int],
                  target_file: str, target_size: tuple[int, int]) -> Problem:
    return make("size_mismatch", [input_file, target_file],
                f'In set "{set_name}", "{input_file}" is {_wxh(input_size)} but the target '
                f'"{target_file}" is {_wxh(target_size)}. The guide says "Match resolutions": '
                f"crop or resize them to the same size. (A reference image such as a product "
                f"photo may differ; it is resized for training.)", set_name)


def input_count_mismatch(set_name: str, files: Sequence[str], count: int, usual: int,
                         usual_sets: int, total_sets: int) -> Problem:
    return make("input_count_mismatch", files,
                f'Set "{set_name}" has {_inputs(count)} but most sets ({usual_sets} of '
                f"{total_sets}) have {_inputs(usual)}. If that is not intended, add or remove "
                f"_startN images so every set has the same inputs.", set_name)


def _wxh(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def _inputs(count: int) -> str:
    return f"{count} input image" + ("" if count == 1 else "s")


# -- files that belong to no set ---------------------------------------------------------------

def stray_image(file: str, suggestion: str | None, near_set: str | None) -> Problem:
    if suggestion:
        hint = f'Did you mean "{suggestion}"? Rename it so it joins a set.'
    elif near_set:
        hint = (f'It has the name of set "{near_set}" but no role: rename it to '
                f'"{near_set}_startN" (another input) or remove it.')
    else:
        hint = ('In an image-editing folder every image needs a _start or _end suffix '
                '(e.g. "photo001_start.jpg" and "photo001_end.jpg"). Rename it or move it out.')
    return make("stray_image", [file], f'"{file}" belongs to no set and is not used. {hint}')


def orphan_caption(file: str, suggestion: str | None) -> Problem:
    if suggestion:
        hint = f'Captions belong to a whole set: rename it to "{suggestion}".'
    else:
        hint = ("Rename it to match a set (a caption is named like the set, without _start or "
                "_end), or ignore this if it is a note.")
    return make("orphan_caption", [file], f'"{file}" has no images of the same name and is not used. {hint}')


def suspicious_name(set_name: str, file: str, suggestion: str) -> Problem:
    return make("suspicious_name", [file],
                f'"{file}" looks like part of a before/after pair, but the folder is read as '
                f'text-to-image because no file uses the exact _start/_end suffix. For an '
                f'image-editing dataset rename it to "{suggestion}" (and its partner likewise).', set_name)


# -- captions ----------------------------------------------------------------------------------

def missing_caption(set_name: str, files: Sequence[str], expected: str, captioned: int, total: int) -> Problem:
    return make("missing_caption", files,
                f'Set "{set_name}" has no caption while {captioned} of {total} sets have one. '
                f'Add "{expected}", or set a default caption for sets without one.', set_name)


def empty_caption(set_name: str, file: str, captioned: int, total: int) -> Problem:
    return make("empty_caption", [file],
                f'"{file}" is empty while {captioned} of {total} sets have a caption. Write a '
                f"caption, or delete the file to use the default caption.", set_name)


def caption_encoding(set_name: str | None, file: str, encoding: str) -> Problem:
    return make("caption_encoding", [file],
                f'"{file}" is not saved as UTF-8; it was read as {encoding}, so accented or '
                f"special characters may be wrong. Check the caption and save it again as UTF-8 "
                f"(LoRA Studio's caption editor does that).", set_name)


def unreadable_caption(set_name: str | None, file: str, reason: str) -> Problem:
    return make("unreadable_caption", [file],
                f'"{file}" cannot be read ({reason}), so the set trains without its caption. '
                f"Check the file's permissions.", set_name)


# -- the whole folder --------------------------------------------------------------------------

def no_images() -> Problem:
    return make("no_images", [DATASET_FOLDER],
                "This folder has no images (.jpg, .jpeg, .png, .webp, .bmp, .tif). For an "
                'image-editing LoRA add pairs such as "photo001_start.jpg" + "photo001_end.jpg"; '
                "for a text-to-image LoRA add images with optional .txt captions.")


def small_dataset(trainable: int, unit: str) -> Problem:
    return make("small_dataset", [DATASET_FOLDER],
                f"{counted(trainable, unit)} ready to train. {size_guidance_sentence(unit)} Add examples "
                f"for every situation you want the LoRA to handle (quality beats quantity).")


def size_guidance_sentence(unit: str = "sets") -> str:
    """The guide's dataset-size guidance as one sentence."""
    parts = [f"{span_text(low, high)} for a {kind}" for low, high, kind in SIZE_GUIDANCE]
    return f"The guide suggests {parts[0].replace(' for', f' {unit} for', 1)}, {parts[1]} and {parts[2]}."


def counted(n: int, unit: str) -> str:
    """``1 set``, ``2 sets``: ``unit`` is given in the plural ("sets", "images")."""
    return f"{n} {unit if n != 1 else unit.removesuffix('s')}"


def span_text(low: int, high: int | None) -> str:
    """``15-30``, or ``60-100+`` for the open-ended top range (the guide's wording)."""
    return f"{low}-{high}" if high else f"{low}-100+"


def size_guidance_verdict(trainable: int, unit: str = "sets") -> str:
    """Where ``trainable`` falls in the guide's guidance, in one line."""
    if trainable < SMALLEST_RECOMMENDED:
        return (f"{counted(trainable, unit)}: fewer than the guide's {SMALLEST_RECOMMENDED} for even a "
                f"simple concept.")
    fits = [kind for low, high, kind in SIZE_GUIDANCE if trainable >= low and (high is None or trainable <= high)]
    return f"{counted(trainable, unit)}: enough for a {' or a '.join(fits)}."
