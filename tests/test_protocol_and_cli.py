"""The event protocol round-trips, and both CLI entry points list DESIGN.md's commands."""

import math
import subprocess
import sys

import pytest

from lorastudio import protocol

COMMANDS = ("gui", "check", "train", "sample", "worker", "demo")


def test_events_round_trip_one_line_each():
    events = [
        protocol.make_event(protocol.STARTED, total=10, family="kontext", sets=3, run_dir="/r", resumed_from=0),
        protocol.make_event(protocol.PROGRESS, step=1, total=10, loss=0.5, lr=1e-4, rate=2.0, eta=4.5),
        protocol.make_event(protocol.ERROR, message="loss is nan", kind="nan"),
    ]
    lines = [protocol.encode(e) for e in events]
    assert all("\n" not in line for line in lines)
    assert protocol.decode_stream(line + "\n" for line in lines) == events


def test_non_finite_numbers_become_null():
    line = protocol.encode(protocol.make_event(protocol.PROGRESS, step=1, total=1, loss=math.nan))
    assert protocol.decode(line)["loss"] is None


@pytest.mark.parametrize("bad", ["hello", "[1,2]", '{"event": "nope"}', "{"])
def test_garbage_is_a_protocol_error(bad):
    with pytest.raises(protocol.ProtocolError):
        protocol.decode(bad)


def test_error_kind_must_be_known():
    with pytest.raises(ValueError):
        protocol.make_event(protocol.ERROR, message="x", kind="weird")


def test_worker_command_line_runs_this_python():
    argv = protocol.worker_command_line("p.toml", resume=True)
    assert argv[0] == sys.executable
    assert argv[-3:] == ["worker", "p.toml", "--resume"]


@pytest.mark.parametrize("entry", [[sys.executable, "-m", "lorastudio"], [sys.executable, "main.py"]])
def test_help_lists_every_command(entry):
    out = subprocess.run([*entry, "--help"], capture_output=True, text=True, timeout=60, check=True).stdout
    for command in COMMANDS:
        assert command in out


def test_console_script_help():
    from pathlib import Path

    # The console script pip installed beside this interpreter (bin/ or Scripts\\).
    scripts = Path(sys.executable).parent
    exe = next((p for p in (scripts / "lorastudio", scripts / "lorastudio.exe") if p.exists()), None)
    assert exe is not None, f"no lorastudio console script in {scripts}: is the package installed?"
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60, check=True).stdout
    for command in COMMANDS:
        assert command in out


def test_main_py_dispatches_worker_flag(monkeypatch):
    """The frozen bundle starts its worker as `<app> --worker CONFIG`; main.py routes it."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("lorastudio_main", Path(__file__).parents[1] / "main.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    seen = []
    monkeypatch.setattr("lorastudio.cli.main", lambda argv: seen.append(argv) or 0)
    assert module._entry(["--worker", "p.toml", "--resume"]) == 0
    assert seen == [["worker", "p.toml", "--resume"]]
