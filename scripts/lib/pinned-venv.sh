# Sourced by the install scripts: pinned Python packages in a venv under target/,
# installed once and checked.
#
#   pinned_venv <venv dir> <package==version>...
#
# Does nothing when every package is at its version already; otherwise makes the venv if
# needed, installs the packages and checks each version, failing with the one that is
# wrong. Package metadata, not a module's __version__: inside a git checkout Synapse
# appends the checkout's branch and commit to its __version__.
pinned_venv() {
    local venv="$1"
    shift
    local py="$venv/bin/python" spec name want got start
    installed_version() {
        "$py" -c "import importlib.metadata as m, sys; sys.stdout.write(m.version('$1'))" 2>/dev/null || true
    }
    all_there() {
        [ -x "$py" ] || return 1
        for spec in "$@"; do
            [ "$(installed_version "${spec%%==*}")" = "${spec#*==}" ] || return 1
        done
    }
    if all_there "$@"; then
        echo "$* already installed in $venv"
        return 0
    fi
    start=$(date +%s)
    [ -x "$py" ] || python3 -m venv "$venv"
    "$py" -m pip install --disable-pip-version-check -q "$@"
    for spec in "$@"; do
        name="${spec%%==*}" want="${spec#*==}"
        got="$(installed_version "$name")"
        if [ "$got" != "$want" ]; then
            echo "error: expected $name $want in $venv, found '${got:-none}'" >&2
            return 1
        fi
    done
    echo "installed $* into $venv in $(( $(date +%s) - start ))s"
}
