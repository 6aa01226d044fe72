"""Runs inside the python-grader sandbox (standard library only; the app is not mounted there).

argv[1] is a JSON object {"uid", "timeout_seconds", "limits": {RLIMIT name: value}}; the runner
applies the limits (hard and soft) to itself before anything of the grader's runs. Protocol, one JSON object per line:
  in:  {"source": ...}             out: {"loaded": true} | {"loaded": false, "details": tb}
  in:  {"pairs": [[sample, item], ...]}
  out: one line per pair: {"reward": float, "time": s} | {"error": tb, "time": s}
The runner exits by itself after a batch once its CPU budget nears the hard RLIMIT_CPU, so
the per-grade CPU limit it sets always fits under that hard limit.
"""

import json
import linecache
import math
import numbers
import os
import resource
import sys
import time
import traceback

SOURCE_NAME = "<grader>"


def apply_limits(limits):
    for name, value in limits.items():
        resource.setrlimit(getattr(resource, f"RLIMIT_{name}"), (value, value))


def drop_privileges(uid):
    # Root inside the sandbox only long enough to become a uid of our own, so that
    # RLIMIT_NPROC counts this sandbox's processes alone; setuid also clears capabilities.
    if uid is not None and os.getuid() == 0:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)


def take_protocol_streams():
    """Move the protocol off fds 0/1/2 so the grader's prints and reads cannot touch it."""
    protocol_in = os.fdopen(os.dup(0), "rb")
    protocol_out = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    return protocol_in, protocol_out


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def limit_cpu_for_next_grade(timeout_seconds):
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = math.ceil(cpu_seconds() + timeout_seconds) + 1
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def cpu_budget_nearly_spent(timeout_seconds):
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    return hard != resource.RLIM_INFINITY and cpu_seconds() + timeout_seconds + 2 > hard


def user_traceback(error):
    # skip the runner's own frames: the user sees their code only
    frames = error.__traceback__
    while frames is not None and frames.tb_frame.f_code.co_filename == __file__:
        frames = frames.tb_next
    return "".join(traceback.format_exception(type(error), error, frames))


def load(source):
    linecache.cache[SOURCE_NAME] = (len(source), None, source.splitlines(True), SOURCE_NAME)
    namespace = {"__name__": "grader", "__builtins__": __builtins__}
    exec(compile(source, SOURCE_NAME, "exec"), namespace)
    grade = namespace.get("grade")
    if not callable(grade):
        raise NameError("the source does not define grade(sample, item)")
    return grade


def grade_one(grade, sample, item):
    started = time.perf_counter()
    try:
        value = grade(sample, item)
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"grade() returned {type(value).__name__}; it must return a float")
        reward = float(value)
        if not math.isfinite(reward):
            raise ValueError(f"grade() returned {reward}; it must be finite")
        return {"reward": reward, "time": time.perf_counter() - started}
    except BaseException as error:  # noqa: BLE001 - any failure of user code is a result
        return {"error": user_traceback(error), "time": time.perf_counter() - started}


def send(stream, message):
    stream.write(json.dumps(message).encode() + b"\n")
    stream.flush()


def main():
    options = json.loads(sys.argv[1])
    timeout_seconds = float(options["timeout_seconds"])
    apply_limits(options["limits"])
    drop_privileges(options.get("uid"))
    protocol_in, protocol_out = take_protocol_streams()
    first = json.loads(protocol_in.readline())
    limit_cpu_for_next_grade(timeout_seconds)
    try:
        grade = load(first["source"])
    except BaseException as error:  # noqa: BLE001
        send(protocol_out, {"loaded": False, "details": user_traceback(error)})
        return
    send(protocol_out, {"loaded": True})
    for line in protocol_in:
        for sample, item in json.loads(line)["pairs"]:
            limit_cpu_for_next_grade(timeout_seconds)
            send(protocol_out, grade_one(grade, sample, item))
        if cpu_budget_nearly_spent(timeout_seconds):
            return


if __name__ == "__main__":
    main()
