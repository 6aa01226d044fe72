"""The seccomp filter python-grader sandboxes run under (bubblewrap's `--seccomp FD`).

Everything is allowed except what lets a process reach past its namespaces or attack the
kernel: debugging other processes, mounting, the kernel keyring, eBPF, userfaultfd (a classic
exploit aid), perf events, and new user namespaces (from which a process gains the
capabilities that open up the rest of the kernel's attack surface). Those fail with EPERM,
so a grader sees an ordinary OSError. `clone3` answers ENOSYS: its flags sit in memory a
filter cannot read, and ENOSYS makes the C library fall back to `clone`, whose flags it can.
"""

from __future__ import annotations

import errno
import os
import tempfile
from functools import lru_cache

# CLONE_NEWUSER from <linux/sched.h>
CLONE_NEWUSER = 0x10000000

DENIED_SYSCALLS = (
    "ptrace", "process_vm_readv", "process_vm_writev",
    "mount", "umount2", "pivot_root", "move_mount", "open_tree", "fsopen", "fsmount",
    "fspick", "mount_setattr",
    "keyctl", "add_key", "request_key",
    "bpf", "userfaultfd", "perf_event_open",
    "unshare", "setns",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "open_by_handle_at", "name_to_handle_at",
)  # fmt: skip


class SeccompUnavailable(RuntimeError):
    """libseccomp (or its Python bindings) is missing, so no filter can be built."""


@lru_cache(maxsize=1)
def filter_program() -> bytes:
    """The filter as a BPF program, built once per process with libseccomp."""
    try:
        import pyseccomp as seccomp
    except (ImportError, OSError) as error:  # OSError: the bindings found no libseccomp.so
        raise SeccompUnavailable(f"libseccomp cannot be loaded: {error}") from None
    rules = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    denied = seccomp.ERRNO(errno.EPERM)
    for name in DENIED_SYSCALLS:
        try:
            rules.add_rule(denied, name)
        except (ValueError, RuntimeError):  # a syscall this kernel's architecture lacks
            continue
    rules.add_rule(denied, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER))
    rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    with tempfile.TemporaryFile() as sink:
        rules.export_bpf(sink)
        sink.seek(0)
        return sink.read()


def filter_fd() -> int:
    """A fresh file descriptor holding the program, for one bubblewrap to read; the caller
    closes it once the sandbox started."""
    program = filter_program()
    fd = os.memfd_create("openrft-seccomp", 0)
    os.write(fd, program)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
