"""The launcher's restart back-off, with stand-in processes and a clock the test moves."""

import time

from chatsite.stack import Service


class Exited:
    """A process that has already exited with ``code``."""

    def __init__(self, code: int = 1):
        self.pid, self.code = 4242, code

    def poll(self):
        return self.code


def test_backoff_doubles_to_30_s_while_failing_and_resets_after_a_stable_run(capsys):
    starts = []
    service = Service("worker", lambda: starts.append(1) or Exited(-9))
    service.run()
    delays = []
    for _ in range(7):  # each start fails at once
        now = time.monotonic() + 0.1
        service.check(now)
        delays.append(service.restart_at - now)
        service.check(service.restart_at)  # the back-off is over: started again
    assert [round(d) for d in delays] == [1, 2, 4, 8, 16, 30, 30] and len(starts) == 8
    assert "worker exited with -9; restarting in 16 s" in capsys.readouterr().err

    service.check(service.started_at + 61)  # it had stayed up a minute: a fresh failure, retried at once
    assert round(service.restart_at - service.started_at - 61) == 1


def test_a_running_process_is_left_alone_and_a_pending_restart_waits():
    class Running(Exited):
        def poll(self):
            return None

    starts = []
    service = Service("daphne", lambda: starts.append(1) or Running())
    service.run()
    service.check(time.monotonic() + 3600)
    assert len(starts) == 1 and service.restart_at is None
    service.proc = Exited(0)
    now = time.monotonic()
    service.check(now)
    service.check(now + 0.5)  # before its second
    assert len(starts) == 1
    service.check(now + 1)
    assert len(starts) == 2 and service.restart_at is None
