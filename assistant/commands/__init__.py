"""One module per `nightcap` command, each exposing `main(argv) -> int`."""
