"""`nightcap`: the command-line entry point.

Each command is a module with `main(argv) -> int`, imported only when chosen, so `nightcap ask`
never pays for the sleep side's imports (torch, transformers, peft). Errors derived from
`NightcapError` print as one line on stderr (exit 1, or 2 for usage); nothing prints a traceback
unless `NIGHTCAP_DEBUG=1`.
"""

from __future__ import annotations

import importlib
import os
import sys

from assistant.errors import NightcapError

# name -> (module, one-line description). Order is the order of `nightcap --help`.
COMMANDS: dict[str, tuple[str, str]] = {
    "chat": ("tui.main", "the chat TUI (the default command)"),
    "ask": ("assistant.commands.ask", "one turn: send MESSAGE, print the reply"),
    "import": ("assistant.commands.import_", "import conversations (JSONL or a ChatGPT export) as episodes"),
    "memories": ("assistant.commands.memories", "list or forget pending (not yet consolidated) episodes"),
    "forget": ("sleep.commands.forget", "unlearn a statement a night already consolidated"),
    "sleep": ("sleep.commands.sleep", "run one sleep cycle in the foreground"),
    "serve": ("assistant.commands.serve", "the OpenAI-compatible API on localhost; conversations become episodes"),
    "daemon": ("sleep.commands.daemon", "the overnight watcher and its user service"),
    "audit": ("assistant.commands.audit", "privacy audit: prove consolidated logs are gone"),
    "status": ("assistant.commands.status", "model generation, pending episodes, last sleep, conditions"),
    "models": ("assistant.commands.models", "list, add, use or roll back model generations"),
    "bench": ("assistant.commands.bench", "Nightcap's own benchmarks"),
}


def usage() -> str:
    width = max(len(n) for n in COMMANDS)
    lines = [
        "usage: nightcap [COMMAND] [ARGS...]",
        "",
        "Private assistant that learns while it sleeps.",
        "",
        "commands:",
    ]
    lines += [f"  {name:<{width}}  {desc}" for name, (_, desc) in COMMANDS.items()]
    lines += ["", "Run `nightcap COMMAND --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if args and args[0] == "--version":
        from assistant import __version__

        print(f"nightcap {__version__}")
        return 0
    name = args.pop(0) if args and not args[0].startswith("-") else "chat"
    if name not in COMMANDS:
        print(f"nightcap: unknown command '{name}'; run `nightcap --help` for the list", file=sys.stderr)
        return 2
    from sleep.memory import limit_kernel_cache

    limit_kernel_cache()  # before any command imports torch
    try:
        module = importlib.import_module(COMMANDS[name][0])
        return int(module.main(args) or 0)
    except NightcapError as err:
        if os.environ.get("NIGHTCAP_DEBUG"):
            raise
        print(f"nightcap {name}: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"nightcap {name}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away: stop quietly, and keep Python's exit-time
        # flush of stdout from raising again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
