#!/usr/bin/env bash
# Make sure a RabbitMQ broker answers at $MCP_AMQP_URL
# (default amqp://guest:guest@localhost:5672/).
#
# A broker "answers" when it replies to the AMQP 0-9-1 protocol header with a
# Connection.Start frame; for a local broker we also wait for
# `rabbitmqctl await_startup` when we are allowed to run rabbitmqctl.
#
# A local broker (localhost, 127.0.0.1, ::1) that does not answer is brought
# up: installed from apt when missing (root only), its app started when the
# node is up but the app was stopped, the node started with
# `rabbitmq-server -detached` when it is down (no systemd needed), or simply
# waited for when it is already booting. A remote broker is only checked.
#
# Exit 0 when the broker answers, 1 (with advice on stderr) when it does not.
# Environment: MCP_AMQP_URL, RABBITMQ_START_TIMEOUT (seconds, default 60).
set -euo pipefail

readonly URL="${MCP_AMQP_URL:-amqp://guest:guest@localhost:5672/}"
readonly TIMEOUT="${RABBITMQ_START_TIMEOUT:-60}"

say() { printf 'ensure-rabbitmq: %s\n' "$*" >&2; }

fail() {
    say "$*"
    cat >&2 <<EOF
ensure-rabbitmq: no RabbitMQ broker answers at ${HOST}:${PORT} (taken from MCP_AMQP_URL or its default).
  Do one of:
    - install and start RabbitMQ locally, e.g. on Debian/Ubuntu:
        sudo apt-get install -y rabbitmq-server && sudo rabbitmq-server -detached
    - run the broker (and Jaeger) with Docker:  make up
    - point MCP_AMQP_URL at a broker you can reach, e.g.
        export MCP_AMQP_URL=amqp://user:pass@broker.example:5672/
EOF
    exit 1
}

# --- parse amqp[s]://[user[:pass]@]host[:port][/vhost][?query] ---------------
rest="${URL#*://}"
case "$URL" in
    amqps://*) default_port=5671 ;;
    *) default_port=5672 ;;
esac
rest="${rest%%/*}"
rest="${rest%%\?*}"
hostport="${rest##*@}"
if [[ "$hostport" =~ ^\[([^]]+)\](:([0-9]+))?$ ]]; then   # [ipv6]:port
    HOST="${BASH_REMATCH[1]}"
    PORT="${BASH_REMATCH[3]:-$default_port}"
elif [[ "$hostport" =~ ^([^:]*)(:([0-9]+))?$ ]]; then
    HOST="${BASH_REMATCH[1]:-localhost}"
    PORT="${BASH_REMATCH[3]:-$default_port}"
else
    HOST="$hostport" PORT="$default_port"
    fail "cannot parse host and port from MCP_AMQP_URL"
fi

case "$HOST" in
    localhost | 127.0.0.1 | ::1) LOCAL=1 ;;
    *) LOCAL=0 ;;
esac

# --- probes -------------------------------------------------------------------

# The broker answers the AMQP protocol header with a method frame (type 1,
# Connection.Start); see the AMQP 0-9-1 spec, section 4.2.2. A TCP listener
# alone is not enough: the port can be held by something else.
amqp_answers() {
    # shellcheck disable=SC2016  # expanded by the inner bash, on purpose
    timeout 5 bash -c '
        exec 3<>"/dev/tcp/$1/$2" || exit 1
        printf "AMQP\x00\x00\x09\x01" >&3
        IFS= read -r -d "" -N 1 -t 4 frame_type <&3 || exit 1
        [[ "$frame_type" == $'"'"'\x01'"'"' ]]
    ' _ "$HOST" "$PORT" 2>/dev/null
}

