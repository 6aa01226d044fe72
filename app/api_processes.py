"""Several API processes behind one port, each new connection handed to the next in turn.

uvicorn's own workers share one listening socket and each accepts what it can: a burst of new
connections goes mostly to whichever process wakes first (its event loop accepts until the
queue is empty), and keep-alive clients stay where they landed. Under bench/api_load.py one
process held 40 to 68 of 96 clients, and its clients waited longer than the others (most of
the p99). Here the parent process accepts, and deals each connection to the ready workers in
turn over a Unix socket (SCM_RIGHTS); a worker serves it with uvicorn's own HTTP protocol, as
if it had accepted it.

A worker that has left the connections sent to it unread for half a second gets no more
while another keeps up (a busy one reads them within milliseconds), and one that leaves them
unread for HUNG_SECONDS is killed.
The parent replaces a worker that dies, stops with exit status 3 if one fails to start (the
app or the database is broken, and a replacement would fail the same way), and on SIGINT or
SIGTERM stops accepting, lets the workers finish their requests and exits.
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import logging
import multiprocessing
import os
import selectors
import signal
import socket
import struct
import sys
import termios
import time
from dataclasses import dataclass
from multiprocessing.process import BaseProcess

import uvicorn
from uvicorn.config import STARTUP_FAILURE

logger = logging.getLogger("uvicorn.error")
_spawn = multiprocessing.get_context("spawn")
_READY = b"r"
_CONNECTION = b"c"
# a worker that dies this soon after the last start of its slot is started again only after
# this long, so a worker that crashes at once does not spin the parent
_RESTART_SECONDS = 1.0
_STOP_SECONDS = 30.0
_ACCEPT_PAUSE_SECONDS = 0.05
# a worker that has left connections unread in its channel this long has a stuck event loop
# (the app never blocks it for long): it is killed and replaced, and its clients reconnect
HUNG_SECONDS = 10.0
# how often the parent looks for such a worker when nothing else wakes it
_CHECK_SECONDS = 1.0
# a worker this far behind gets no new connections while another keeps up
_BEHIND_SECONDS = 0.5


# --- the worker ------------------------------------------------------------------------------


class HandedConnectionsServer(uvicorn.Server):
    """uvicorn's server, with no listening socket: it serves the connections the parent hands
    it over `channel`, and stops when the parent is gone."""

    def __init__(self, config: uvicorn.Config, channel: socket.socket) -> None:
        super().__init__(config)
        self._channel = channel
        self._handing: set[asyncio.Task[object]] = set()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])  # the app's lifespan; no socket of its own
        loop = asyncio.get_running_loop()
        protocol = functools.partial(
            self.config.http_protocol_class,
            config=self.config,
            server_state=self.server_state,
            app_state=self.lifespan.state,
        )
        self._channel.setblocking(False)
        loop.add_reader(self._channel.fileno(), self._take_connections, loop, protocol)
        self._channel.send(_READY)

    def _take_connections(
        self, loop: asyncio.AbstractEventLoop, protocol: functools.partial[asyncio.Protocol]
    ) -> None:
        while True:
            try:
                message, fds, _, _ = socket.recv_fds(self._channel, 1, 1)
            except BlockingIOError:
                return
            if not message:  # the parent is gone: nobody hands out connections any more
                loop.remove_reader(self._channel.fileno())
                self.should_exit = True
                return
            for fd in fds:
                connection = socket.socket(fileno=fd)
                connection.setblocking(False)
                task = loop.create_task(loop.connect_accepted_socket(protocol, connection))
                self._handing.add(task)
                task.add_done_callback(self._handing.discard)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # closing the channel tells the parent to send nothing more here; connections still
        # in it are closed with it
        asyncio.get_running_loop().remove_reader(self._channel.fileno())
        self._channel.close()
        await super().shutdown(sockets)


def _worker_main(config: uvicorn.Config, channel: socket.socket) -> None:
    config.configure_logging()  # a spawned process starts with no logging set up
    try:
        HandedConnectionsServer(config, channel).run()
    except KeyboardInterrupt:
        pass


# --- the parent ------------------------------------------------------------------------------


@dataclass
class _Worker:
    process: BaseProcess
    channel: socket.socket  # the parent's end
    started_at: float
    ready: bool = False
    # since when connections sent to it have waited unread, if they do
    behind_since: float | None = None

    def seconds_behind(self, now: float) -> float:
        """How long connections sent to the worker have waited in its channel, unread (0 when
        none wait); a busy worker reads them within a few milliseconds."""
        pending = fcntl.ioctl(self.channel.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
        if struct.unpack("i", pending)[0] == 0:
            self.behind_since = None
            return 0.0
        if self.behind_since is None:
            self.behind_since = now
        return now - self.behind_since


def _start_worker(config: uvicorn.Config) -> _Worker:
    parent_end, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    process = _spawn.Process(target=_worker_main, args=(config, worker_end), daemon=False)
    process.start()
    worker_end.close()
    parent_end.setblocking(False)
    return _Worker(process, parent_end, time.monotonic())


class Dealer:
    """The parent: accepts on `listener` and deals connections out to `count` workers."""

    def __init__(self, config: uvicorn.Config, listener: socket.socket, count: int) -> None:
        self._config = config
        self._listener = listener
        self._selector = selectors.DefaultSelector()
        self._workers: list[_Worker | None] = [None] * count
        self._restart_at: dict[int, float] = {}
        self._ended: list[BaseProcess] = []  # processes that closed their channel
        self._next = 0
        self._accepting = False
        self._stopping = False
        self.exit_code = 0

    def run(self) -> int:
        wake_reader, wake_writer = socket.socketpair()
        wake_writer.setblocking(False)
        self._selector.register(wake_reader, selectors.EVENT_READ, "signal")
        previous_fd = signal.set_wakeup_fd(wake_writer.fileno())
        handlers = {sig: signal.signal(sig, self._on_stop_signal) for sig in _STOP_SIGNALS}
        logger.info("Started parent process [%d]", os.getpid())
        try:
            for slot in range(len(self._workers)):
                self._start(slot)
            while not self._stopping:
                self._step()
        finally:
            self._stop_workers()
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(previous_fd)
            wake_reader.close()
            wake_writer.close()
            self._listener.close()
            logger.info("Stopping parent process [%d]", os.getpid())
        return self.exit_code

    def _on_stop_signal(self, signum: int, frame: object) -> None:
        self._stopping = True

    def _step(self) -> None:
        timeout = _CHECK_SECONDS
        if self._restart_at:
            timeout = max(0.0, min(timeout, min(self._restart_at.values()) - time.monotonic()))
        for key, _ in self._selector.select(timeout):
            if key.data == "listener":
                self._deal()
            elif key.data == "signal":
                key.fileobj.recv(64)  # type: ignore[union-attr]
            else:
                self._hear_from(key.data)
        self._ended = [process for process in self._ended if process.exitcode is None]
        now = time.monotonic()
        self._kill_the_stuck(now)
        for slot, when in list(self._restart_at.items()):
            if when <= now and not self._stopping:
                del self._restart_at[slot]
                self._start(slot)

    def _start(self, slot: int) -> None:
        worker = _start_worker(self._config)
        self._workers[slot] = worker
        self._selector.register(worker.channel, selectors.EVENT_READ, slot)

    def _hear_from(self, slot: int) -> None:
        worker = self._workers[slot]
        assert worker is not None
        try:
            message = worker.channel.recv(16)
        except BlockingIOError:
            return
        except OSError:
            message = b""
        if message == _READY:
            worker.ready = True
            self._listen(True)
            logger.info("API process [%s] takes connections", worker.process.pid)
            return
        self._forget(slot, worker)

    def _forget(self, slot: int, worker: _Worker) -> None:
        """`worker` closed its channel: it stopped or died."""
        self._selector.unregister(worker.channel)
        worker.channel.close()
        self._workers[slot] = None
        worker.process.join(timeout=1.0)  # a crashed process is gone already; a stopping one
        self._ended.append(worker.process)  # is waited for at the parent's own stop
        self._listen(any(other is not None and other.ready for other in self._workers))
        if self._stopping:
            return
        if not worker.ready:
            logger.error("API process [%s] failed to start; stopping.", worker.process.pid)
            self.exit_code, self._stopping = STARTUP_FAILURE, True
            return
        logger.warning(
            "API process [%s] ended (exit status %s); starting another.",
            worker.process.pid, worker.process.exitcode,
        )  # fmt: skip
        self._restart_at[slot] = worker.started_at + _RESTART_SECONDS

    def _listen(self, accepting: bool) -> None:
        if accepting and not self._accepting:
            self._selector.register(self._listener, selectors.EVENT_READ, "listener")
        elif self._accepting and not accepting:
            self._selector.unregister(self._listener)
        self._accepting = accepting

    def _deal(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                # out of file descriptors, say: the connection waits in the queue, and the
                # pause keeps a listener that stays readable from spinning this loop
                logger.warning("accept failed: %s", error)
                time.sleep(_ACCEPT_PAUSE_SECONDS)
                return
            with connection:
                self._hand_over(connection)

    def _hand_over(self, connection: socket.socket) -> None:
        """Sends `connection` to the next ready worker in turn, passing over those that have
        left the last ones sent to them unread for a while if another has not; the parent's
        copy closes after, so a connection nobody took is closed."""
        count, now = len(self._workers), time.monotonic()
        turns = [(self._next + offset) % count for offset in range(count)]
        ready = [(slot, w) for slot in turns if (w := self._workers[slot]) is not None and w.ready]
        keeping_up = [(slot, w) for slot, w in ready if w.seconds_behind(now) < _BEHIND_SECONDS]
        for slot, worker in keeping_up or ready:
            try:
                socket.send_fds(worker.channel, [_CONNECTION], [connection.fileno()])
            except BlockingIOError:  # its queue is full: it is stuck or far behind
                continue
            except OSError:  # it died; its channel's end is heard from next
                continue
            self._next = (slot + 1) % count
            return

    def _kill_the_stuck(self, now: float) -> None:
        for worker in self._workers:
            if worker is None or not worker.ready or worker.seconds_behind(now) <= HUNG_SECONDS:
                continue
            if worker.process.is_alive():
                logger.error(
                    "API process [%s] has not taken a connection in %.0f s; killing it.",
                    worker.process.pid, HUNG_SECONDS,
                )  # fmt: skip
                worker.process.kill()  # its channel's end closes, and it is replaced
            worker.behind_since = None

    def _stop_workers(self) -> None:
        workers = [worker for worker in self._workers if worker is not None]
        processes = [worker.process for worker in workers] + self._ended
        for process in processes:
            if process.is_alive():
                os.kill(process.pid, signal.SIGTERM)  # type: ignore[arg-type]
        deadline = time.monotonic() + _STOP_SECONDS
        for process in processes:
            process.join(timeout=max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
        for worker in workers:
            worker.channel.close()


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def serve_in_processes(config: uvicorn.Config, count: int) -> None:
    """Serves `config`'s app on its host and port from `count` worker processes."""
    listener = config.bind_socket()
    listener.listen(config.backlog)
    listener.setblocking(False)
    sys.exit(Dealer(config, listener, count).run())
