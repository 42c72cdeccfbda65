"""The edge daemon and its ``edge`` command: config (``config``), the daemon (``daemon``), health and metrics
(``health``), service-manager notifications (``systemd``), and one module per group of commands (``cli``,
``models_cli``, ``bench``, ``doctor``, ``simulate``). ``templates/`` holds the site config ``edge init`` writes.

A regular package (not a namespace one) so that its package data is found with ``importlib.resources``.
"""
