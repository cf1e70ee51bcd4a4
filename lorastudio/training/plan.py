"""What a run will do, known before any model loads, and how a failure is told.

:func:`make_plan` detects the family and scans the dataset (everything that can be wrong
before a model loads raises :class:`TrainingError`); :func:`describe_plan` is the text of
``lorastudio train --dry-run``; :func:`classify` turns any exception into the ``error``
event's kind and message.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from lorastudio import catalog
from lorastudio.config import Config, ConfigError
from lorastudio.config_rules import check_adapter_format
from lorastudio.dataset import Dataset, ImageSet, Severity, scan_dataset
from lorastudio.dataset.held_out import held_out_problem, split_held_out


class TrainingError(Exception):
    """Ends a run with an ``error`` event of ``kind`` (see protocol.ERROR_KINDS)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass
class Plan:
    """What a run will do, known before any model loads (``train --dry-run`` prints it)."""

    config: Config
    family_cls: type
    dataset: Dataset
    #: The sets trained on (held-out sets and sets with errors left out).
    sets: list[ImageSet]
    skipped: list[str] = field(default_factory=list)
    #: Held-out sets (``dataset.validation``, without errors): validated, never trained on.
    validation: list[ImageSet] = field(default_factory=list)
    #: Things worth saying before training (status events; the dry run prints them).
    warnings: list[str] = field(default_factory=list)


def make_plan(config: Config) -> Plan:
    """Detect the family and scan the dataset; raise TrainingError (config/data) if unusable."""
    from lorastudio.training.families import FamilyModeError, ModelFolderError, check_dataset_mode, detect_family

    try:
        family_cls = detect_family(config.model.path, config.model.family)
    except ModelFolderError as exc:
        raise TrainingError("config", f"model.path: {exc}") from None
    check_adapter_format(config.train.adapter, catalog.resolve_format(config.output.format, family_cls.name),
                         family_cls.name)  # ConfigError → "config"
    dataset = scan_dataset(config.dataset.path)
    global_errors = [p for p in dataset.problems if p.severity is Severity.ERROR and p.set_name is None]
    if global_errors:
        raise TrainingError("data", f"dataset {config.dataset.path}: {global_errors[0].message}")
    sets = dataset.trainable_sets()
    skipped = [s.name for s in dataset.sets if s not in sets]
    if not sets:
        first = next((p.message for p in dataset.problems if p.severity is Severity.ERROR), "no image sets found")
        raise TrainingError("data", f"dataset {config.dataset.path}: nothing to train ({first})")
    try:  # before any model loads: the message names the model folders that would fit
        check_dataset_mode(family_cls, dataset.mode)
    except FamilyModeError as exc:
        raise TrainingError("data", f"dataset {config.dataset.path}: {exc}") from None
    limit = family_cls.max_inputs
    if limit is not None:
        too_many = [s.name for s in sets if len(s.inputs) > limit]
        if too_many:
            raise TrainingError("data", f"{family_cls.display_name} takes at most {limit} input image(s) per set; "
                                        f"{len(too_many)} set(s) have more: {', '.join(too_many[:5])}")
    warnings = check_recipe(config, family_cls, dataset, sets)
    trained, held_out = split_held_out(sets, config.dataset.validation)
    if config.dataset.validation and not held_out:
        warnings.append("dataset.validation: every held-out set has errors (skipped), so nothing is validated; "
                        "fix them or hold out others")
    return Plan(config=config, family_cls=family_cls, dataset=dataset, sets=trained, skipped=skipped,
                validation=held_out, warnings=warnings)


