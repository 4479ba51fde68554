"""Supervised child processes that never outlive the server, however it dies.

Every child Bastion starts (model workers today; app processes and SQL workers use the same
mechanism) runs under a small **guard** (``python -m bastion.processes.guard``): the guard is
the leader of the child's process group, watches a *lifeline* pipe whose only writer is the
server, and when that pipe reports end-of-file — which the kernel guarantees the moment the
server process is gone, whether it exited, crashed or was ``kill -9``-ed — it terminates the
whole group (the worker and anything the worker started) and exits.

Why a pipe rather than Linux's parent-death signal: ``PR_SET_PDEATHSIG`` fires when the
*thread* that forked the child exits, and children are started from request and supervisor
threads that come and go; it also covers only the direct child. The pipe is tied to the
process, works on every POSIX system, and the guard extends it to the whole group. (The guard
does set the parent-death signal on its own child — it starts it from its one main thread — so
a guard killed outright takes its worker along.)

A starting server also reaps what a crashed predecessor left: each child is recorded under
``BASTION_HOME/run/`` with its pid, its kernel start time, the boot it started in and a random
tag on its command line, and is stopped only if all of those still match — a pid reused by
an unrelated process is never touched.
"""

from __future__ import annotations

from bastion.processes.records import ProcessRecord, ProcessRegistry, process_memory
from bastion.processes.spawn import Lifeline, spawn

__all__ = ["Lifeline", "ProcessRecord", "ProcessRegistry", "process_memory", "spawn"]
