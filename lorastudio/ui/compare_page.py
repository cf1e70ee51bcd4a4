"""The Test tab: generate with the base model and with the new LoRA, side by side.

Runs ``lorastudio sample`` (the same command line the CLI offers) twice as child processes
through ``QProcess`` — base model first, then with ``--lora`` — so the GUI never loads a
model itself and stays responsive while the images are made. The LoRA can be the final
one, the best one or any kept checkpoint (``lorastudio export`` writes that one first). The
second tab renders a checkpoint grid (``grid_panel``).
"""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QProcess, Signal
from PySide6.QtWidgets import (QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QFrame, QGroupBox, QHBoxLayout,
                               QLabel, QLineEdit, QPlainTextEdit, QProgressBar, QPushButton, QScrollArea, QSpinBox,
                               QTabWidget, QVBoxLayout, QWidget)

from lorastudio import catalog, protocol, run_folder
from lorastudio.dataset.model import ImageSet
from lorastudio.ui import theme
from lorastudio.ui.checkpoint_choice import LoraChoice, export_command, exported_path
from lorastudio.ui.grid_panel import GridPanel
from lorastudio.ui.message_bar import MessageBar
from lorastudio.ui.image_strip import ImageStrip, StripItem
from lorastudio.ui.thumbnails import ThumbnailLoader


def sample_command(model: str, lora: str | None, inputs: list[str], prompt: str, out: str, steps: int, seed: int,
                   scale: float, input_size: str = catalog.AUTO_INPUT_SIZE) -> list[str]:
    args = ["sample", "--model", model, "--input-size", input_size]
    if lora:
        args += ["--lora", lora, "--scale", f"{scale:g}"]
    if inputs:
        args += ["--input", *inputs]
    # "--prompt=…" so a prompt that starts with "-" is not taken for an option.
    args += [f"--prompt={prompt}", "--out", out, "--steps", str(steps), "--seed", str(seed)]
    return protocol.lorastudio_command_line(*args)


#: What each child process of a test does, while it runs and when it fails.
STEP_STATUS = {"export": "Exporting the checkpoint's LoRA…", "base": "Generating with the base model…",
               "lora": "Generating with your LoRA…"}
STEP_FAILED = {"export": "Exporting the checkpoint", "base": "Generating with the base model",
               "lora": "Generating with the LoRA"}