def check_recipe(config: Config, family_cls: type, dataset: Dataset, sets: list[ImageSet]) -> list[str]:
    """The recipe keys that need the dataset or the model folder (issue 15): a config error
    before any model loads, or warnings."""
    from lorastudio.training.timesteps import SchedulerConfigError, read_scheduler
    from lorastudio.training.tracking import check_available

    names = {s.name for s in dataset.sets}
    for name in config.dataset.repeats:
        if name not in names:
            raise TrainingError("config", f"dataset.repeats: no set named {name!r} in {config.dataset.path} "
                                          f"(sets: {', '.join(sorted(names)[:8])}{' …' if len(names) > 8 else ''})")
        if name not in {s.name for s in sets}:
            raise TrainingError("config", f"dataset.repeats: set {name!r} is not trained (it has errors); "
                                          "fix it or remove it from dataset.repeats")
    problem = held_out_problem(dataset, config.dataset.validation)
    if problem:
        raise TrainingError("config", problem)
    t = config.train
    if t.timesteps == "shift" and not t.timestep_shift:
        try:
            read_scheduler(config.model.path)
        except SchedulerConfigError as exc:
            raise TrainingError("config", f"train.timesteps: {exc}") from None
    message = check_available(t.log_with)
    if message:
        raise TrainingError("config", message)
    warnings = []
    if t.early_stop and not config.dataset.validation:
        warnings.append(f"train.early_stop = {t.early_stop} does nothing without held-out sets: name some in "
                        "dataset.validation (their loss decides when to stop)")
    if config.dataset.caption_dropout > 0 and dataset.mode.value == "paired":
        warnings.append(f"dataset.caption_dropout = {config.dataset.caption_dropout:g} on an edit dataset: the "
                        "caption is what tells the model which edit to make, so steps without it teach the edit "
                        "as unconditional (SimpleTuner advises 0 for edit models)")
    return warnings


def recipe_facts(config: Config, plan: Plan | None = None) -> dict[str, str]:
    """The training recipe as text (the LoRA's metadata, the tracker's hyperparameters)."""
    t, d = config.train, config.dataset
    facts = {"timesteps": t.timesteps, "lr_schedule": t.lr_schedule, "warmup_steps": str(t.warmup_steps),
             "ema_decay": repr(t.ema_decay), "caption_dropout": repr(d.caption_dropout)}
    if t.timesteps == "logit_normal":
        facts.update(timestep_mean=repr(t.timestep_mean), timestep_scale=repr(t.timestep_scale))
    elif t.timesteps != "uniform":
        facts["timestep_scale"] = repr(t.timestep_scale)
    if t.timesteps == "shift":
        facts["timestep_shift"] = repr(t.timestep_shift) if t.timestep_shift else "resolution"
    if d.repeats:
        facts["repeats"] = ", ".join(f"{k}={v}" for k, v in sorted(d.repeats.items()))
    return facts


def classify(exc: BaseException) -> tuple[str, str]:
    """(kind, message) of an exception for the ``error`` event."""
    if isinstance(exc, TrainingError):
        return exc.kind, exc.message
    if isinstance(exc, ConfigError):
        return "config", str(exc)
    from lorastudio.dataset import ImageError

    if isinstance(exc, ImageError):
        return "data", str(exc)
    try:
        from lorastudio.training.families import ModelFolderError

        if isinstance(exc, ModelFolderError):
            return "config", f"model.path: {exc}"
    except ImportError:  # pragma: no cover
        pass
    text = str(exc)
    if isinstance(exc, torch.OutOfMemoryError) or "out of memory" in text.lower():
        return "oom", ("out of GPU memory: " + text.splitlines()[0] if text else "out of GPU memory") + \
            " — try train.gradient_checkpointing = true, train.quantization = \"int8\" (or \"int4\"), " \
            "a lower train.resolution or rank; `lorastudio train CONFIG --dry-run` estimates the memory"
    return "crash", f"{type(exc).__name__}: {text}"


def describe_plan(plan: Plan) -> list[str]:
    """Readable lines for ``train --dry-run``: family, sets, buckets, steps (no model loaded)."""
    from lorastudio.training.buckets import bucket_size
    from lorastudio.dataset import image_size

    c = plan.config
    fam = plan.family_cls
    lines = [f"family:     {fam.display_name} ({fam.name})",
             f"model:      {c.model.path}",
             f"dataset:    {c.dataset.path} ({plan.dataset.mode.value}, {len(plan.sets)} sets to train"
             + (f", {len(plan.validation)} held out for validation" if plan.validation else "")
             + (f", {len(plan.skipped)} skipped for errors" if plan.skipped else "") + ")",
             f"steps:      {c.train.steps} (batch {c.train.batch_size}, learning rate {c.train.learning_rate:g}, "
             f"rank {c.train.rank}, alpha {c.train.alpha or c.train.rank:g})",
             f"adapter:    {describe_adapter(c.train.adapter, c.train.lokr_factor)}",
             f"resolution: {c.train.resolution} (area {c.train.resolution}² per target)",
             f"output:     {c.output.lora_path} ({catalog.describe_format(c.output.format, fam.name)})",
             f"run folder: {c.output.run_dir}"]
    format_warning = catalog.comfyui_warning(c.output.format, fam.name, c.train.adapter)
    if format_warning:
        lines.append(f"warning:    {format_warning}")
    buckets: dict[tuple[int, int], int] = {}
    for s in plan.sets:
        assert s.target is not None
        w, h = s.image_sizes.get(s.target) or image_size(s.target)
        b = bucket_size(w, h, c.train.resolution, fam.size_multiple)
        buckets[b] = buckets.get(b, 0) + 1
    lines.append("buckets:    " + ", ".join(f"{w}x{h}: {n}" for (w, h), n in sorted(buckets.items())))
    lines += describe_recipe(plan, sorted(buckets, key=lambda b: -buckets[b])[0])
    lines += describe_estimate(plan)
    return lines


