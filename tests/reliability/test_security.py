"""Security: no network, no remote code, no pickles, no listening port, no writes outside the
output folder.

The runtime checks run the real processes with the test-only injector blocking every IPv4/IPv6
socket, DNS lookup, ``torch.load`` and ``pickle.load(s)`` — and logging each attempt, so an
attempt a library catches and shrugs off still fails the test. The static checks read the
source (AST, not text, so a docstring that says "never torch.load" does not count).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rel_helpers import REPO, inet_sockets, worker_env, write_config

SOURCE = REPO / "lorastudio"


def _attempts(tmp: Path) -> list[str]:
    """Blocked network/pickle calls (urllib3's import-time IPv6 loopback probe is not one)."""
    log = tmp / "inject.log"
    lines = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
    return [line for line in lines if not line.startswith("probe:")]


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_train_and_sample_run_with_network_and_pickle_blocked_and_no_socket_open(demo, tmp_path):
    from lorastudio import protocol

    cfg = write_config(demo, tmp_path / "run", steps=100000, sample_every=3, sample_sets=1, sample_steps=1,
                       checkpoint_every=3)
    env = worker_env(tmp_path, inject="block-network,block-pickle")
    worker = subprocess.Popen([sys.executable, "-m", "lorastudio", "worker", str(cfg)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    events, sockets_seen = [], []
    try:
        assert worker.stdout is not None and worker.stdin is not None
        for line in worker.stdout:
            ev = protocol.decode(line)
            events.append(ev)
            if ev["event"] in ("progress", "sample", "checkpoint"):
                sockets_seen += inet_sockets(worker.pid)  # while it trains, samples and saves
            if ev["event"] == "checkpoint" and ev["step"] >= 3:
                worker.stdin.write(b"stop\n")
                worker.stdin.flush()
            if ev["event"] in ("done", "error"):
                break
        rc = worker.wait(120)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert rc == 0 and events[-1]["event"] == "done", (events[-3:], worker.stderr.read()[-2000:])
    assert any(e["event"] == "sample" for e in events)
    assert sockets_seen == [], f"the worker held network sockets: {sockets_seen}"
    assert _attempts(tmp_path) == [], _attempts(tmp_path)

    # "test your LoRA": the sample command, same blocks
    from lorastudio.config import load_config

    config = load_config(cfg)
    start = sorted(config.dataset.path.glob("*_start.png"))[0]
    out = tmp_path / "sample.png"
    proc = subprocess.run([sys.executable, "-m", "lorastudio", "sample", "--model", str(config.model.path),
                           "--lora", events[-1]["lora"], "--input", str(start), "--prompt", "invert",
                           "--out", str(out), "--steps", "1", "--size", "32", "--input-size", "target"],
                          capture_output=True, text=True, timeout=300, env=env, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0 and out.is_file(), proc.stderr[-2000:]
    assert _attempts(tmp_path) == [], _attempts(tmp_path)


def test_the_injector_really_blocks(tmp_path):
    """The blocks above are real: a connection attempt fails and is logged."""
    env = worker_env(tmp_path, inject="block-network,block-pickle")
    code = ("import socket, pickle\n"
            "for f in (lambda: socket.create_connection(('example.com', 80)), lambda: socket.socket(),\n"
            "          lambda: pickle.loads(b'x')):\n"
            "    try:\n        f()\n    except Exception as e:\n        print('blocked', type(e).__name__)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert proc.stdout.count("blocked") == 3, proc.stdout + proc.stderr
    assert len(_attempts(tmp_path)) == 3


def test_sample_refuses_a_pickle_lora(demo, tmp_path):
    evil = tmp_path / "evil.bin"
    evil.write_bytes(b"\x80\x04K\x01.")  # a pickle (of the number 1); must never be unpickled
    proc = subprocess.run([sys.executable, "-m", "lorastudio", "sample", "--model", str(demo / "model"),
                           "--lora", str(evil), "--prompt", "x", "--out", str(tmp_path / "o.png"),
                           "--input", str(sorted((demo / "dataset").glob("*_start.png"))[0])],
                          capture_output=True, text=True, timeout=300, env=worker_env(tmp_path))
    assert proc.returncode == 2 and ".safetensors LoRAs only" in proc.stderr, proc.stderr[-2000:]


# -- static checks over the source ---------------------------------------------------------------

def _modules():
    for path in sorted(SOURCE.rglob("*.py")):
        yield path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def test_no_trust_remote_code_anywhere():
    offenders = []
    for path, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg == "trust_remote_code":
                offenders.append(f"{path.relative_to(REPO)}:{node.value.lineno}")
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and "trust_remote_code=True" in node.value:
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert offenders == []


PICKLE_MODULES = {"pickle", "cPickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}
PICKLE_CALLS = {"torch.load", "pickle.load", "pickle.loads", "np.load", "numpy.load", "torch.jit.load",
                "pickle.Unpickler"}


def test_no_pickle_loading_in_the_source():
    offenders = []
    for path, tree in _modules():
        where = path.relative_to(REPO)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                offenders += [f"{where}:{node.lineno} import {a.name}" for a in node.names
                              if a.name.split(".")[0] in PICKLE_MODULES]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PICKLE_MODULES:
                offenders.append(f"{where}:{node.lineno} from {node.module}")
            elif isinstance(node, ast.Call) and _dotted(node.func) in PICKLE_CALLS:
                offenders.append(f"{where}:{node.lineno} {_dotted(node.func)}()")
    assert offenders == []


#: Loaders that read only configs and vocabularies, never weights: local_files_only suffices.
WEIGHTLESS_LOADERS = {"AutoProcessor", "AutoTokenizer"}


def test_every_from_pretrained_is_local_and_safetensors_only():
    """Each ``from_pretrained`` passes ``**offline_kwargs()`` (local_files_only, use_safetensors);
    a processor or tokenizer, which holds no weights, passes local_files_only."""
    from lorastudio.training.families._common import offline_kwargs

    assert offline_kwargs() == {"local_files_only": True, "use_safetensors": True}
    calls, offenders = 0, []
    for path, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "from_pretrained":
                calls += 1
                starred = [_dotted(k.value.func) for k in node.keywords
                           if k.arg is None and isinstance(k.value, ast.Call)]
                explicit = {k.arg: getattr(k.value, "value", None) for k in node.keywords if k.arg}
                weightless = _dotted(node.func.value) in WEIGHTLESS_LOADERS  # configs only: local is enough
                if "offline_kwargs" not in starred and not (explicit.get("local_files_only") is True and (
                        weightless or explicit.get("use_safetensors") is True)):
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert calls >= 3 and offenders == [], offenders


# -- paths from a config -------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["../evil", "..", "/tmp/evil", "a/b", "a\\b", ".hidden", "", " x", "c:evil"])
def test_output_name_cannot_leave_the_output_folder(name, demo, tmp_path):
    from lorastudio.config import ConfigError, load_config

    cfg = write_config(demo, tmp_path, name="placeholder")
    text = cfg.read_text(encoding="utf-8").replace('name = "placeholder"', f"name = {name!r}".replace("'", '"')
                                                   if '"' not in name else f"name = '{name}'")
    cfg.write_text(text.replace("\\", "\\\\") if "\\" in name else text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    assert "output.name" in str(info.value)


def test_a_run_writes_only_inside_its_output_folder(demo, tmp_path):
    """Train with previews, checkpoints and a stop: every file written is under output.dir;
    the dataset and the model folder are left exactly as they were."""
    import shutil

    from lorastudio.config import load_config
    from lorastudio.training.events import NullSink
    from lorastudio.training.trainer import train

    data = tmp_path / "dataset"
    shutil.copytree(demo / "dataset", data)
    cfg = write_config(demo, tmp_path / "project", dataset=data, steps=4, sample_every=2, sample_sets=1,
                       sample_steps=1)
    config = load_config(cfg)

    def snapshot(*roots: Path) -> dict[str, tuple[int, int]]:
        return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for r in roots for p in r.rglob("*")}

    watched = (tmp_path, demo / "model")
    before = snapshot(*watched)
    time.sleep(0.01)
    train(config, NullSink())
    after = snapshot(*watched)
    changed = {p for p in after if before.get(p) != after[p]} | (set(before) - set(after))
    # (a folder above output.dir changes only because output.dir was created in it)
    outside = sorted(p for p in changed if not Path(p).is_relative_to(config.output.dir)
                     and not config.output.dir.is_relative_to(p))
    assert outside == [], outside
    assert (config.output.run_dir / "samples").is_dir() and config.output.lora_path.is_file()
