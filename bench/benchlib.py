"""What the benchmarks' Python parts share (bench/fleet.sh, bench/telemetry.sh): a free loopback port, waiting for a
server to listen, running a command for its output, and stopping a server.
It is one module so that the scripts do not each keep a copy."""

import signal
import socket
import subprocess
import sys
import time


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what):
    """Waits (a minute at most) until something listens on 127.0.0.1:`port`; exits if `proc` ends first."""
    for _ in range(600):
        if proc.poll() is not None:
            sys.exit(f"{what} exited: {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"{what} did not listen on {port}")


def run(cmd, **kw):
    """Runs `cmd`, which must succeed; its stdout."""
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


def stop(proc):
    """SIGTERM, then SIGKILL after 30 s."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
