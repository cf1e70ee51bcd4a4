"""At 200 % (a 4K monitor) icons and thumbnails are drawn from device pixels, not blown up,
and the pages still fit a 1280×720 logical screen. Qt fixes the pixel ratio when it starts,
so this runs the app in a fresh interpreter on an offscreen 2560×1440 screen scaled by 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from .conftest import SCREEN, make_dataset, offscreen_platform

PROBE = textwrap.dedent(
    """
    import asyncio, json, sys
    from pathlib import Path
    from PySide6.QtCore import QSize, QTimer
    from PySide6.QtWidgets import QApplication
    import qasync
    from lorastudio.ui import theme
    from lorastudio.ui.app import create_window, make_app
    from lorastudio.ui.sample_gallery import ICON, Sample
    from lorastudio.ui.set_delegate import THUMB
    from lorastudio.ui.thumbnails import ImageRef
    sys.path.insert(0, sys.argv[2])
    from layout_checks import fully_visible, widgets_cut_off

    app = make_app([])
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    w = create_window(sys.argv[1])
    w.show()
    out = {}

    async def main():
        while w.dataset is None:
            await asyncio.sleep(0.05)
        out["dpr"] = w.devicePixelRatioF()
        out["window"] = [w.width(), w.height()]
        out["grid_box"] = w.dataset_page.delegate.box()
        icon = theme.icon("train").pixmap(QSize(20, 20), w.devicePixelRatioF())
        out["icon"] = [icon.width(), icon.devicePixelRatio()]
        s = w.dataset.sets[0]
        w.run_panel.gallery.add_sample(Sample(step=1, path=s.target, set_name=s.name, target=s.target))
        strip = w.dataset_page.detail.preview
        w.dataset_page.select_set(s.name)
        while not w.loader.is_idle():
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        pm = w.loader.cached(ImageRef.of(s.target), strip._keys_box)
        out["preview_pixels"] = pm.width() if pm is not None else 0
        out["preview_slot"] = strip.image_rects()[0].width()
        item = w.run_panel.gallery.item(0)
        gpm = item.icon().pixmap(QSize(ICON, ICON), w.devicePixelRatioF())
        out["gallery"] = [gpm.width(), gpm.devicePixelRatio()]
        cut, visible = [], []
        key_controls = [(w.dataset_page.detail.next_button, w.dataset_page.detail.prev_button,
                         w.dataset_page.problems_panel.tree), (w.run_panel.train_button, w.run_panel.stop_button), ()]
        for i in range(w.tabs.count()):
            w.tabs.setCurrentIndex(i)
            await asyncio.sleep(0.1)
            cut += widgets_cut_off(w)
            visible += [fully_visible(x) for x in key_controls[i]]
        out["cut_off"] = cut
        out["key_controls"] = visible
        w.close()

    with loop:
        loop.run_until_complete(main())
    print("RESULT " + json.dumps(out))
    """
)


def test_at_200_percent_icons_and_thumbnails_use_device_pixels(tmp_path):
    root = make_dataset(tmp_path / "ds", sets=3, size=(1600, 1200), captions=2)
    env = {**os.environ, "LORASTUDIO_DATA_DIR": str(tmp_path / "data"),
           "LORASTUDIO_CACHE_DIR": str(tmp_path / "cache"), "XDG_CONFIG_HOME": str(tmp_path / "config"),
           # A 2560×1440 panel at 200 %: the plugin's own "dpr" does not reach shown windows
           # (Qt 6.11 offscreen windows report 1), Qt's scale factor does.
           "QT_QPA_PLATFORM": offscreen_platform(tmp_path, **{**SCREEN, "width": 2 * SCREEN["width"],
                                                              "height": 2 * SCREEN["height"]}),
           "QT_SCALE_FACTOR": "2"}
    here = os.path.dirname(__file__)
    out = subprocess.run([sys.executable, "-c", PROBE, str(root), here], capture_output=True, text=True,
                         timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(next(line for line in out.stdout.splitlines() if line.startswith("RESULT "))[len("RESULT "):])
    from lorastudio.ui.sample_gallery import ICON
    from lorastudio.ui.set_delegate import THUMB

    assert r["dpr"] == 2
    assert r["icon"] == [40, 2], "a 20-px icon is rendered from the SVG at 40 device pixels"
    assert r["grid_box"] == 2 * THUMB, "grid thumbnails decode at twice their logical size"
    assert r["gallery"] == [2 * ICON, 2], "sample icons too"
    assert r["preview_pixels"] >= 2 * r["preview_slot"] - 1, "the large preview has a device pixel per pixel"
    assert r["cut_off"] == []
    assert all(r["key_controls"])
