"""Held-out validation sets (``dataset.validation``): the grid's marks, its "Hold out for
validation" / "Use for training", and the Train page's one-click offer.

The held-out names live in the settings' config (``SettingsForm.held_out``), saved with the
project like the grid's repeats. Holding out every trainable set is refused (nothing would
be left to train on), and so is holding out a set with repeats (it is never trained on, so
its repeats would mean nothing: the config refuses that combination too). The offer picks
sets spread across the dataset so the held-out ones are a fair sample, and does nothing
until clicked.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from lorastudio.ui.session_signals import SessionSignals
from lorastudio.ui.workspace import Workspace

#: The offer appears from this many trainable sets (fewer: every set is needed for training).
OFFER_MIN_SETS = 12


def suggested_count(trainable: int) -> int:
    """About 10 % of the sets, at least 2."""
    return max(2, int(trainable / 10 + 0.5))


def spread_pick(names: list[str], count: int) -> list[str]:
    """``count`` names evenly spread over ``names`` (the middle of each equal slice): the same
    dataset always gives the same sets, and they are not all from one end of it."""
    n = len(names)
    count = min(count, n)
    return [names[(2 * i + 1) * n // (2 * count)] for i in range(count)]


def hold_out_problem(names: list[str], held: list[str], trainable: list[str], repeats: dict[str, int]) -> str:
    """Why ``names`` cannot be held out on top of ``held`` ("" when they can)."""
    repeated = [n for n in names if repeats.get(n, 1) > 1]
    if repeated:
        listed = ", ".join(f"{n} (×{repeats[n]})" for n in repeated)
        return (f"Not held out: {listed} repeat{'s' * (len(repeated) == 1)} per epoch, and a held-out set is never "
                "trained on. Set its repeats back to 1 first (right-click → Repeats per epoch…).")
    after = set(held) | set(names)
    if trainable and all(n in after for n in trainable):
        return "Not held out: at least one set must stay in training (holding out every set leaves nothing to learn)."
    return ""


class HoldOut(QObject):
    """Wires the dataset grid's hold-out requests and the Train page's offer to the settings."""

    #: A status-bar message (text, milliseconds): what was refused, or what changed.
    message = Signal(str, int)

    def __init__(self, signals: SessionSignals, workspace: Workspace, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.session = signals.session
        self.form = workspace.training_page.form
        self.page = workspace.dataset_page
        self.offer = workspace.training_page.holdout_offer
        self._dismissed = False
        self.page.hold_out_requested.connect(self.request)
        self.form.changed.connect(self.refresh)
        signals.dataset_changed.connect(lambda _dataset: self.refresh())
        signals.run_state_changed.connect(lambda _state: self.refresh())
        signals.project_changed.connect(self._project_changed)
        self.offer_button = self.offer.add_button("Hold out", self.accept_offer)
        self.offer.add_button("Not now", self.dismiss_offer)

    def trainable(self) -> list[str]:
        dataset = self.session.dataset
        return [s.name for s in dataset.trainable_sets()] if dataset else []

    def request(self, names: list[str], hold: bool) -> bool:
        """Hold ``names`` out (or give them back to training). False, with a message, if refused."""
        held = self.form.held_out()
        if self.session.running:
            self.message.emit("Stop the training before changing which sets are held out.", 8000)
            return False
        if hold:
            problem = hold_out_problem(names, held, self.trainable(), self.form.repeats())
            if problem:
                self.message.emit(problem, 12000)
                return False
            new = held + [n for n in names if n not in held]
        else:
            new = [n for n in held if n not in names]
        self.form.set_held_out(new)
        self.message.emit(f"{len(new)} set{'s' * (len(new) != 1)} held out for validation "
                          "(saved with the project)." if new else "No set is held out for validation.", 6000)
        return True

    def offered(self) -> list[str]:
        """The sets the offer would hold out: spread across the trainable sets without repeats."""
        trainable = self.trainable()
        repeats = self.form.repeats()
        candidates = [n for n in trainable if repeats.get(n, 1) <= 1]
        return spread_pick(candidates, suggested_count(len(trainable)))

    def accept_offer(self) -> None:
        if self.request(self.offered(), True):
            self.offer.hide()

    def dismiss_offer(self) -> None:
        self._dismissed = True
        self.offer.hide()

    def _project_changed(self, _project) -> None:
        self._dismissed = False
        self.refresh()

    def refresh(self) -> None:
        """The marks on the thumbnails, and the offer when no set is held out yet."""
        held = self.form.held_out() if self.session.project is not None else []
        self.page.set_held_out(held)
        count = len(self.trainable())
        show = (not held and count >= OFFER_MIN_SETS and not self._dismissed and not self.session.running
                and self.session.project is not None)
        if show:
            n = suggested_count(count)
            self.offer_button.setText(f"Hold out {n} sets")
            self.offer.show_message(
                f"Hold out {n} sets (about 10 %, at least 2) for validation? The LoRA never trains on them, so "
                "their loss shows when it starts to overfit and picks the best checkpoint.")
        else:
            self.offer.hide()
