"""Nightcap's awake side: home and config, the encrypted vault, chat sessions, the CLI, the audit."""

__version__ = "0.1.0"
