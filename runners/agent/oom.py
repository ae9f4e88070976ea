"""Was a container OOM-killed? The kernel's log says so, naming the memory cgroup.

runc removes a container's cgroup as soon as the container ends, taking the cgroup's
own OOM counter with it; the kernel log keeps an ``oom-kill:`` record naming the
``oom_memcg`` and stamped with the monotonic clock, which is enough to tell whether
*this* run of the container was the one killed.
"""

from __future__ import annotations

import errno
import os

KMSG = "/dev/kmsg"
# printk stamps and CLOCK_MONOTONIC are close but not identical clocks
_SLACK_SECONDS = 1.0


def oom_killed(cgroups_path: str, since: float, kmsg: str = KMSG) -> bool:
    """True when the kernel log has an OOM kill in ``cgroups_path`` after ``since`` (monotonic)."""
    wanted = f"oom_memcg={cgroups_path}".encode()
    wanted_task = f"task_memcg={cgroups_path}".encode()
    start_us = int((since - _SLACK_SECONDS) * 1_000_000)
    try:
        fd = os.open(kmsg, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        while True:
            try:
                record = os.read(fd, 8192)
            except OSError as exc:
                if exc.errno == errno.EPIPE:
                    continue  # the ring buffer overwrote what we were about to read
                if exc.errno == errno.EAGAIN:
                    return False
                raise
            if not record:
                return False
            prefix, _, message = record.partition(b";")
            fields = prefix.split(b",")
            if len(fields) < 3 or not fields[2].isdigit() or int(fields[2]) < start_us:
                continue
            if b"oom-kill:" in message and (wanted in message or wanted_task in message):
                line = message.split(b"\n", 1)[0]
                # the path must end there, or /berth/h/web would match /berth/h/web2
                for key in (wanted, wanted_task):
                    at = line.find(key)
                    if at >= 0 and line[at + len(key) : at + len(key) + 1] in (b",", b""):
                        return True
    finally:
        os.close(fd)
