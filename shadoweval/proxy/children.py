"""Child processes of the proxy on private channels: the shadow worker and the extra relay
processes (``shadow_worker``, ``listen.processes``) share this machinery.

A child is forked before the event loop starts (so it shares the proxy's memory pages) or,
when it has to be replaced, spawned afresh as ``python -m shadoweval <command> --fd N``.
It is configured over its channel, says ``ready`` (or ``failed``), answers requests for its
metric families, and stops when told or when the channel closes, sending its final
families last (the proxy's shutdown line counts the whole process group). The channel carries
length-prefixed frames built only by these processes, never anything from the network:
a kind byte, then a pickle. Offers (``kind == OFFER``) can be passed on unopened, so the
proxy forwards a relay's shadows to the worker without unpickling them.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import gc
import itertools
import logging
import os
import pickle
import signal
import socket
import struct
import sys
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import Metric

from shadoweval import logs

if TYPE_CHECKING:
    from shadoweval.config.proxy import Config

log = logging.getLogger(__name__)

_LEN = struct.Struct("!I")
MESSAGE = 0x6D  # b"m"
OFFER = 0x6F  # b"o"


def frame(message: tuple[Any, ...], kind: int = MESSAGE) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LEN.pack(len(data) + 1) + bytes((kind,)) + data


def unframe(raw: bytes) -> tuple[Any, ...]:
    """The message of one whole frame (length prefix included)."""
    message: tuple[Any, ...] = pickle.loads(memoryview(raw)[5:])
    return message


class Channel(asyncio.Protocol):
    """Frames over a stream socket, in both directions. ``on_offer`` receives offer frames
    whole and unopened; without it they are unpickled like any message."""

    def __init__(
        self,
        on_message: Callable[[tuple[Any, ...]], None],
        on_lost: Callable[[], None],
        on_offer: Callable[[bytes], None] | None = None,
    ) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._buffer = bytearray()
        self._on_message = on_message
        self._on_lost = on_lost
        self._on_offer = on_offer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's do not subclass

    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        buf = self._buffer
        buf += data
        start = 0
        while len(buf) - start >= 4:
            (size,) = _LEN.unpack_from(buf, start)
            end = start + 4 + size
            if len(buf) < end:
                break
            if buf[start + 4] == OFFER and self._on_offer is not None:
                self._on_offer(bytes(buf[start:end]))
            else:
                self._on_message(pickle.loads(buf[start + 5 : end]))
            start = end
        if start:
            del buf[:start]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.closed.done():
            self.closed.set_result(None)
        self._on_lost()


def socket_pair() -> tuple[socket.socket, socket.socket]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    return ours, theirs


class ForkedProcess:
    """A child forked before the event loop started (the same interface as the asyncio
    process of a spawned one: ``pid``, ``returncode``, ``wait``, ``kill``)."""

    def __init__(self, pid: int, sock: socket.socket) -> None:
        self.pid = pid
        self.sock = sock
        self._code: int | None = None

    @property
    def returncode(self) -> int | None:
        if self._code is None:
            with contextlib.suppress(ChildProcessError):
                pid, status = os.waitpid(self.pid, os.WNOHANG)
                if pid:
                    self._code = os.waitstatus_to_exitcode(status)
        return self._code

    async def wait(self) -> int:
        while self.returncode is None:
            await asyncio.sleep(0.05)
        assert self._code is not None
        return self._code

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)


def fork_child(run: Callable[[int], int], inherited: Iterable[socket.socket] = ()) -> ForkedProcess:
    """Fork a child now, before any event loop or thread exists: it shares every module and
    object loaded so far (copy-on-write; frozen out of the garbage collector's reach
    first, so collections do not copy them). ``run(fd)`` is its whole life; ``inherited``
    are other children's channels, closed in this one so that each channel has two ends."""
    gc.collect()
    gc.freeze()
    ours, theirs = socket_pair()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the proxy's code
        code = 1
        try:
            ours.close()
            for sock in inherited:
                sock.close()
            code = run(theirs.detach())
        finally:
            os._exit(code)
    theirs.close()
    return ForkedProcess(pid, ours)


