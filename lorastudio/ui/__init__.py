"""The desktop app (PySide6 only; never torch, never ``lorastudio.training``).

The Qt-free parts it builds on live beside it: ``lorastudio.project`` (a dataset +
settings saved as the config TOML the CLI reads), ``lorastudio.session`` (the open project,
its dataset and run, what may be done now), ``lorastudio.user_folders``.

- ``app``            entry point: ``run_gui(target)``, ``create_window()``; the qasync loop
- ``main_window``    menus, shortcuts, opening projects, async folder scans, the watcher
- ``welcome``        the start page and the built-in demo (``lorastudio demo`` as a child process)
- ``dataset_page``   grid of sets, problems panel, large preview, caption editor
- ``set_model``      ``SetListModel`` (one row per set) and ``SetFilterModel``
- ``set_delegate``   paints a set: inputs → target, name, problem badge
- ``thumbnails``     ``ThumbnailLoader``: off-thread decoding, memory + disk cache
- ``caption_editor`` debounced atomic autosave and external-change detection
- ``bulk_dialog``    trigger word / find-replace / fill-empty with a preview
- ``training_page``  settings form and run panel (progress, loss chart, samples, log)
- ``runner``         ``WorkerRunner``: a QThread owning the worker process, events → signals
- ``loss_chart``, ``sample_gallery``, ``image_strip``  the pieces the pages are made of
- ``compare_page``   the Test tab (``ComparePage``): ``lorastudio sample`` base vs LoRA
- ``model_folder``   which family a model folder holds (``model_index.json``), torch-free
- ``theme``, ``settings``  light/dark look and icons; what is remembered between runs
"""
