# Shared by script/run and script/test: Debian packages and the build.
# Sourced, not run.

# What building the broker needs.
BUILD_PKGS="build-essential autoconf automake pkg-config libev-dev libssl-dev libinih-dev libisal-dev uthash-dev python3 amqp-specs"
# What the tests add: librabbitmq-c and Python clients, clang for the fuzzer,
# and RabbitMQ itself for the side-by-side comparison tests.
TEST_PKGS="librabbitmq-dev python3-pika python3-kombu python3-amqp clang libclang-rt-14-dev rabbitmq-server"

# Install the Debian packages that are missing (apt-get update only when needed).
need_packages() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    echo "installing Debian packages: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    # rabbitmq-server's package tries to start a system service; the tests start their own.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
        $sudo chmod +x /usr/sbin/policy-rc.d
        trap '$sudo rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    $sudo apt-get update -q >/dev/null
    $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}

# The interop suites' Node.js and npm (amqplib itself comes from the npm
# registry through `npm ci` in interop/node). NodeSource's nodejs bundles npm
# and conflicts with Debian's npm, so only what is missing is installed.
need_node() {
    command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 && return 0
    need_packages nodejs npm
}

# Configure (once) and build in DIR with the given configure flags.
build_tree() {
    local dir=$1
    shift
    if [ ! -x configure ] || [ configure.ac -nt configure ] || [ Makefile.am -nt configure ]; then
        autoreconf -fi >/dev/null
    fi
    mkdir -p "$dir"
    if [ ! -f "$dir/Makefile" ] || [ configure -nt "$dir/config.status" ]; then
        (cd "$dir" && ../configure -q "$@") || return 1
    fi
    make -s -C "$dir" -j"$(nproc)" >/dev/null
}