class ComparePage(QWidget):
    """Pick inputs (a set, or any images), a prompt, and compare base vs LoRA."""

    finished = Signal(bool)

    def __init__(self, loader: ThumbnailLoader, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._sets: list[ImageSet] = []
        self._custom_inputs: list[Path] = []
        self._queue: list[tuple[str, list[str], Path]] = []
        self._results: dict[str, Path] = {}
        self._proc: QProcess | None = None
        self._output = b""
        self._choices: list[LoraChoice] = []
        #: The kept checkpoint chosen in the LoRA list (exported before sampling), or None.
        self.export_step: int | None = None
        self.model_path = ""
        self.out_dir: Path | None = None
        self.paired = True
        self.trigger = ""
        self.default_caption = ""
        #: The project's ``train.input_size``: inputs are sized as the LoRA's training sized them.
        self.input_size = catalog.AUTO_INPUT_SIZE

        layout = QHBoxLayout(self)
        layout.setContentsMargins(12, 8, 12, 12)
        layout.setSpacing(12)
        left = QVBoxLayout()
        box = QGroupBox("Test your LoRA")
        form = QFormLayout(box)
        self.checkpoint = QComboBox()
        self.checkpoint.setToolTip("The run's final LoRA, its best checkpoint (lowest held-out loss) or any kept "
                                   "checkpoint (exported to a LoRA file first)")
        self.checkpoint.activated.connect(self._choice_made)
        form.addRow("Checkpoint", self.checkpoint)
        self.lora = QLineEdit()
        self.lora.setPlaceholderText("the .safetensors file")
        self.lora.textEdited.connect(self._lora_typed)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse_lora)
        row = QHBoxLayout()
        row.addWidget(self.lora, 1)
        row.addWidget(browse)
        form.addRow("LoRA", row)
        self.set_combo = QComboBox()
        self.set_combo.setToolTip("Use the input images (and caption) of a training set — or choose any images.")
        self.set_combo.currentIndexChanged.connect(self._set_chosen)
        choose = QPushButton("Choose images…")
        choose.setToolTip("Any input images, in order (first = _start, then _start1 …)")
        choose.clicked.connect(self._choose_images)
        row = QHBoxLayout()
        row.addWidget(self.set_combo, 1)
        row.addWidget(choose)
        form.addRow("Inputs", row)
        self.inputs_label = QLabel("")
        theme.set_role(self.inputs_label, "muted")
        self.inputs_label.setWordWrap(True)
        form.addRow("", self.inputs_label)
        self.prompt = QPlainTextEdit()
        self.prompt.setPlaceholderText("The caption / instruction (include your trigger word)")
        self.prompt.setFixedHeight(80)
        form.addRow("Prompt", self.prompt)
        self.steps = QSpinBox()
        self.steps.setRange(1, 200)
        self.steps.setValue(20)
        self.steps.setToolTip("Denoising steps for the test images")
        self.seed = QSpinBox()
        self.seed.setRange(0, 2_147_483_647)
        self.seed.setToolTip("The same seed for both images, so only the LoRA differs")
        self.scale = QDoubleSpinBox()
        self.scale.setRange(0.0, 2.0)
        self.scale.setSingleStep(0.1)
        self.scale.setValue(1.0)
        self.scale.setToolTip("LoRA strength (1.0 = as trained)")
        form.addRow("Steps", self.steps)
        form.addRow("Seed", self.seed)
        form.addRow("Strength", self.scale)
        left.addWidget(box)
        buttons = QHBoxLayout()
        self.generate_button = QPushButton("Generate base vs LoRA")
        theme.set_role(self.generate_button, "primary")
        self.generate_button.clicked.connect(self.generate)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.setEnabled(False)
        buttons.addWidget(self.generate_button)
        buttons.addWidget(self.cancel_button)
        buttons.addStretch(1)
        left.addLayout(buttons)
        self.busy = QProgressBar()
        self.busy.setRange(0, 0)
        self.busy.hide()
        left.addWidget(self.busy)
        self.status = QLabel("")
        theme.set_role(self.status, "muted")
        self.status.setWordWrap(True)
        left.addWidget(self.status)
        self.error_bar = MessageBar("error", self)
        left.addWidget(self.error_bar)
        left.addStretch(1)
        form_page = QWidget()
        form_page.setLayout(left)
        single = QScrollArea()  # a short screen scrolls the form rather than growing the window
        single.setWidget(form_page)
        single.setWidgetResizable(True)
        single.setFrameShape(QFrame.Shape.NoFrame)
        self.grid_panel = GridPanel()
        self.grid_panel.rendered.connect(lambda _path: self._show_inputs())
        self.modes = QTabWidget()
        self.modes.setDocumentMode(True)
        self.modes.addTab(single, "Base vs LoRA")
        self.modes.addTab(self.grid_panel, "Checkpoint grid")
        self.modes.currentChanged.connect(lambda _i: self._show_inputs())
        self.modes.setMaximumWidth(460)
        self.modes.setMinimumWidth(340)
        layout.addWidget(self.modes)
        self.strip = ImageStrip(loader, self, box=1024,
                                empty_message="Train a LoRA (or pick one), choose inputs and a prompt, then press "
                                              "Generate: the base model and your LoRA are shown side by side.")
        layout.addWidget(self.strip, 1)

    # -- setup ----------------------------------------------------------------------------

    def configure(self, model_path: str, out_dir: Path | None, paired: bool, sets: list[ImageSet],
                  trigger: str = "", default_caption: str = "", input_size: str = catalog.AUTO_INPUT_SIZE) -> None:
        self.model_path = model_path
        self.input_size = input_size
        self.out_dir = out_dir
        self.paired = paired
        self.trigger, self.default_caption = trigger, default_caption
        current = self.set_combo.currentText()
        usable = [s for s in sets if s.target is not None or s.inputs]
        names = (paired, tuple(s.name for s in usable))
        self._sets = usable
        if names == getattr(self, "_names", None):
            self._set_chosen()
            return
        self._names = names
        self.set_combo.blockSignals(True)
        self.set_combo.clear()
        if paired:
            for s in self._sets:
                self.set_combo.addItem(s.name)
        else:
            self.set_combo.addItem("(text-to-image: no inputs)")
        self.set_combo.addItem("Custom images…")
        i = self.set_combo.findText(current)
        self.set_combo.setCurrentIndex(i if i >= 0 else 0)
        self.set_combo.blockSignals(False)
        self._set_chosen()

    def set_lora(self, path: str) -> None:
        self.lora.setText(path)
        self.export_step = None
        self._select_choice()

    def set_choices(self, choices: list[LoraChoice]) -> None:
        """The run's final and best LoRA and its kept checkpoints (the chosen one stays chosen)."""
        if list(choices) == self._choices and self.checkpoint.count():
            return
        self._choices = list(choices)
        self.checkpoint.clear()
        for c in self._choices:
            self.checkpoint.addItem(c.label)
        self.checkpoint.addItem("Other file (below)")
        self._select_choice()

    def _select_choice(self) -> None:
        text = self.lora.text().strip()
        for i, c in enumerate(self._choices):
            if (c.step is not None and c.step == self.export_step) or \
                    (self.export_step is None and c.lora is not None and str(c.lora) == text):
                self.checkpoint.setCurrentIndex(i)
                return
        self.export_step = None
        self.checkpoint.setCurrentIndex(self.checkpoint.count() - 1)

    def _choice_made(self, index: int) -> None:
        if not 0 <= index < len(self._choices):
            self._browse_lora()
            return
        choice = self._choices[index]
        self.export_step = choice.step
        if choice.step is not None and self.out_dir is not None:
            self.lora.setText(str(exported_path(self.out_dir, choice.step)))
        elif choice.lora is not None:
            self.lora.setText(str(choice.lora))

    def _lora_typed(self, _text: str) -> None:
        self.export_step = None
        self.checkpoint.setCurrentIndex(self.checkpoint.count() - 1)

    def inputs(self) -> list[Path]:
        s = self._chosen_set()
        if s is not None:
            return list(s.inputs)
        return list(self._custom_inputs) if self.paired else []

    def _chosen_set(self) -> ImageSet | None:
        name = self.set_combo.currentText()
        return next((s for s in self._sets if s.name == name), None) if self.paired else None

    def _set_chosen(self, *_args) -> None:
        s = self._chosen_set()
        if s is not None:
            caption = (s.caption or "").strip() or self.default_caption
            if self.trigger and self.trigger not in caption.split():
                caption = f"{self.trigger} {caption}".strip()
            self.prompt.setPlainText(caption)
        ins = self.inputs()
        self.inputs_label.setText(", ".join(p.name for p in ins) if ins else
                                  ("no input images (text-to-image)" if not self.paired else "no images chosen"))
        self._show_inputs()

    def _show_grid(self) -> None:
        path = self.grid_panel.grid_path
        self.strip.set_items([StripItem("checkpoint grid", path if path and path.is_file() else None,
                                        "not rendered yet", missing_is_error=False)])

    def _show_inputs(self) -> None:
        if self.modes.currentWidget() is self.grid_panel:
            self._show_grid()
            return
        items = [StripItem(f"input {i + 1}", p) for i, p in enumerate(self.inputs())]
        s = self._chosen_set()
        items.append(StripItem("base model", self._results.get("base"), "not generated yet", arrow_before=bool(items),
                               missing_is_error=False))
        items.append(StripItem("with LoRA", self._results.get("lora"), "not generated yet", missing_is_error=False))
        if s is not None and s.target is not None:
            items.append(StripItem("training target", s.target))
        self.strip.set_items(items)

    def _browse_lora(self) -> None:
        start = self.lora.text() or (str(self.out_dir) if self.out_dir else "")
        path, _ = QFileDialog.getOpenFileName(self, "Choose a LoRA", start, "LoRA (*.safetensors)")
        if path:
            self.set_lora(path)

    def _choose_images(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Choose input images", "",
                                                "Images (*.png *.jpg *.jpeg *.webp *.bmp)")
        if files:
            self._custom_inputs = [Path(f) for f in files]
            self.set_combo.setCurrentIndex(self.set_combo.count() - 1)
            self._results.clear()
            self._set_chosen()

    # -- running --------------------------------------------------------------------------

    def is_running(self) -> bool:
        return self._proc is not None

    def generate(self) -> None:
        if self._proc is not None:
            return
        self.error_bar.hide()
        lora = self.lora.text().strip()
        if not self.model_path:
            self._fail("Choose the base model in the Train tab first.")
            return
        exporting = self.export_step is not None and self.out_dir is not None
        if not lora or not (exporting or Path(lora).is_file()):
            self._fail("Choose the LoRA file (.safetensors) to test.")
            return
        if self.paired and not self.inputs():
            self._fail("Choose input images: a set, or your own images.")
            return
        out_dir = run_folder.tests_dir(self.out_dir or Path(lora).parent)
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._fail(f"Cannot create {out_dir}: {exc}")
            return
        stamp = time.strftime("%Y%m%d-%H%M%S")
        prompt = self.prompt.toPlainText().strip()
        ins = [str(p) for p in self.inputs()]
        common = dict(inputs=ins, prompt=prompt, steps=self.steps.value(), seed=self.seed.value(),
                      scale=self.scale.value(), input_size=self.input_size)
        base_out = out_dir / f"{stamp}-base.png"
        lora_out = out_dir / f"{stamp}-lora.png"
        self._queue = []
        if exporting:  # the checkpoint's LoRA as a file first
            assert self.out_dir is not None and self.export_step is not None
            self._queue.append(("export", export_command(self.out_dir, self.export_step, Path(lora)), Path(lora)))
        self._queue += [
            ("base", sample_command(self.model_path, None, out=str(base_out), **common), base_out),
            ("lora", sample_command(self.model_path, lora, out=str(lora_out), **common), lora_out),
        ]
        self._results.clear()
        self._show_inputs()
        self.generate_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.busy.show()
        self._next()

    def cancel(self) -> None:
        self._queue.clear()
        if self._proc is not None:
            self._proc.kill()
        self.status.setText("Cancelled.")

    def _next(self) -> None:
        if not self._queue:
            self._done(True)
            return
        which, argv, out = self._queue[0]
        self.status.setText(STEP_STATUS[which])
        proc = QProcess(self)
        proc.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
        proc.readyReadStandardOutput.connect(self._read)
        proc.finished.connect(self._proc_finished)
        proc.errorOccurred.connect(self._proc_error)
        self._proc = proc
        self._output = b""
        proc.start(argv[0], argv[1:])

    def _read(self) -> None:
        if self._proc is not None:
            self._output = (self._output + bytes(self._proc.readAllStandardOutput().data()))[-20000:]

    def _proc_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self._proc = None
            self._fail("Could not start the sampler.")
            self._done(False)

    def _proc_finished(self, code: int, status: QProcess.ExitStatus) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            self._read_from(proc)
            proc.deleteLater()
        if not self._queue:  # cancelled
            self._done(False)
            return
        which, _argv, out = self._queue.pop(0)
        if status != QProcess.ExitStatus.NormalExit or code != 0 or not out.is_file():
            tail = self._output.decode("utf-8", "replace").strip().splitlines()[-12:]
            self._queue.clear()
            what = STEP_FAILED[which]
            if tail and tail[-1].startswith("error: "):  # the command's own one-line explanation
                self._fail(f"{what} failed: {_html(tail[-1][len('error: '):])}")
            else:
                self._fail(f"{what} failed (exit code {code}).<br><pre>{_html(chr(10).join(tail))}</pre>")
            self._done(False)
            return
        self._results[which] = out
        self._show_inputs()
        self._next()

    def _read_from(self, proc: QProcess) -> None:
        self._output = (self._output + bytes(proc.readAllStandardOutput().data()))[-20000:]

    def _done(self, ok: bool) -> None:
        self.busy.hide()
        self.generate_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        if ok:
            self.status.setText("Done: base model (left) and your LoRA (right), same seed and prompt. "
                                "Double-click an image to open it.")
        self.finished.emit(ok)

    def _fail(self, text: str) -> None:
        self.error_bar.show_message(text)
        self.status.setText("")

    def shutdown(self) -> None:
        self.grid_panel.shutdown()
        self._queue.clear()
        if self._proc is not None:
            self._proc.kill()
            self._proc.waitForFinished(2000)


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


