"""The desktop app (PySide6 only; never torch, never ``lorastudio.training``).

The Qt-free parts it builds on live beside it: ``lorastudio.project`` (a dataset +
settings saved as the config TOML the CLI reads), ``lorastudio.session`` (the open project,
its dataset and run, what may be done now), ``lorastudio.user_folders``.

The window and what it is made of:

- ``app``              entry point: ``run_gui(target)``, ``create_window()``; the qasync loop
- ``main_window``      puts the pieces together: opening, closing and saving projects, quitting
- ``session_signals``  the session's changes as Qt signals
- ``window_actions``   actions, menus and toolbar as tables, enabled from ``session.Actions``
- ``workspace``        a project's pages: error banner over the Dataset · Train · Test tabs
- ``dataset_control``  scans shown in the grid and status line; bulk caption edits
- ``folder_watch``     async folder scans (qasync) and the file watcher
- ``run_control``      one training run: starting, stopping, routing the worker's events
- ``compare_wiring``   keeps the Test tab on the settings' model, the dataset and the last LoRA
- ``holdout``          held-out validation sets: the grid's marks and menu, the Train page's offer
- ``caption_guard``    never lose a caption when closing; ``dialogs`` file pickers, questions

The pages and their pieces:

- ``welcome``          the start page and the built-in demo (``lorastudio demo`` as a child process)
- ``dataset_page``     grid of sets, ``problems_panel``, large preview, caption editor
- ``set_model``        ``SetListModel`` (one row per set) and ``SetFilterModel``
- ``set_delegate``     paints a set: inputs → target, name, problem badge, the held-out mark
- ``thumbnails``       ``ThumbnailLoader``: off-thread decoding, memory + disk cache
- ``caption_editor``   debounced atomic autosave and external-change detection
- ``bulk_dialog``      trigger word / find-replace / fill-empty with a preview
- ``training_page``    the Train tab: ``settings_form`` beside ``run_panel``
- ``settings_form``    the settings' fields; ``form_mapping`` (fields ↔ Config, Qt-free),
  ``learning_rate`` (advice), ``memory_presets`` ("Fit to my GPU"), ``estimate_cache``,
  ``advanced_section`` (the collapsed training-recipe options)
- ``run_panel``        Train/Stop/Resume, progress, loss chart, samples, log
- ``help_texts``       tooltips, tips and the advice after a failed run
- ``runner``           ``WorkerRunner``: a QThread owning the worker process, events → signals
- ``loss_chart``, ``sample_gallery``, ``image_strip``  the pieces the pages are made of
- ``compare_page``     the Test tab (``ComparePage``): ``lorastudio sample`` base vs LoRA, with the
  final, best or any kept checkpoint (``checkpoint_choice``); ``grid_panel`` the checkpoint grid
- ``theme``, ``settings``  light/dark look and icons; what is remembered between runs

Which family a model folder holds is ``lorastudio.model_folder`` (torch-free, shared with training).
"""
