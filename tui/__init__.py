"""Nightcap's terminal UI (Textual): chat, teaching signals, sessions, and what sleep did.

Start it with `nightcap` (or `nightcap chat`); `tui.app.make_app` builds the same app for tests.
Nothing here imports torch, transformers or peft: the chat must start fast.
"""
