"""The edge daemon and its ``edge`` command: config (``config``), the daemon (``daemon``), health and metrics
(``health``), and one module per group of commands (``cli``, ``models_cli``, ``bench``, ``doctor``,
``simulate``). ``templates/`` holds the commented site config that ``edge init`` writes.

A regular package (not a namespace one) so that its package data is found with ``importlib.resources``.
"""
