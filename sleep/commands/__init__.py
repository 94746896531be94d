"""`nightcap` commands of the sleep side (sleep, daemon), each a module with `main(argv) -> int`."""
