"""A stand-in for `lorastudio worker` that speaks the event protocol and misbehaves on demand.

    python fake_worker.py MODE [STEPS]

MODE: ``normal`` (trains STEPS steps, obeys stop), ``ignore_stop`` (never stops, and has a
child process that must die with it), ``crash`` (exits 3 with a traceback on stderr),
``error`` (sends an ``error`` event, exits 1), ``linger`` (sends ``done`` and never exits),
``stdin_eof`` (trains until stdin ends), ``validate`` (also a ``validation`` event every 10
steps, falling then climbing, and ``done`` names the best LoRA).
"""

import json
import os
import subprocess
import sys
import threading
import time

stop = threading.Event()


def emit(**event):
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def watch_stdin():
    for line in sys.stdin:
        if line.strip() == "stop":
            stop.set()
            return
    stop.set()  # end of stdin means stop too


def main():
    mode = sys.argv[1]
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    if mode != "ignore_stop":
        threading.Thread(target=watch_stdin, daemon=True).start()
    emit(event="started", total=steps, family="fake", sets=3, run_dir=os.getcwd(), resumed_from=0)
    print("this line is not an event", flush=True)
    emit(event="status", phase="caching", message="caching", current=1, total=3)
    if mode == "crash":
        sys.stderr.write("Traceback (most recent call last):\n  boom\nRuntimeError: fake crash\n")
        sys.stderr.flush()
        os._exit(3)
    if mode == "error":
        emit(event="error", message="loss is NaN", kind="nan", log=None)
        sys.exit(1)
    if mode == "ignore_stop":
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        emit(event="status", phase="training", message=f"child {child.pid}")
        while True:
            time.sleep(0.1)
    for step in range(1, steps + 1):
        if stop.is_set():
            emit(event="checkpoint", step=step - 1, path="ckpt")
            emit(event="done", lora="fake.safetensors", step=step - 1, stopped=True)
            return
        time.sleep(0.02)
        emit(event="progress", step=step, total=steps, loss=1.0 / step, lr=1e-4, rate=50.0, eta=(steps - step) / 50)
        if step == 2:
            emit(event="sample", step=step, path="sample.png", set="set000", target="t.png")
        if mode == "validate" and step % 10 == 0:
            held = 0.5 - step / 100 if step <= 20 else 0.3 + (step - 20) / 100
            emit(event="validation", step=step, loss=held, per_sigma={s: held for s in ("0.1", "0.5", "0.9")})
    if mode == "stdin_eof":
        stop.wait(60)
        emit(event="done", lora="fake.safetensors", step=steps, stopped=True)
        return
    best = {"best": "fake.best.safetensors"} if mode == "validate" else {}
    emit(event="done", lora="fake.safetensors", step=steps, stopped=False, **best)
    if mode == "linger":
        while True:
            time.sleep(0.1)


if __name__ == "__main__":
    main()
