"""The composition root: server, CLI, demo and scenarios wire the kernel and the components.

Nothing imports this package; `python -m einmal_app` is the CLI.
"""
