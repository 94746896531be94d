"""The chat screen: the conversation, the sessions sidebar, the status bar and the input.

The shape is Textual's `mother.py`: the user's prompt and an empty reply are mounted at once, a
thread worker runs the turn and posts each streamed piece back as a message, and the reply widget
grows from those. Loading the model, unlocking the vault and counting memories happen in workers
too, so the input answers from the first frame.
"""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Input, Markdown, OptionList
from textual.widgets.markdown import MarkdownStream

from assistant.chat import Session
from assistant.episode import Episode
from assistant.errors import NightcapError, where
from tui import messages as m
from tui.host import nightcap_app
from tui.screens.passphrase import PassphraseScreen
from tui.screens.teaching import TeachingMixin
from tui.widgets.banner import Banner
from tui.widgets.conversation import Conversation
from tui.widgets.loading_line import LoadingLine
from tui.widgets.response import Response
from tui.widgets.session_list import SessionList
from tui.widgets.status_bar import StatusBar

PLACEHOLDER = "Message Nightcap (Enter sends, F1 help)"
BUSY_PLACEHOLDER = "Nightcap is answering (escape stops it)"


class ChatScreen(TeachingMixin, Screen[None]):
    """Talk to Nightcap and teach it."""

    AUTO_FOCUS = "#prompt"
    # Footer order is priority order: at 80 columns the last ones fall off (F1 lists them all).
    BINDINGS = [
        Binding("ctrl+e", "correct", "Correct", priority=True),  # over the input's "end of line"
        Binding("ctrl+g", "thumbs_up", "Good"),
        Binding("ctrl+b", "thumbs_down", "Bad"),
        Binding("ctrl+r", "remember", "Remember"),
        Binding("ctrl+o", "toggle_incognito", "Incognito"),
        Binding("f1", "app.help", "Help"),
        Binding("f5", "app.sleep_now", "Sleep"),
        Binding("f3", "app.show_report", "Report"),
        Binding("f4", "app.generations", "Models"),
        Binding("ctrl+n", "new_session", "New"),
        Binding("f2", "toggle_sidebar", "Sessions"),
        Binding("escape", "stop", show=False),
    ]

    def __init__(self, *, session_id: str | None = None, incognito: bool = False) -> None:
        super().__init__()
        self.session: Session  # made on mount, when the app's runtime is at hand
        self._resume_id = session_id
        self._start_incognito = incognito
        self.incognito = False
        self.busy = False
        self._stream: MarkdownStream | None = None
        self._response: Response | None = None
        self._prompt_widget: Markdown | None = None

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        yield Banner(id="banner")
        with Horizontal(id="body"):
            yield SessionList(id="sessions")
            with Vertical(id="main"):
                yield Conversation(id="conversation")
                yield LoadingLine(id="loading")
                yield Input(placeholder=PLACEHOLDER, id="prompt")
        yield Footer(compact=True, show_command_palette=False)

    @property
    def status_bar(self) -> StatusBar:
        return self.query_one(StatusBar)

    @property
    def banner(self) -> Banner:
        return self.query_one(Banner)

    def refresh_memory(self) -> None:
        """Re-read the pending conversations and counts (after a turn is kept, or a sleep)."""
        self.query_one(SessionList).reload()
        self.status_bar.refresh_counts()

    def on_mount(self) -> None:
        app = nightcap_app(self)
        self.session = self._new_session()
        status = self.status_bar
        status.generation = app.runtime.generation or app.nightcap.store.current_name() or "default model"
        self.banner.display = False
        if self._start_incognito:
            self.set_incognito(True)
        if app.runtime.ready:
            self._model_ready(app.runtime.generation)
        else:
            if not status.generation.startswith("gen-"):
                self.query_one(LoadingLine).say("Preparing the default model (first run); you can type already.")
            app.load_model()
        if app.vault is not None:
            self.post_message(m.VaultReady())
        else:
            app.open_vault()
        self.query_one(SessionList).current = self.session.id
        app.show_banner_if_due()

    # -- background work ---------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="sessions-open")
    def resume(self, session_id: str) -> None:
        vault = nightcap_app(self).vault
        if vault is None:
            return
        try:
            history = list(vault.session_history(session_id))
        except NightcapError as err:
            self.app.call_from_thread(self.notify, str(err), title="Resume", severity="error", markup=False)
            return
        try:
            episodes = [ep for ep in vault.pending() if ep.session == session_id]
        except NightcapError:
            episodes = []
        answers = sum(1 for msg in history if msg.get("role") == "assistant")
        self.post_message(m.SessionSwitched(session_id, history, episodes if len(episodes) == answers else []))

    @work(thread=True, exclusive=True, group="reply")
    def reply(self, text: str) -> None:
        """Run one turn; the reply streams back as ResponseChunk messages."""
        session, incognito, vault = self.session, self.incognito, nightcap_app(self).vault
        sealed: list[Episode] = []
        failures: list[str] = []

        def seal(episode: Episode) -> None:
            assert vault is not None  # installed below only when there is a vault
            # The reply is already on screen: a vault failure must not turn it into an error.
            try:
                vault.append(episode)
                sealed.append(episode)
            except NightcapError as err:
                failures.append(str(err))

        session.on_episode = seal if (vault is not None and not incognito) else None
        try:
            turn = session.turn(text, lambda piece: self.post_message(m.ResponseChunk(piece)), log=not incognito)
        except NightcapError as err:
            self.post_message(m.ResponseFailed(text, str(err)))
            return
        except Exception as err:  # a crash in llama.cpp must not take the conversation with it
            # Only the error's type and place: its message may quote the conversation.
            self.post_message(m.ResponseFailed(text, f"the model failed ({where(err)}); try again"))
            return
        if failures:
            self.app.call_from_thread(
                self.notify,
                f"This exchange was not kept: {failures[0]}",
                title="Vault",
                severity="warning",
                markup=False,
            )
        self.post_message(m.ResponseComplete(turn.reply, sealed[0] if sealed else None, incognito))

    # -- the conversation --------------------------------------------------------------------

    def _new_session(self, session_id: str | None = None, history: list[dict[str, str]] | None = None) -> Session:
        app = nightcap_app(self)
        return Session(
            app.runtime,
            system_prompt=app.nightcap.config.chat.system_prompt,
            session_id=session_id,
            history=history,
        )

    @on(Input.Submitted, "#prompt")
    async def send(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text:
            return
        if self.busy:
            self.notify("Nightcap is still answering; send this when the reply is done.", severity="warning")
            return
        event.input.clear()
        event.input.placeholder = BUSY_PLACEHOLDER
        self.busy = True
        conversation = self.query_one(Conversation)
        self._prompt_widget = await conversation.add_prompt(text)
        self._response = await conversation.add_response(waiting=True)
        self._stream = None
        self.post_message(m.ResponseStarted(text, self.session.id))
        self.reply(text)

    async def on_response_chunk(self, message: m.ResponseChunk) -> None:
        if self._response is None:
            return
        if self._stream is None:
            self._response.loading = False
            self._stream = Markdown.get_stream(self._response)
        await self._stream.write(message.text)

    async def _end_stream(self) -> None:
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None
        self.busy = False
        self.query_one("#prompt", Input).placeholder = PLACEHOLDER

    async def on_response_complete(self, message: m.ResponseComplete) -> None:
        await self._end_stream()
        if self._response is not None:
            self._response.finish(message.reply, message.episode, message.incognito)
        if message.episode is not None:
            self.refresh_memory()

    async def on_response_failed(self, message: m.ResponseFailed) -> None:
        await self._end_stream()
        for widget in (self._prompt_widget, self._response):
            if widget is not None:
                await widget.remove()
        self._prompt_widget = self._response = None
        prompt = self.query_one("#prompt", Input)
        prompt.value = message.prompt + (" " + prompt.value if prompt.value else "")
        prompt.cursor_position = len(message.prompt)
        self.notify(message.error, title="No reply", severity="error", markup=False)

    # -- model, vault, status ----------------------------------------------------------------

    def _model_ready(self, generation: str) -> None:
        status = self.status_bar
        status.model, status.generation = "ready", generation
        self.query_one(LoadingLine).display = False

    def on_model_ready(self, message: m.ModelReady) -> None:
        self._model_ready(message.generation)

    def on_model_failed(self, message: m.ModelFailed) -> None:
        self.status_bar.model = "failed"
        self.query_one(LoadingLine).display = False
        self.notify(message.error, title="Model", severity="error", timeout=15, markup=False)

    def on_generation_changed(self, message: m.GenerationChanged) -> None:
        status = self.status_bar
        status.model, status.generation = "loading", message.generation
        loading = self.query_one(LoadingLine)
        loading.say(f"Loading {message.generation}; you can type already.")
        loading.display = True

    def on_vault_ready(self, message: m.VaultReady) -> None:
        self.status_bar.memory = "on"
        self.refresh_memory()
        if self._resume_id:
            self.resume(self._resume_id)
            self._resume_id = None

    def on_vault_locked(self, message: m.VaultLocked) -> None:
        self.status_bar.memory = "off"
        self.status_bar.refresh_counts()
        if message.missing:
            self.notify(message.error, title="Memory off", severity="warning", markup=False)
            return

        def unlocked(passphrase: str | None) -> None:
            if passphrase:
                nightcap_app(self).open_vault(passphrase)
            else:
                self.notify(
                    "Memory is off for now: nothing you say will be kept.",
                    title="Memory off",
                    severity="warning",
                    markup=False,
                )

        reason = message.error if message.asked else ""
        self.app.push_screen(PassphraseScreen(reason, creating=message.creating), unlocked)

    # -- sessions ----------------------------------------------------------------------------

    @on(OptionList.OptionSelected, "#sessions")
    def pick_session(self, event: OptionList.OptionSelected) -> None:
        if self.busy:
            self.notify("Wait for the reply before switching conversations.", severity="warning", markup=False)
            return
        if event.option.id and event.option.id != self.session.id:
            self.resume(event.option.id)

    def action_new_session(self) -> None:
        if self.busy:
            self.notify("Wait for the reply before starting a new conversation.", severity="warning", markup=False)
            return
        self.post_message(m.SessionSwitched(self._new_session().id, []))

    async def on_session_switched(self, message: m.SessionSwitched) -> None:
        history = [dict(msg) for msg in message.history]
        answers = [msg for msg in history if msg.get("role") == "assistant"]
        for msg, episode in zip(answers, message.episodes):
            if episode.correction is not None:  # go on from what the user taught, not the old reply
                msg["content"] = episode.correction
        self.session = self._new_session(message.session_id, history)
        self._response = self._prompt_widget = None
        await self.query_one(Conversation).show_history(history, message.episodes)
        self.query_one(SessionList).mark_current(self.session.id)
        self.query_one("#prompt", Input).focus()

    def action_toggle_sidebar(self) -> None:
        sessions = self.query_one(SessionList)
        sessions.toggle()
        if sessions.display:
            sessions.focus()
        else:
            self.query_one("#prompt", Input).focus()

    def action_stop(self) -> None:
        """Escape: stop the reply being written (it stays as said so far), else hide the banner."""
        if self.busy:
            nightcap_app(self).runtime.interrupt()
        else:
            self.banner.display = False
