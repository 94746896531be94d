#!/usr/bin/env bash
# End-to-end check of the real chat TUI: start `nightcap chat` with the embedded default model in
# tmux at 80x24, type a message, and check that a reply appears in the pane.
#
#   tests/tui_tmux.sh [CAPTURE_FILE]
#
# Uses $NIGHTCAP_HOME if set, else a fresh temporary home (the first start assembles the default
# model there). Prints how long the prompt, the model and the reply took, then the final pane.
# Exit codes: 0 reply seen, 1 failure, 77 tmux is not installed.
set -euo pipefail

command -v tmux >/dev/null || { echo "tui_tmux: tmux is not installed" >&2; exit 77; }
cd "$(dirname "$0")/.."

capture_file=${1:-${TMPDIR:-/tmp}/nightcap-tui-tmux.txt}
home=${NIGHTCAP_HOME:-$(mktemp -d "${TMPDIR:-/tmp}/nightcap-tui-XXXXXX")}
socket="nightcap-tui-$$"            # a private tmux server: nothing else is touched
session="nightcap"
message="Hello! What is the capital of France?"
python=${PYTHON:-python}

tmx() { tmux -L "$socket" "$@"; }
pane() { tmx capture-pane -p -t "$session" 2>/dev/null || true; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
cleanup() { tmx kill-server >/dev/null 2>&1 || true; }
trap cleanup EXIT

# wait_for SECONDS COMMAND...: poll every 0.1 s until COMMAND succeeds.
wait_for() {
    local limit=$1; shift
    local start; start=$(now)
    until "$@"; do
        if awk -v a="$start" -v b="$(now)" -v l="$limit" 'BEGIN { exit !(b - a > l) }'; then
            return 1
        fi
        sleep 0.1
    done
}
fail() { echo "tui_tmux: $1" >&2; pane | tee "$capture_file" >&2; exit 1; }

# The input's placeholder: "Message Nightcap ..." when idle, "Nightcap is answering ..." meanwhile.
has_prompt() { pane | grep -q "Message Nightcap"; }
model_loaded() { pane | head -1 | grep -q "gen-" && ! pane | head -1 | grep -q "loading"; }
# A reply: the line under the reply's top border holds words (not the loading dots).
has_reply() { pane | awk '/╭─+ Nightcap/ { getline; if ($0 ~ /[[:alnum:]]/) found = 1 } END { exit !found }'; }
kept() { pane | head -1 | grep -q ' [1-9][0-9]* pending'; }
exited() { pane | grep -q "nightcap exited with 0"; }

start=$(now)
tmx -f /dev/null new-session -d -s "$session" -x 80 -y 24 \
    -e "NIGHTCAP_HOME=$home" \
    -e "NIGHTCAP_PASSPHRASE=${NIGHTCAP_PASSPHRASE:-tui tmux passphrase}" \
    -e "NIGHTCAP_KEYRING=off" \
    "$python -m assistant.cli chat; echo 'nightcap exited with' \$?; sleep 600"
wait_for 20 has_prompt || fail "no prompt within 20 s"
echo "prompt after $(elapsed "$start") s"
wait_for 600 model_loaded || fail "the model did not load within 600 s"
echo "model ready after $(elapsed "$start") s"

tmx send-keys -t "$session" -l "$message"
tmx send-keys -t "$session" Enter
sent=$(now)
wait_for 120 has_reply || fail "no reply within 120 s"
echo "first words of the reply after $(elapsed "$sent") s"
wait_for 300 has_prompt || fail "the reply did not finish within 300 s"
echo "reply complete after $(elapsed "$sent") s"
if wait_for 10 kept; then echo "kept in the vault: yes"; else echo "kept in the vault: no"; fi
pane | tee "$capture_file"

tmx send-keys -t "$session" C-q
wait_for 10 exited || fail "ctrl+q did not quit cleanly"
echo "reply seen; capture in $capture_file"
