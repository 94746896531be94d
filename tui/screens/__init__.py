"""The TUI's screens: chat (the default), help, sleep report, generations, sleep progress, modals."""
