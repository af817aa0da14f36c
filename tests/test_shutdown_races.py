"""Two closers of one transport: the main thread's teardown and the stop's watchdog.

A kernel's teardown that takes longer than the stop's deadline (a loaded machine) made the
watchdog close the transport a second time while the main thread was still closing it: two
threads in ``zmq_ctx_term`` on the heartbeat's context, and libzmq aborted the process
("Assertion failed: pfd.revents & POLLIN") once the first had freed the context.  Here the
main thread's term is held (a socket left open on that context, closed only once the
watchdog has had its chance), so the overlap happens every time, not one shutdown in 25.
Each runs in a process of its own: the failure is an abort or a thread hung in libzmq.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import kernel_argv, start_kernel

# The heartbeat stopped by two threads at once (alone, or by the transport's close), the
# second while the first's term waits.
_TWO_STOPPERS = textwrap.dedent(
    """
    import sys, threading, time
    import zmq
    from async_kernel.transport.connection import ConnectionInfo
    from async_kernel.transport.wire import Codec
    from async_kernel.transport.zmq_transport import ZmqTransport

    def inside(thread, name):
        frame = sys._current_frames().get(thread.ident)
        while frame is not None and frame.f_code.co_name != name:
            frame = frame.f_back
        return frame is not None

    info = ConnectionInfo()
    transport = ZmqTransport(info, Codec(info.key.encode()))
    transport.start(lambda *message: None)
    heartbeat = transport._heartbeat
    stop = heartbeat.stop if sys.argv[1] == "heartbeat" else transport.close
    held = heartbeat._context.socket(zmq.PAIR)  # the context's term waits for it
    first = threading.Thread(target=stop, daemon=True)
    first.start()
    heartbeat._thread.join(10)  # the echo ends once the first's term has begun
    second = threading.Thread(target=stop, daemon=True)
    second.start()
    deadline = time.monotonic() + 10
    while not inside(second, stop.__name__) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # on to where it waits: the context's term (before), the lock (now)
    held.close()
    first.join(10)
    second.join(10)
    print("alive:", first.is_alive(), second.is_alive())
    """
)

# Run a kernel whose main thread's heartbeat stop is held until the stop's watchdog has
# either entered it too or ended (its decision made); then as `python -m async_kernel`.
_SLOW_TEARDOWN = textwrap.dedent(
    """
    import sys, threading, time
    import zmq
    from async_kernel.transport.heartbeat import Heartbeat

    real_stop = Heartbeat.stop
    watchdog_entered = threading.Event()

    def watchdog_alive():
        return any(t.name == "async-kernel-stop" for t in threading.enumerate())

    def stop(self):
        if threading.current_thread() is not threading.main_thread():
            print("a second stop, on", threading.current_thread().name, file=sys.stderr)
            watchdog_entered.set()
            return real_stop(self)
        held = self._context.socket(zmq.PAIR)  # the context's term waits for it

        def release():
            seen = False
            deadline = time.monotonic() + 10
            while not watchdog_entered.is_set() and time.monotonic() < deadline:
                alive = watchdog_alive()
                if seen and not alive:
                    break
                seen = seen or alive
                time.sleep(0.01)
            if watchdog_entered.is_set():
                time.sleep(0.3)  # on into the context's term
            held.close()

        threading.Thread(target=release, daemon=True).start()
        real_stop(self)

    Heartbeat.stop = stop
    from async_kernel.app.cli import main
    main()
    """
)


@pytest.mark.parametrize("closer", ["heartbeat", "transport"])
def test_two_threads_close_at_once_and_both_return(closer: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _TWO_STOPPERS, closer],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "alive: False False", done.stdout + done.stderr


def test_a_slow_teardown_is_not_closed_again_by_the_stop_watchdog(tmp_path: Path) -> None:
    stderr = tmp_path / "kernel.err"
    argv = [sys.executable, "-c", _SLOW_TEARDOWN, *kernel_argv()[3:]]
    with start_kernel(argv=argv, stderr=stderr) as (km, kc):
        process = km.provisioner.process  # type: ignore[union-attr]
        kc.shutdown()
        assert process.wait(timeout=15) == 0, stderr.read_text()
        log = stderr.read_text()
        assert "Fatal Python error" not in log, log
        assert "a second stop" not in log, log
        # The teardown was under way: not a held main thread, so no forced exit.
        assert "still held" not in log, log
