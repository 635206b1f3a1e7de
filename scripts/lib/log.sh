# Sourced by the set-up scripts (setup.sh, pyenv.sh, peers.sh) so that they
# print a few lines of their own while the long output of apt, pip, cmake and
# ninja goes to a log file. On failure the log's end is shown (and the first
# error line when it lies further up, as a compiler error does under a
# parallel build) and the script exits non-zero.
#
#   . scripts/lib/log.sh
#   log_open NAME        log file ${MEND_LOGS:-$MEND_HOME/logs}/NAME.log, emptied;
#                        the prefix of say() is "NAME: "
#   say TEXT...          one line on stderr
#   quietly WHAT CMD...  run CMD with stdout and stderr appended to the log;
#                        on failure: "NAME: WHAT failed", the excerpt, exit 1
#   log_excerpt          print that excerpt (for a failure found another way)
#
# MEND_HOME defaults to ~/.cache/mend.

log_open() {
    LOG_NAME=$1
    local dir=${MEND_LOGS:-${MEND_HOME:-$HOME/.cache/mend}/logs}
    mkdir -p "$dir"
    LOG_FILE=$dir/$LOG_NAME.log
    : > "$LOG_FILE"
}

say() { printf '%s: %s\n' "$LOG_NAME" "$*" >&2; }

log_excerpt() {
    local total first last
    total=$(wc -l < "$LOG_FILE")
    # the first error line, not counting the logged command lines ("$ ...")
    first=$(grep -n -E '^FAILED: |CMake Error|^E: |^ERROR: |error:' "$LOG_FILE" |
            grep -v -E '^[0-9]+:\$ ' | head -n 1 | cut -d: -f1 || true)
    {
        if [ -n "$first" ] && [ "$first" -le $((total - 40)) ]; then
            last=$((first + 29))
            [ "$last" -le $((total - 40)) ] || last=$((total - 40))
            printf -- '---- %s, from its first error (line %s):\n' "$LOG_FILE" "$first"
            sed -n "${first},${last}p" "$LOG_FILE"
        fi
        printf -- '---- %s, last 40 lines:\n' "$LOG_FILE"
        tail -n 40 "$LOG_FILE"
        printf -- '----\n'
    } >&2
}

quietly() {
    local what=$1 rc=0
    shift
    printf '\n$ %s\n' "$*" >> "$LOG_FILE"
    "$@" >> "$LOG_FILE" 2>&1 < /dev/null || rc=$?
    if [ "$rc" != 0 ]; then
        say "$what failed (exit $rc)"
        log_excerpt
        exit 1
    fi
}
