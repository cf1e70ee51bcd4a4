"""How ``lorastudio train`` (without ``--jsonl``) shows its events to a person.

On a terminal: one live tqdm bar at the bottom (step, loss, steps/s, ETA) with the status
lines printed above it, as any tqdm loop looks. Into a file or a pipe (a log, CI, ``| tee``)
a redrawn bar would be carriage returns and escape codes, so there the same events are plain
lines, one per status and a progress line every tenth of the run (and at least every 30 s).
The rate and ETA are the trainer's own (pauses for previews and checkpoints excluded), the
same figures the GUI shows.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from tqdm import tqdm

from lorastudio import protocol
from lorastudio.training.events import EventSink

#: Plain mode: a progress line at least this often (seconds), besides every tenth of the run.
PLAIN_PROGRESS_EVERY = 30.0


class _StepBar(tqdm):
    """tqdm's bar showing the trainer's steps/s instead of tqdm's wall-clock estimate; tqdm
    derives the ETA from it ((total - step) / rate, the trainer's own ETA)."""

    def __init__(self, *args: Any, trainer_rate: float | None = None, **kwargs: Any) -> None:
        self.trainer_rate = trainer_rate  # before tqdm draws the bar for the first time
        super().__init__(*args, **kwargs)

    @property
    def format_dict(self) -> dict[str, Any]:
        values = super().format_dict
        if self.trainer_rate:
            values["rate"] = self.trainer_rate
        return values


class TerminalSink(EventSink):
    """Readable progress for a person: a live bar on a terminal, plain lines anywhere else."""

    def __init__(self, stream: TextIO | None = None, live: bool | None = None) -> None:
        super().__init__()
        self.stream = stream or sys.stdout
        self.live = _is_terminal(self.stream) if live is None else live
        self._bar: _StepBar | None = None
        self._logged_tenth = -1
        self._logged_at = 0.0

    def _line(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text, file=self.stream)  # clears the bar, prints, redraws it below
        else:
            self.stream.write(text + "\n")
            self.stream.flush()

    def _write(self, ev: dict[str, Any]) -> None:
        kind = ev["event"]
        if kind == protocol.PROGRESS:
            if self.live:
                self._draw(ev)
            else:
                self._log_progress(ev)
        elif kind == protocol.STARTED:
            resumed = f", resuming after step {ev['resumed_from']}" if ev.get("resumed_from") else ""
            self._line(f"Training {ev['family']} LoRA: {ev['sets']} sets, {ev['total']} steps{resumed}")
            self._line(f"Run folder: {ev['run_dir']}")
        elif kind == protocol.STATUS:
            if ev.get("phase") == "caching" and "current" in ev and ev["current"] not in (0, ev.get("total")):
                return
            counted = f" ({ev['current']}/{ev['total']})" if "current" in ev and "total" in ev else ""
            self._line(f"{ev['phase']}: {ev.get('message', '')}{counted}")
        elif kind == protocol.SAMPLE:
            self._line(f"sample at step {ev['step']}: {ev['path']}")
        elif kind == protocol.CHECKPOINT:
            self._line(f"checkpoint at step {ev['step']}: {ev['path']}")
        elif kind == protocol.VALIDATION:
            self._line(f"validation at step {ev['step']}: held-out loss {_loss(ev)}")
        elif kind == protocol.CAPTION:
            self._line(f"{ev['set']}: {ev['text']}" + ("" if ev.get("written") else "  (not written)"))
        elif kind == protocol.DONE and "grid" in ev:  # a checkpoint grid's end
            self._line(f"grid: {ev['grid']}" if ev["grid"] else "stopped: no grid written")
        elif kind == protocol.DONE and "drafted" in ev:  # a caption run's end
            self._line(f"{'stopped' if ev.get('stopped') else 'finished'}: {ev['drafted']} caption(s) drafted")
        elif kind == protocol.DONE:
            self._close_bar()
            how = "stopped" if ev.get("stopped") else "finished"
            self._line(f"{how} after step {ev['step']}: {ev.get('lora')}")
            if ev.get("best"):
                self._line(f"best checkpoint's LoRA (lowest held-out loss): {ev['best']}")
        elif kind == protocol.ERROR:
            self._close_bar()
            log = f" (log: {ev['log']})" if ev.get("log") else ""
            self._line(f"error [{ev['kind']}]: {ev['message']}{log}")

    def _draw(self, ev: dict[str, Any]) -> None:
        rate, figures = ev.get("rate") or None, f"loss {_loss(ev)}, lr {ev.get('lr', 0):.2e}"
        if self._bar is None:
            # Drawn at the first step (a resumed run's first new one); disable=False: a
            # TQDM_DISABLE meant for the libraries' bars must not hide this one.
            self._bar = _StepBar(total=ev["total"], initial=ev["step"], trainer_rate=rate, postfix=figures,
                                 file=self.stream, dynamic_ncols=True, disable=False, leave=True,
                                 bar_format="{percentage:3.0f}%|{bar}| step {n_fmt}/{total_fmt} "
                                            "[{elapsed}<{remaining}, {rate_fmt}{postfix}]")
            return
        self._bar.trainer_rate = rate
        self._bar.set_postfix_str(figures, refresh=False)
        self._bar.update(ev["step"] - self._bar.n)

    def _log_progress(self, ev: dict[str, Any]) -> None:
        step, total = ev["step"], max(1, ev["total"])
        tenth = step * 10 // total
        now = time.monotonic()
        if tenth == self._logged_tenth and step != total and now - self._logged_at < PLAIN_PROGRESS_EVERY:
            return
        self._logged_tenth, self._logged_at = tenth, now
        self._line(f"step {step}/{ev['total']}  loss {_loss(ev)}  lr {ev.get('lr', 0):.2e}  "
                   f"{ev.get('rate') or 0:.2f} steps/s  eta {_hms(ev.get('eta') or 0.0)}")

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def quiet_library_bars() -> None:
    """Turn off diffusers' and transformers' own tqdm bars ("Loading pipeline components",
    "Loading weights"): on a terminal they would draw over ours, in a log they are carriage
    returns. For the ``train`` process only (the trainer imports both libraries anyway)."""
    from diffusers.utils import logging as diffusers_logging
    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    disable_progress_bars()


def _loss(ev: dict[str, Any]) -> str:
    loss = ev.get("loss")
    return f"{loss:.4f}" if isinstance(loss, float) else "nan"


def _hms(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
