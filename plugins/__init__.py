"""Built-in plugins, installed as ``scheduler_core.plugins``.

Each is an ordinary pluggy plugin with ``trylast`` implementations, registered the same
way as a third-party plugin, so an installed plugin answering first takes over.
"""
