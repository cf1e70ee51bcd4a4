"""A stand-in for the app, run as its own process by the GUI-fault tests.

``gui_host.py runner CONFIG``: a Qt event loop with the real ``WorkerRunner`` hosting the real
worker, exactly as the app hosts it; prints ``worker <pid>`` once training is under way.

``gui_host.py plain CONFIG OUT_FILE``: starts the worker with a plain ``subprocess.Popen``
whose stdout goes to a file and whose stdin pipe is also held open by a second child
(``holder <pid>``), so when this process dies the worker sees neither end of stdin nor a
broken pipe: only its parent-process watchdog can notice.

The test SIGKILLs this process and watches what the worker does.
"""

from __future__ import annotations

import subprocess
import sys
import time


def runner_host(config: str) -> int:
    from PySide6.QtCore import QCoreApplication

    from lorastudio.ui.runner import WorkerRunner

    app = QCoreApplication(sys.argv[:1])
    runner = WorkerRunner()

    def on_progress(ev: dict) -> None:
        if ev["step"] >= 2 and not getattr(runner, "_announced", False):
            runner._announced = True  # type: ignore[attr-defined]
            print(f"worker {runner.pid}", flush=True)

    runner.progress.connect(on_progress)
    runner.failed.connect(lambda e: print(f"failed {e['message']}", flush=True))
    runner.start_training(config)
    return app.exec()


def plain_host(config: str, out_file: str) -> int:
    with open(out_file, "wb") as out:
        worker = subprocess.Popen([sys.executable, "-m", "lorastudio", "worker", config], stdin=subprocess.PIPE,
                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    assert worker.stdin is not None
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                              pass_fds=(worker.stdin.fileno(),), start_new_session=True)
    print(f"worker {worker.pid}", flush=True)
    print(f"holder {holder.pid}", flush=True)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    mode = sys.argv[1]
    sys.exit(runner_host(sys.argv[2]) if mode == "runner" else plain_host(sys.argv[2], sys.argv[3]))
