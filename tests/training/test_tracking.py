"""``train.log_with``: the run's loss, learning rate, held-out loss and previews through accelerate's trackers.

The glue is checked with a tracker of our own through accelerate's ``GeneralTracker`` API
(any machine); a real run writes TensorBoard event files that TensorBoard's own reader reads
back (tensorboard is in the ``test`` extra; only a venv without it skips that one test).
"""

from __future__ import annotations

import pytest
import tomli_w
from PIL import Image

from lorastudio.config import load_config
from lorastudio.training.events import NullSink
from lorastudio.training.plan import TrainingError, make_plan
from lorastudio.training.tracking import Tracker, logs_dir
from lorastudio.training.trainer import train

from trainer_helpers import make_config

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover
    import tomli as tomllib  # type: ignore[no-redef]


def test_tracker_sends_scalars_and_images_through_accelerates_tracker_api():
    from accelerate import Accelerator
    from accelerate.tracking import GeneralTracker

    class Recording(GeneralTracker):
        name = "recording"
        requires_logging_directory = False

        def __init__(self):
            super().__init__()
            self.calls = []

        @property
        def tracker(self):
            return self

        def store_init_configuration(self, values):
            self.calls.append(("config", values))

        def log(self, values, step, **kwargs):
            self.calls.append(("log", values, step))

        def log_images(self, values, step, **kwargs):
            self.calls.append(("images", {k: v.shape for k, v in values.items()}, step, kwargs))

    recording = Recording()
    accelerator = Accelerator(cpu=True, log_with=[recording])
    tracker = Tracker(accelerator, "recording", {"timesteps": "shift"})
    tracker.log({"loss": 0.5, "lr": 1e-4}, 3)
    tracker.image("set_a", Image.new("RGB", (24, 16), (200, 10, 10)), 3)
    tracker.end()
    assert recording.calls == [("config", {"timesteps": "shift"}), ("log", {"loss": 0.5, "lr": 1e-4}, 3),
                               ("images", {"samples/set_a": (1, 16, 24, 3)}, 3, {"dataformats": "NHWC"})]
    off = Tracker(accelerator, "", {})
    off.log({"loss": 1.0}, 4)  # no tracker asked for: nothing is logged
    assert len(recording.calls) == 3


def test_tensorboard_missing_is_a_config_error_before_loading(demo_project, tmp_path, monkeypatch):
    import accelerate.utils

    monkeypatch.setattr(accelerate.utils, "is_tensorboard_available", lambda: False)
    config = load_config(make_config(demo_project, tmp_path, log_with="tensorboard"))
    with pytest.raises(TrainingError) as info:
        make_plan(config)
    assert info.value.kind == "config" and "lorastudio[tensorboard]" in info.value.message
    assert info.value.message.startswith("train.log_with")


def test_a_run_logs_loss_lr_and_previews_to_tensorboard(demo_project, tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is in the test extra (pyproject.toml); not in this venv")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    path = make_config(demo_project, tmp_path, steps=3, sample_every=2, sample_sets=1, log_with="tensorboard",
                       lr_schedule="linear")
    config = load_config(path)
    held_out = make_plan(config).sets[-1].name
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    data["dataset"]["validation"] = [held_out]
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    config = load_config(path)
    sink = NullSink()
    train(config, sink)
    runs = [p.parent for p in logs_dir(config.output.run_dir).rglob("events.out.tfevents.*")]
    assert runs
    events = EventAccumulator(str(runs[0]), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    progress = [e for e in sink.history if e["event"] == "progress"]
    loss = events.Scalars("loss")
    assert [s.step for s in loss] == [1, 2, 3]
    assert [s.value for s in loss] == pytest.approx([p["loss"] for p in progress], rel=1e-6)
    assert [s.value for s in events.Scalars("lr")] == pytest.approx([p["lr"] for p in progress], rel=1e-6)
    samples = [e for e in sink.history if e["event"] == "sample"]
    tags = events.Tags()["images"]
    assert tags == [f"samples/{samples[0]['set']}"]
    assert sorted(i.step for i in events.Images(tags[0])) == sorted(e["step"] for e in samples)
    # the held-out loss, evaluated with the previews (validate_every unset) and at the end
    validations = [e for e in sink.history if e["event"] == "validation"]
    assert [e["step"] for e in validations] == [2, 3]
    held = events.Scalars("validation/loss")
    assert [(s.step, s.value) for s in held] == [(e["step"], pytest.approx(e["loss"], rel=1e-6)) for e in validations]
