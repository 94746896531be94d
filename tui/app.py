"""The Nightcap Textual app and `make_app`, the one factory the CLI and the tests share.

    app = make_app(Nightcap.load())                         # what `nightcap` runs
    app = make_app(nc, runtime=ScriptedRuntime(), vault=fake, conditions=lambda: "on power")  # tests

The app owns what outlives a screen: the `Nightcap` object, the model runtime (a
`PendingRuntime` until the model has loaded), the unlocked vault, and a running sleep cycle
(`tui.sleeping`). Both the model and the vault open in thread workers, so the first frame takes
input. The chat itself lives in `screens/chat.py`.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.message import Message

from assistant.app import Nightcap
from assistant.commands.status import last_report
from assistant.errors import NightcapError
from models.runtime import Runtime
from sleep.report import SleepReport
from tui import messages as m
from tui.memory import SerialVault
from tui.reports import banner_due, banner_text, mark_banner_shown
from tui.runtime import PendingRuntime
from tui.screens.chat import ChatScreen
from tui.screens.generations import GenerationsScreen
from tui.screens.help import HelpScreen
from tui.screens.report import SleepReportScreen
from tui.sleeping import Forgetter, Sleeper, Sleeping, SleepRun, run_forget, run_sleep_cycle

DEFAULT_THEME = "ansi-dark"


def sleep_conditions(nightcap: Nightcap) -> str | None:
    """One line on whether the machine could sleep now (plugged in, idle), if the daemon is installed."""
    try:
        from sleep.conditions import check_conditions  # optional until the sleep side is installed
    except ImportError:
        return None
    try:
        return str(check_conditions(nightcap.config, activity=nightcap.home.api_activity).summary)
    except Exception:  # a sensor that fails must not take the chat down
        return None


class NightcapApp(App[None]):
    """Chat with Nightcap, teach it, and see what it remembers and what sleep did."""

    CSS_PATH = "app.tcss"
    TITLE = "Nightcap"
    BINDINGS = [
        Binding("f1", "help", "Help", show=False),
        Binding("f3", "show_report", "Report", show=False),
        Binding("f4", "generations", "Models", show=False),
        Binding("f5", "sleep_now", "Sleep", show=False),
        Binding("f6", "forget_learned", "Forget", show=False),
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True),
    ]

    def __init__(
        self,
        nightcap: Nightcap,
        *,
        runtime: Runtime | None = None,
        vault: Any | None = None,
        conditions: Callable[[], str | None] | None = None,
        sleeper: Sleeper | None = None,
        session_id: str | None = None,
        incognito: bool = False,
        theme: str = DEFAULT_THEME,
        forgetter: Forgetter | None = None,
    ) -> None:
        super().__init__()
        self.nightcap = nightcap
        self.runtime = PendingRuntime()
        if runtime is not None:
            self.runtime.set(runtime)
        self.vault: SerialVault | None = SerialVault(vault) if vault is not None else None
        self.conditions: Callable[[], str | None] = conditions or (lambda: sleep_conditions(nightcap))
        self.sleeping = Sleeping(self, sleeper or run_sleep_cycle, forgetter or run_forget)
        self._session_id = session_id
        self._incognito = incognito
        self._theme_name = theme
        self.chat: ChatScreen | None = None

    def get_default_screen(self) -> ChatScreen:
        self.chat = ChatScreen(session_id=self._session_id, incognito=self._incognito)
        return self.chat

    def on_mount(self) -> None:
        if self._theme_name in self.available_themes:
            self.theme = self._theme_name

    def _fatal_error(self) -> None:
        """An unexpected crash, told in one line. Textual's own handler prints the traceback with
        every local variable, which can hold a typed passphrase or the text of a conversation."""
        from rich.text import Text

        from assistant.errors import where

        self.bell()
        err = self._exception
        what = where(err) if err is not None else "an unexpected error"
        self._exit_renderables.append(
            Text(f"nightcap chat: crashed ({what}); what the vault had saved is intact. Please report this line.")
        )
        self._close_messages_no_wait()

    def _tell_chat(self, message: Message) -> None:
        """Post to the chat screen (thread-safe), which shows model and vault state."""
        if self.chat is not None:
            self.chat.post_message(message)

    # -- the model and the vault, opened in the background ---------------------------------

    @work(thread=True, exclusive=True, group="model")
    def load_model(self, generation: str | None = None) -> None:
        """Load the current generation (after a switch, `generation`) and hand it to the chat."""
        started = time.monotonic()
        if generation is not None:
            self.runtime.reset(generation)
        try:
            runtime = self.nightcap.runtime()  # on first run this assembles the default model
            load = getattr(runtime, "load", None)
            if load is not None:
                load()
        except NightcapError as err:
            self.runtime.fail(str(err))
            self._tell_chat(m.ModelFailed(str(err)))
            return
        except Exception as err:  # llama.cpp raises plain exceptions; keep the UI alive
            message = f"the model could not be loaded ({err}); try `nightcap models rollback`"
            self.runtime.fail(message)
            self._tell_chat(m.ModelFailed(message))
            return
        self.runtime.set(runtime)
        self._tell_chat(m.ModelReady(runtime.generation, time.monotonic() - started))

    @work(thread=True, exclusive=True, group="vault-open")
    def open_vault(self, passphrase: str | None = None) -> None:
        """Unlock the vault (key derivation takes a moment); VaultLocked asks for the passphrase."""
        try:
            vault = self.nightcap.vault(passphrase=passphrase)
        except ImportError:
            self._tell_chat(m.VaultLocked("the vault is not installed, so nothing will be remembered", missing=True))
        except NightcapError as err:
            from assistant.vault import Vault  # imported fine just above, or we would not be here

            creating = not Vault.exists(self.nightcap.home)
            self._tell_chat(m.VaultLocked(str(err), creating=creating, asked=passphrase is not None))
        else:
            self.vault = SerialVault(vault)
            self._tell_chat(m.VaultReady())

    def switch_generation(self, name: str) -> None:
        """The store now points at `name`: load it for the chat in the background."""
        self._tell_chat(m.GenerationChanged(name))
        self.load_model(name)

    # -- sleeping and forgetting, run by `self.sleeping` --------------------------------------

    @property
    def sleep_run(self) -> SleepRun | None:
        """The cycle started here last (running or done), as the sleep screen shows it."""
        return self.sleeping.run

    def action_sleep_now(self) -> None:
        self.sleeping.sleep_now()

    def action_forget_learned(self) -> None:
        self.sleeping.forget()

    def action_stop_sleep(self) -> None:
        self.sleeping.stop()

    def on_sleep_stage(self, message: m.SleepStage) -> None:
        self.sleeping.stage(message)

    def on_sleep_step(self, message: m.SleepStep) -> None:
        self.sleeping.step(message)

    def on_sleep_finished(self, message: m.SleepFinished) -> None:
        self.sleeping.finished(message)

    # -- screens -----------------------------------------------------------------------------

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_show_report(self) -> None:
        if not isinstance(self.screen, SleepReportScreen):
            self.push_screen(SleepReportScreen(last_report(self.nightcap)))

    def action_generations(self) -> None:
        if not isinstance(self.screen, GenerationsScreen):
            self.push_screen(GenerationsScreen(self.nightcap.store))

    def show_banner_if_due(self, report: SleepReport | None = None, *, just_now: bool = False) -> None:
        """The morning banner, once per sleep report (`just_now`: after a sleep started here)."""
        report = report if report is not None else last_report(self.nightcap)
        if self.chat is None or report is None or not (just_now or banner_due(self.nightcap.home, report)):
            return
        text = banner_text(report, just_now=just_now)
        if text is not None:
            self.chat.banner.say(text)
        mark_banner_shown(self.nightcap.home)


def make_app(
    nightcap: Nightcap | None = None,
    *,
    runtime: Runtime | None = None,
    vault: Any | None = None,
    conditions: Callable[[], str | None] | None = None,
    sleeper: Sleeper | None = None,
    session_id: str | None = None,
    incognito: bool = False,
    theme: str = DEFAULT_THEME,
    forgetter: Forgetter | None = None,
) -> NightcapApp:
    """The app over `nightcap` (default: `Nightcap.load()`).

    Args:
        runtime: a ready model runtime (tests: `ScriptedRuntime`); by default the current
            generation is loaded in the background.
        vault: an unlocked vault (tests: a fake); by default `nightcap.vault()` is opened in the
            background, asking for the passphrase when it must.
        conditions: returns the status bar's power/idle line; by default `sleep.conditions`.
        sleeper: runs one sleep cycle (see `tui.sleeping.Sleeper`); by default `sleep.cycle`.
        forgetter: unlearns a consolidated statement (`tui.sleeping.Forgetter`); by default `sleep.forget`.
        session_id: resume this pending conversation once the vault is open.
        incognito: start with incognito on (nothing kept).
        theme: a Textual theme name; the default follows the terminal's own colours.
    """
    return NightcapApp(
        nightcap or Nightcap.load(),
        runtime=runtime,
        vault=vault,
        conditions=conditions,
        sleeper=sleeper,
        session_id=session_id,
        incognito=incognito,
        theme=theme,
        forgetter=forgetter,
    )
