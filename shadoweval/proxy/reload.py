"""Live configuration reload: SIGHUP, or a change of the config file (docs/reload.md).

A Kubernetes ConfigMap volume swaps its files through a symlink (``..data`` points at a new
timestamped directory), so the file is watched by what it resolves to: its real path, its
modification time and a hash of its content, polled every ``interval_s``. A reload loads the
file with the start-up loader (environment overrides included) and the start-up checks;
what it may change is decided by one registry, :data:`RELOADABLE` and :data:`RESTART_ONLY`
(every top-level key is in exactly one; a test keeps it so). The outcome is counted in
``shadoweval_config_reloads_total{outcome}`` and the configuration in force is named by
``shadoweval_config_info{hash}``. An invalid or refused file leaves the old configuration
in force; the next change of the file, or SIGHUP, tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Literal

from shadoweval.config import Config, ConfigError, load
from shadoweval.metrics import Metrics

log = logging.getLogger(__name__)

Outcome = Literal["applied", "unchanged", "invalid", "refused", "failed"]

# Top-level keys a reload applies: the shadow side and what the reports read.
RELOADABLE: frozenset[str] = frozenset(
    {
        "candidates",  # added, removed, changed (a kept one keeps its queue and counters)
        "sampling",
        "sink",  # a new sink started, switched to, the old one flushed and closed
        "redaction",
        "record",  # the request headers copied into records offered from now on
        "pricing",
        "pricing_file",
        "probes",  # the scheduler restarted
        "report",  # decision rules: read by `shadoweval report` from this file
        "shutdown",  # read when the proxy stops
    }
)
# Top-level keys that need a restart, and why (the refusal names them).
RESTART_ONLY: Mapping[str, str] = {
    "listen": "the listening socket and the relay processes",
    "admin": "the admin socket and its token",
    "primary": "the primary's connection pool and the callers' forwarding",
    "limits": "the proxy port's parser limits and every connection's bounds",
    "shadow_worker": "which processes exist",
    "tracing": "the OpenTelemetry exporter",
    "metrics": "the metric registries' label bounds",
    "conversations": "the conversation store's bounds",
    "campaign_state": "the file the campaign counters are kept in, read at start",
    "log_level": "every process's logging",
}


def restart_keys(old: Config, new: Config) -> list[str]:
    """The restart-only keys that differ, each named to its second level where it has one
    (``listen.port``)."""
    changed = []
    before, after = old.for_children(), new.for_children()
    for key in RESTART_ONLY:
        a, b = before.get(key), after.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            changed += [f"{key}.{k}" for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)]
        else:
            changed.append(key)
    return changed


def problems(cfg: Config) -> list[str]:
    """What ``serve`` would refuse to start with beyond validation: unset credentials,
    unwritable sink files, a URL that is the proxy itself, unreadable certificates, a bad
    probe suite."""
    from shadoweval.proxy.loops import self_loops
    from shadoweval.tls import client_context

    found = cfg.missing_credentials() + cfg.path_problems() + self_loops(cfg)
    try:
        for cand in cfg.candidates:
            client_context(cand.tls, cand.url, f"candidates[{cand.name}]")
        if cfg.probes.enabled:
            from shadoweval.probes.suite import build

            build(cfg.probes)
    except ConfigError as exc:
        found.append(str(exc))
    return found


Fingerprint = tuple[str, int, str]
# The GIL switch interval while a reload parses on its thread (the default is 5 ms).
_SWITCH_S = 0.0002


def fingerprint(path: Path) -> Fingerprint | None:
    """What the file is now: its real path (a ConfigMap's ``..data`` swap changes it), its
    modification time and its content's hash. None while it cannot be read (mid-swap)."""
    try:
        real = os.path.realpath(path)
        with open(real, "rb") as f:
            stat = os.fstat(f.fileno())
            digest = hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None
    return real, stat.st_mtime_ns, digest


def watched(path: Path, cfg: Config) -> list[Path]:
    """The files a reload of ``path`` reads into the configuration: the file and its
    ``pricing_file``. (Probe suites are read when the probes section changes, or at
    start-up: an edited suite file alone changes no configuration to apply.)"""
    paths = [path]
    if cfg.pricing_file:
        paths.append(path.parent / cfg.pricing_file)
    return paths


# Each watched file and what it is now.
Snapshot = dict[Path, Fingerprint | None]


class Reloader:
    """Reloads the leader's configuration on SIGHUP and when its file changes. ``apply``
    puts a checked configuration in force (``ProxyServer.reload``); ``sleep`` is injected
    so tests drive the poll without waiting."""

    def __init__(
        self,
        path: str | Path,
        current: Config,
        apply: Callable[[Config], Awaitable[None]],
        metrics: Metrics,
        interval_s: float = 2.0,
        environ: Mapping[str, str] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.path = Path(path)
        self.current = current
        self._apply = apply
        self._m = metrics
        self._interval = interval_s
        self._environ = environ
        self._sleep = sleep
        self._lock = asyncio.Lock()
        self._seen = self._snapshot()
        self._hash = current.digest()
        self._tasks: set[asyncio.Task[Outcome | None]] = set()
        self._poller: asyncio.Task[None] | None = None
        metrics.config_info.labels(self._hash).set(1)

    def start(self) -> None:
        """SIGHUP reloads; with an interval, so does a change of the file."""
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, AttributeError):  # no SIGHUP: Windows
            loop.add_signal_handler(signal.SIGHUP, self._on_signal)
        if self._interval > 0:
            self._poller = loop.create_task(self._poll_forever(), name="shadoweval-reload")

    async def stop(self) -> None:
        with contextlib.suppress(NotImplementedError, AttributeError, ValueError):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        if self._tasks:  # a reload under way finishes: it may have switched half
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _on_signal(self) -> None:
        task = asyncio.get_running_loop().create_task(self.reload("SIGHUP"))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _poll_forever(self) -> None:
        while True:
            await self._sleep(self._interval)
            try:
                await self.poll()
            except Exception:  # the watcher must outlive any one bad reload
                log.exception("checking %s for changes failed", self.path)

    def _snapshot(self) -> Snapshot:
        """The fingerprints of every file the configuration in force was read from."""
        return {p: fingerprint(p) for p in watched(self.path, self.current)}

    async def poll(self) -> Outcome | None:
        """Reload if the file or its pricing file changed since they were last read (None:
        neither did)."""
        now = await asyncio.to_thread(self._snapshot)  # file reads never hold the loop
        if now[self.path] is None or now == self._seen:  # None: the file is mid-swap
            return None
        changed = [str(p) for p, seen in now.items() if self._seen.get(p) != seen]
        return await self.reload(f"{', '.join(changed) or self.path} changed")

    async def reload(self, why: str) -> Outcome:
        async with self._lock:  # one at a time; a burst of signals applies in turn
            outcome = await self._reload(why)
        self._m.config_reloads.labels(outcome).inc()
        return outcome

    async def _reload(self, why: str) -> Outcome:
        # Tried once per change, whatever its outcome.
        self._seen = await asyncio.to_thread(self._snapshot)
        # Off the loop: parsing (pure-Python YAML: ~10 ms for a big file), validation and
        # suites. The thread holds the GIL while it parses, and the loop, woken by a caller's
        # bytes, waits up to the switch interval (5 ms) for it each time: a short interval
        # meanwhile bounds that wait (benchmarks/reload.py measures the loop's stall).
        interval = sys.getswitchinterval()
        sys.setswitchinterval(min(interval, _SWITCH_S))
        try:
            new = await asyncio.to_thread(load, self.path, self._environ)
            found = await asyncio.to_thread(problems, new)
        except ConfigError as exc:
            log.error("reload (%s) refused, the configuration in force stays: %s", why, exc)
            return "invalid"
        finally:
            sys.setswitchinterval(interval)
        if found:
            log.error(
                "reload (%s) refused, the configuration in force stays: cannot start with it:"
                "\n  %s",
                why,
                "\n  ".join(found),
            )
            return "invalid"
        digest = new.digest()
        if digest == self._hash:
            log.info("reload (%s): the configuration is unchanged", why)
            return "unchanged"
        keys = restart_keys(self.current, new)
        if keys:
            log.error(
                "reload (%s) refused, the configuration in force stays: %s only change with "
                "a restart",
                why,
                ", ".join(keys),
            )
            return "refused"
        try:
            await self._apply(new)
        except Exception as exc:
            # Parts may be applied (checked first, so this is a bug or a child's failure):
            # the new file's hash is shown, and a restart gives a clean state.
            log.exception("reload (%s) failed while applying: %s", why, exc)
            self._switch(new, digest)
            self._seen = await asyncio.to_thread(self._snapshot)  # it may read other files
            return "failed"
        self._switch(new, digest)
        self._seen = await asyncio.to_thread(self._snapshot)
        log.info("reload (%s): applied configuration %s", why, digest)
        return "applied"

    def _switch(self, new: Config, digest: str) -> None:
        with contextlib.suppress(KeyError):
            self._m.config_info.remove(self._hash)
        self._m.config_info.labels(digest).set(1)
        self.current, self._hash = new, digest