# Debian's rabbitmqctl wrapper only works for root and the rabbitmq user; other
# installs (Homebrew, generic unix) run it as anyone. Use passwordless sudo when
# it helps, and never prompt.
SUDO=()
if [[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
fi
can_admin() { [[ $(id -u) -eq 0 || ${#SUDO[@]} -gt 0 ]]; }
ctl() { "${SUDO[@]}" rabbitmqctl "$@"; }
have_ctl() { command -v rabbitmqctl >/dev/null; }

node_up() { ctl -q ping >/dev/null 2>&1; }

# One of ready | booting | core_started | stopping | stopped (RabbitMQ >= 3.8).
boot_state() { ctl -q eval 'rabbit_boot_state:get().' 2>/dev/null || true; }

# A node launched by someone else (init script, a parallel run) that is not yet
# registered with epmd: starting a second one would fail on the node name.
node_process_running() {
    pgrep -f 'beam.*-s rabbit boot' >/dev/null 2>&1
}

start_node() {
    can_admin || [[ $(id -un) == rabbitmq ]] || [[ ! -d /usr/lib/rabbitmq/bin ]] \
        || fail "starting RabbitMQ needs root (or passwordless sudo) on this system"
    say "starting RabbitMQ with 'rabbitmq-server -detached'"
    "${SUDO[@]}" rabbitmq-server -detached >/dev/null 2>&1 \
        || fail "'rabbitmq-server -detached' failed (see /var/log/rabbitmq/)"
}

# Wait for the broker to answer. A node process we saw may also have been one
# shutting down; if it disappears without the node coming up, start one.
wait_until_ready() {
    local deadline=$((SECONDS + TIMEOUT)) left started=$1
    while ((SECONDS < deadline)); do
        left=$((deadline - SECONDS))
        if node_up; then
            ctl -q await_startup --timeout "$left" >/dev/null 2>&1 || true
        elif ((!started)) && ! node_process_running; then
            start_node
            started=1
        fi
        if amqp_answers; then
            return 0
        fi
        sleep 1
    done
    return 1
}

# --- already fine? ------------------------------------------------------------
if amqp_answers; then
    if ((LOCAL)) && have_ctl && node_up; then
        ctl -q await_startup --timeout "$TIMEOUT" >/dev/null 2>&1 \
            || fail "the port answers but 'rabbitmqctl await_startup' failed"
    fi
    exit 0
fi

if ((!LOCAL)); then
    fail "the remote broker does not answer (this script only starts a local one)"
fi

# --- local: install ---------------------------------------------------------
if ! command -v rabbitmq-server >/dev/null; then
    if can_admin && command -v apt-get >/dev/null; then
        say "rabbitmq-server is not installed; installing it with apt-get"
        "${SUDO[@]}" apt-get update -qq
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq rabbitmq-server >/dev/null
        hash -r
    else
        fail "rabbitmq-server is not installed (and cannot be installed here: needs root and apt-get)"
    fi
fi
have_ctl || fail "rabbitmq-server is installed but rabbitmqctl is not on PATH"

# --- local: start -----------------------------------------------------------
started=0
if node_up; then
    state="$(boot_state)"
    case "$state" in
        booting | core_started) say "the RabbitMQ node is booting; waiting" ;;
        ready) fail "the local RabbitMQ node is running but does not answer on port ${PORT} (check its listeners)" ;;
        stopping) say "the RabbitMQ node is stopping; will start it again" ;;
        *)
            say "the RabbitMQ node is up but its app is not running (${state:-unknown}); starting it"
            # May race with a start already under way; await_startup decides.
            ctl -q start_app >/dev/null 2>&1 || true
            ;;
    esac
    [[ $state == stopping ]] || started=1
elif node_process_running; then
    say "a RabbitMQ node process exists (starting, or stopping); waiting"
else
    start_node
    started=1
fi

if wait_until_ready "$started"; then
    say "RabbitMQ answers at ${HOST}:${PORT}"
    exit 0
fi
fail "RabbitMQ did not come up within ${TIMEOUT}s (see /var/log/rabbitmq/)"