class Child:
    """The proxy's handle on one child process: start, configure, ask for metrics, replace
    when it dies (after 2 s, doubling to 30 s while starts fail), stop."""

    def __init__(
        self,
        name: str,
        command: str,
        config: dict[str, Any],
        start_timeout_s: float,
        forked: ForkedProcess | None = None,
        on_offer: Callable[[bytes], None] | None = None,
        on_death: Callable[[], None] | None = None,
    ) -> None:
        """``on_death``: called when the child dies unasked (it is then replaced)."""
        self.name = name
        self._command = command
        self._config = config
        self._start_timeout_s = start_timeout_s
        self._forked = forked
        self._on_offer = on_offer
        self._on_death = on_death
        self._proc: asyncio.subprocess.Process | ForkedProcess | None = None
        self.channel: Channel | None = None
        self._replies: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self._ready: asyncio.Future[None] | None = None
        self.closing = False
        # The families the child sent as it stopped (None until then, or if it was killed).
        self.final: list[Metric] | None = None
        self._last_families: list[Metric] = []
        self._restarts = 0
        self._restart_task: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        return self.channel is not None and self._ready is not None and self._ready.done()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def start(self) -> None:
        """Start the child and wait until it is ready (a failure of its start, such as a
        candidate's missing certificate, fails the proxy's start too)."""
        loop = asyncio.get_running_loop()
        if self._forked is not None:
            self._proc, ours = self._forked, self._forked.sock
            self._forked = None
        else:
            ours, theirs = socket_pair()
            fd = theirs.fileno()
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "shadoweval", self._command, "--fd", str(fd), pass_fds=(fd,)
            )
            theirs.close()
        self._ready = loop.create_future()
        _, self.channel = await loop.create_unix_connection(
            lambda: Channel(self._on_message, self._on_lost, self._on_offer), sock=ours
        )
        self.channel.write(frame(("config", self._config)))
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), self._start_timeout_s)
        except TimeoutError:
            await self._kill()
            raise RuntimeError(
                f"the {self.name} did not start within {self._start_timeout_s}s"
            ) from None

    def reconfigure(self, config: dict[str, Any], timeout_s: float = 30.0) -> Awaitable[str | None]:
        """Send a reloaded configuration now (so it precedes every frame written after
        this call); the awaitable gives the child's error, or None once it has applied it.
        A child that is down gets it as it starts (a replacement starts with the current
        configuration, never the one from start-up); one that is starting, with the
        previous one, is sent it once it is ready."""
        self._config = config
        if self.channel is None or self._ready is None:
            return asyncio.sleep(0, None)
        if not self._ready.done():
            return self._after_start(timeout_s)
        return self._send_reload(config, timeout_s)

    async def _after_start(self, timeout_s: float) -> str | None:
        assert self._ready is not None
        with contextlib.suppress(Exception):  # a failed start: the next one reads _config
            await asyncio.shield(self._ready)
        if not self.ready:
            return None
        return await self._send_reload(self._config, timeout_s)

    def _send_reload(self, config: dict[str, Any], timeout_s: float) -> Awaitable[str | None]:
        channel = self.channel
        if channel is None or channel.transport is None:
            return asyncio.sleep(0, None)
        rid = next(self._ids)
        reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._replies[rid] = reply
        channel.write(frame(("reload", rid, config)))

        async def applied() -> str | None:
            try:
                error = await asyncio.wait_for(reply, timeout_s)
            except TimeoutError:
                return f"the {self.name} did not apply it within {timeout_s:g}s"
            finally:
                self._replies.pop(rid, None)
            # Not a string: the child died first; its replacement starts with this config.
            return error if isinstance(error, str) else None

        return applied()

    async def families(self, timeout_s: float = 2.0) -> list[Metric]:
        """The child's metric families, for the proxy's /metrics (empty if it is down)."""
        channel = self.channel
        if channel is None or channel.transport is None:
            return []
        rid = next(self._ids)
        reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._replies[rid] = reply
        channel.write(frame(("metrics", rid)))
        try:
            families = list(await asyncio.wait_for(reply, timeout_s))
        except TimeoutError:
            # Starved of CPU (the shadow worker runs only when the relay is idle): its
            # last answer, so its series do not vanish from a scrape and come back.
            log.warning(
                "the %s did not answer a metrics request in %.1fs; its last families are shown",
                self.name,
                timeout_s,
            )
            return self._last_families
        finally:
            self._replies.pop(rid, None)
        if channel.transport is not None:  # not the empty answer of a child that died
            self._last_families = families
        return families

    def _on_message(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "metrics" or kind == "reloaded":
            reply = self._replies.get(message[1])
            if reply is not None and not reply.done():
                reply.set_result(message[2])
        elif kind == "final":
            self.final = list(message[1])
        elif kind == "ready" and self._ready is not None and not self._ready.done():
            self._ready.set_result(None)
        elif kind == "failed" and self._ready is not None and not self._ready.done():
            failure = RuntimeError(f"the {self.name} failed to start: {message[1]}")
            self._ready.set_exception(failure)

    def _on_lost(self) -> None:
        self.channel = None
        self._last_families = []  # a replacement counts from zero
        for reply in self._replies.values():
            if not reply.done():
                reply.set_result([])  # a reload: it starts again with the new configuration
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(RuntimeError(f"the {self.name} exited while starting"))
            return
        if not self.closing:
            code = self._proc.returncode if self._proc is not None else None
            log.error("the %s exited (code %s); starting a new one", self.name, code)
            if self._on_death is not None:
                self._on_death()
            self._restart_task = asyncio.get_running_loop().create_task(self._restart())

    async def _restart(self) -> None:
        self._restarts += 1
        await asyncio.sleep(min(2.0 ** min(self._restarts, 5), 30.0))
        if self.closing:
            return
        try:
            await self.start()
        except Exception as exc:
            log.error("could not restart the %s: %s", self.name, exc)
            if not self.closing:
                self._restart_task = asyncio.get_running_loop().create_task(self._restart())

    def tell_close(self, grace_s: float, flush_s: float | None = None) -> None:
        """Ask the child to finish its work within ``grace_s`` and exit; ``flush_s``: the
        time its sink then has to flush (default: its own ``shutdown.grace_s``)."""
        self.closing = True
        if self._restart_task is not None:
            self._restart_task.cancel()
        if self.channel is not None:
            self.channel.write(frame(("close", grace_s, flush_s)))

    async def wait_closed(self, timeout_s: float) -> None:
        """Wait for the child to exit after :meth:`tell_close`; killed after ``timeout_s``."""
        channel, proc = self.channel, self._proc
        if proc is not None:
            try:
                await asyncio.wait_for(proc.wait(), timeout_s)
            except TimeoutError:
                log.error("the %s did not stop in time; killing it", self.name)
                await self._kill()
        if channel is not None:
            # Its final families may still be in the socket when its exit is noticed.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(channel.closed), 1.0)
            if channel.transport is not None:
                channel.transport.close()

    async def _kill(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._proc.wait(), 5)


def configure_logging(level: str, tag: str) -> None:
    """A child's log lines say which process wrote them."""
    logs.configure(
        level,
        f"%(asctime)s %(levelname)s %(name)s[{tag}]: %(message)s",
        force=True,  # a forked child inherits the proxy's handlers
    )


async def configured(fd: int, tag: str) -> tuple[Parent, Config | None]:
    """A child's start: its channel, and the configuration the proxy sends first (None if
    the proxy went away before sending it), its log lines tagged ``tag``."""
    from shadoweval.config.proxy import Config

    parent = Parent()
    await parent.connect(fd)
    config = await parent.config
    if config is None:
        return parent, None
    cfg = Config.model_validate(config)
    configure_logging(cfg.log_level, tag)
    return parent, cfg


class Parent:
    """A child's side of its channel: the configuration it is sent first, requests for its
    metrics answered from ``collect``, and ``stop`` resolved with the grace the proxy
    gives (``close``) or with None when the proxy is gone."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.config: asyncio.Future[dict[str, Any] | None] = loop.create_future()
        self.stop: asyncio.Future[float | None] = loop.create_future()
        # The time the sink has to flush after the grace, when the proxy says (``close``).
        self.flush_s: float | None = None
        # Set once the child has built what answers them.
        self.collect: Callable[[], Iterable[Metric]] | None = None
        # Instead of ``collect`` while running: families gathered from a child of this
        # child (the shadow worker's idle one); ``collect`` still gives the final ones.
        self.gather: Callable[[], Awaitable[list[Metric]]] | None = None
        self._answers: set[asyncio.Task[None]] = set()
        self.on_offer: Callable[[tuple[Any, ...]], None] | None = None
        # A reloaded configuration: applied in part before it returns (so frames read
        # after it see it), the rest in the awaitable; its error goes back to the proxy.
        self.on_reload: Callable[[dict[str, Any]], Awaitable[None]] | None = None
        self.channel: Channel | None = None

    async def connect(self, fd: int) -> None:
        # SIGINT/SIGTERM go to the whole process group (a terminal, a container runtime):
        # the proxy decides when a child stops, after its in-flight requests.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if hasattr(signal, "SIGHUP"):  # reloads come from the proxy (not on Windows)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
        sock = socket.socket(fileno=fd)
        _, self.channel = await asyncio.get_running_loop().create_unix_connection(
            lambda: Channel(self._on_message, self._on_lost), sock=sock
        )

    def reply(self, message: tuple[Any, ...]) -> None:
        if self.channel is not None:
            self.channel.write(frame(message))

    def _on_message(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if not self.config.done():
            self.config.set_result(message[1] if kind == "config" else None)
        elif kind == "close":
            if not self.stop.done():
                self.flush_s = message[2] if len(message) > 2 else None
                self.stop.set_result(message[1])
        elif kind == "metrics" and self.gather is not None:
            task = asyncio.get_running_loop().create_task(self._answer(message[1], self.gather))
            self._answers.add(task)
            task.add_done_callback(self._answers.discard)
        elif kind == "metrics" and self.collect is not None:
            self.reply(("metrics", message[1], list(self.collect())))
        elif kind == "reload" and self.on_reload is not None:
            rid = message[1]
            try:
                pending = self.on_reload(message[2])
            except Exception as exc:
                log.exception("applying the reloaded configuration failed")
                self.reply(("reloaded", rid, f"{type(exc).__name__}: {exc}"))
                return
            task = asyncio.get_running_loop().create_task(self._reloaded(rid, pending))
            self._answers.add(task)
            task.add_done_callback(self._answers.discard)
        elif kind == "offer" and self.on_offer is not None:
            # Handled as it is read (offer is synchronous and bounded by the candidates'
            # queues), so nothing piles up in this process between reads.
            self.on_offer(message)

    async def _reloaded(self, rid: int, pending: Awaitable[None]) -> None:
        try:
            await pending
        except Exception as exc:
            log.exception("applying the reloaded configuration failed")
            self.reply(("reloaded", rid, f"{type(exc).__name__}: {exc}"))
            return
        self.reply(("reloaded", rid, None))

    async def _answer(self, rid: int, gather: Callable[[], Awaitable[list[Metric]]]) -> None:
        self.reply(("metrics", rid, await gather()))

    def _on_lost(self) -> None:  # the proxy is gone: finish what is in hand, then stop
        if not self.config.done():
            self.config.set_result(None)
        if not self.stop.done():
            self.stop.set_result(None)

    async def close(self) -> None:
        """Send the final metric families (the proxy's shutdown line adds them to its
        own), then close the channel once everything written has been sent."""
        channel = self.channel
        if channel is not None and channel.transport is not None:
            if self.collect is not None:
                self.reply(("final", list(self.collect())))
            channel.transport.close()
            await channel.closed


# Facts about one process that do not add up: the proxy process's are shown.
_FIRST_ONLY = frozenset({"process_start_time_seconds", "process_max_fds", "python_info"})


def merge_families(*groups: Iterable[Metric]) -> list[Metric]:
    """One exposition from several processes' families: samples with the same name and
    labels are added (counters, histogram buckets and gauges alike: each series is
    written by one process, the others' are zero; memory, CPU and open files become the
    total of all processes)."""
    merged: dict[str, Metric] = {}
    index: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], int]] = {}
    for n, families in enumerate(groups):
        for family in families:
            if n and family.name in _FIRST_ONLY:
                continue
            into = merged.get(family.name)
            if into is None:
                into = merged[family.name] = copy.copy(family)
                into.samples = list(family.samples)
                index[family.name] = {
                    (s.name, tuple(sorted(s.labels.items()))): i for i, s in enumerate(into.samples)
                }
                continue
            positions = index[family.name]
            for s in family.samples:
                key = (s.name, tuple(sorted(s.labels.items())))
                i = positions.get(key)
                if i is None:
                    positions[key] = len(into.samples)
                    into.samples.append(s)
                else:
                    old = into.samples[i]
                    into.samples[i] = old._replace(value=old.value + s.value)
    return list(merged.values())
