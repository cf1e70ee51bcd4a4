"""A run that reuses an output name: a fresh start never mixes with the run before it, and a
stop before the first step never replaces an earlier LoRA with an untrained one."""

from __future__ import annotations

from pathlib import Path

from lorastudio.config import load_config
from lorastudio.training import checkpoint as ckpt
from lorastudio.training.events import NullSink
from lorastudio.training.lora import read_lora_file
from lorastudio.training.stop import StopSignal
from lorastudio.training.trainer import train

from trainer_helpers import make_config


def test_a_fresh_run_moves_the_previous_runs_checkpoints_aside(demo_project, tmp_path):
    common = dict(checkpoint_every=2, sample_sets=0)
    first = load_config(make_config(demo_project, tmp_path, steps=8, **common))
    train(first, NullSink())
    assert [c.step for c in ckpt.list_checkpoints(first.output.run_dir)] == [4, 6, 8]

    # new settings, same name, Train (not Resume): its own checkpoints must survive pruning
    second = load_config(make_config(demo_project, tmp_path, steps=4, learning_rate=5e-3, **common))
    sink = NullSink()
    train(second, sink)
    events = [e for e in sink.history if e["event"] == "checkpoint"]
    assert [e["step"] for e in events] == [2, 4]
    assert all(Path(e["path"]).is_dir() for e in events)
    assert [c.step for c in ckpt.list_checkpoints(second.output.run_dir)] == [2, 4]
    previous = second.output.run_dir / ckpt.PREVIOUS
    assert sorted(p.name for p in previous.iterdir()) == ["step_000004", "step_000006", "step_000008"]
    assert any(e["event"] == "status" and str(previous) in e.get("message", "") for e in sink.history)

    # and Resume continues the run it belongs to, not the older one
    more = load_config(make_config(demo_project, tmp_path, steps=6, learning_rate=5e-3, **common))
    sink = NullSink()
    train(more, sink, resume=True)
    assert sink.history[0]["resumed_from"] == 4


class StopWhileLoading(NullSink):
    """Asks for a stop while the transformer loads: after caching, before step 1."""

    def __init__(self, stop: StopSignal) -> None:
        super().__init__()
        self.stop = stop

    def _write(self, ev):
        if ev["event"] == "status" and ev["phase"] == "loading" and "transformer" in ev.get("message", ""):
            self.stop.request("test")


def test_a_stop_before_the_first_step_keeps_the_earlier_lora(demo_project, tmp_path):
    config = load_config(make_config(demo_project, tmp_path, steps=3, learning_rate=1e-2, sample_sets=0))
    train(config, NullSink())
    before = config.output.lora_path.read_bytes()
    trained, _ = read_lora_file(config.output.lora_path)
    assert any(v.abs().max() > 0 for k, v in trained.items() if "lora_B" in k)

    stop = StopSignal()
    sink = StopWhileLoading(stop)
    result = train(config, sink, stop=stop)
    assert result.stopped and result.step == 0 and result.lora is None
    assert sink.history[-1] == {"event": "done", "lora": None, "step": 0, "stopped": True}
    assert not any(e["event"] == "checkpoint" for e in sink.history)
    assert config.output.lora_path.read_bytes() == before
