"""A stand-in for `lorastudio grid RUN_DIR --sets … --steps … --out PNG --jsonl` (and for
`lorastudio export`) that speaks the contract: ``status`` events (phase "grid", current,
total), then ``done`` with ``grid`` (the PNG) or ``error``; a ``stop`` line on stdin, or the
end of stdin, cancels it and no PNG is written.

    python fake_grid.py MODE grid RUN_DIR --sets A B --steps 10 20 [--best] --out grid.png --jsonl
    python fake_grid.py MODE export RUN_DIR --step N --out FILE

MODE: ``normal``, ``slow`` (waits for stop after the first cell), ``ignore_stop`` (never
ends by itself), ``error`` (an ``error`` event, exit 1).
"""

import json
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
            break
    stop.set()  # a stop line, or the end of stdin


def values(args, flag):
    if flag not in args:
        return []
    out = []
    for a in args[args.index(flag) + 1:]:
        if a.startswith("--"):
            break
        out.append(a)
    return out


def main():
    mode, command, *args = sys.argv[1:]
    out = args[args.index("--out") + 1]
    if command == "export":
        with open(out, "wb") as fh:
            fh.write(b"exported step " + args[args.index("--step") + 1].encode())
        return 0
    if mode != "ignore_stop":
        threading.Thread(target=watch_stdin, daemon=True).start()
    print("loading the model (not an event)", flush=True)
    sets, steps = values(args, "--sets"), values(args, "--steps")
    columns = 2 + len(steps) + ("--best" in args)
    total = len(sets) * columns
    for i in range(total):
        if stop.is_set():
            emit(event="done", stopped=True)
            return 0
        emit(event="status", phase="grid", message=f"rendering cell {i + 1} of {total}", current=i + 1,
             total=total)
        if mode == "error":
            emit(event="error", kind="crash", message="out of memory while rendering step 10")
            return 1
        if mode in ("slow", "ignore_stop") and i == 0:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and (mode == "ignore_stop" or not stop.is_set()):
                time.sleep(0.02)
            continue
        time.sleep(0.01)
    from PIL import Image

    Image.new("RGB", (32 * columns, 32 * len(sets)), (90, 160, 90)).save(out)
    emit(event="done", grid=out, stopped=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