def describe_recipe(plan: Plan, bucket: tuple[int, int]) -> list[str]:
    """The recipe lines of the dry run (``bucket``: the most common one, for the shift's μ)."""
    from lorastudio.training.timesteps import TimestepSampler

    c, t, d = plan.config, plan.config.train, plan.config.dataset
    sampler = TimestepSampler.from_config(t, plan.family_cls.name, c.model.path)
    warmup = f" after {t.warmup_steps} warmup steps" if t.warmup_steps else ""
    lines = [f"timesteps:  {sampler.describe(bucket)}",
             f"schedule:   {t.lr_schedule} learning rate{warmup}",
             "ema:        " + (f"decay {t.ema_decay:g} (the LoRA holds the average; raw weights: "
                               f"{c.output.raw_lora_path.name})" if t.ema_decay else "off")]
    if d.caption_dropout:
        lines.append(f"captions:   dropped (empty caption) with probability {d.caption_dropout:g}")
    if d.repeats:
        lines.append("repeats:    " + ", ".join(f"{k} ×{v}" for k, v in sorted(d.repeats.items())))
    if plan.validation:
        every = t.sample_every if t.validate_every is None else t.validate_every
        when = f"every {every} steps and at each checkpoint" if every else "at each checkpoint"
        stop = f"; early stop after {t.early_stop} without a new best" if t.early_stop else ""
        n = len(plan.validation)
        lines.append(f"validation: {n} held-out set{'s' if n != 1 else ''}, {when} (σ 0.1 … 0.9, fixed noise)"
                     f"{stop}; best: {c.output.best_lora_path.name}")
    if t.log_with:
        from lorastudio.training.tracking import logs_dir

        lines.append(f"logging:    {t.log_with} in {logs_dir(c.output.run_dir)}")
    return lines + [f"warning:    {w}" for w in plan.warnings]


def describe_adapter(adapter: str, lokr_factor: int) -> str:
    """One line on the adapter type (``train.adapter``) for the dry-run plan."""
    if adapter == "dora":
        return "dora (LoRA plus a trained magnitude per output row: peft LoraConfig(use_dora=True))"
    if adapter == "lokr":
        factor = "automatic" if lokr_factor == -1 else str(lokr_factor)
        return f"lokr (Kronecker product, factor {factor}: peft LoKrConfig)"
    return "lora (peft LoraConfig)"


def describe_estimate(plan: Plan) -> list[str]:
    """The memory/time estimate for the plan (``lorastudio.estimate``), and whether it fits
    this machine's GPU when there is one. The sequence counts the most inputs any set has."""
    from lorastudio.estimate import EstimateError, estimate_for_config

    inputs = max((len(s.inputs) for s in plan.sets + plan.validation), default=0)
    try:
        est = estimate_for_config(plan.config, num_inputs=inputs)
    except EstimateError as exc:
        return [f"estimate:   not available ({exc})"]
    lines = est.lines(plan.config.train.steps)
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        total = props.total_memory / 1024 ** 3
        verdict = "fits" if est.total_gb <= total else "does NOT fit: choose a smaller 'Fit to my GPU' preset"
        lines.append(f"this GPU:   {props.name}, {total:.1f} GB: {verdict}")
    else:
        lines.append("this GPU:   none found (training would run on the CPU, very slowly)")
    return lines
