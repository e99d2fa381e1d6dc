"""``rapidmq serve``: the broker process.

The task tree is one root task group holding a task per listener, the core's
timer, and the signal watcher; each listener's connections run in the
listener's own task group (ARCHITECTURE.md §2).  SIGTERM or SIGINT stops the
broker gracefully: listeners close first, then every connection is closed with
320 CONNECTION_FORCED, and the process exits 0.

Start-up opens the stores (``--storage``, ``--data-dir``) before any listener
and rebuilds the durable metadata from them; a data dir that cannot be used
ends start-up with one line and exit code 1.  The stores close after the last
connection.

Persistent messages of durable queues are recovered after the metadata, and a
flusher task runs the group commit: woken by the core's first store write
after a commit, it commits the batch on the loop, syncs it in a worker thread
and tells the front ends which batch is durable (ARCHITECTURE.md §4).

A resource monitor samples the process's resident memory and the data dir's
free disk space (:mod:`rapidmq.core.alarms` decides): past half the memory
high watermark it pages bodies of stored messages out of memory, and while a
memory or disk alarm is on, publishing connections are blocked.  Both tasks
live in :mod:`rapidmq.upkeep`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import socket
import ssl
import sys
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import anyio
import anyio.abc

from rapidmq.admin.rates import SAMPLE_S, RateSampler
from rapidmq.audit import configure_audit_file
from rapidmq.auth.backends import LoginResult, build_authenticator
from rapidmq.auth.limiter import LoginLimiter
from rapidmq.auth.limits import LimitStore
from rapidmq.auth.permissions import Permission, PermissionStore
from rapidmq.auth.users import UserStore
from rapidmq.config import ConfigError, Settings, tls_enabled
from rapidmq.core.alarms import (
    ResourceAlarms,
    parse_size,
    parse_watermark,
)
from rapidmq.core.broker import Broker
from rapidmq.core.message_codec import MessageCodec
from rapidmq.core.persistence import Persistence
from rapidmq.logs import configure_logging
from rapidmq.process import (
    disk_free_bytes,
    fd_limit,
    open_fds,
    resident_bytes,
)
from rapidmq.protocols.amqp091.connection import AMQPConnection, AMQPSettings
from rapidmq.protocols.amqp091.properties import (
    decode_properties,
    encode_properties,
    long_header_writer,
)
from rapidmq.protocols.mqtt.connection import MQTTConnection, MQTTSettings
from rapidmq.protocols.mqtt.state import MQTTState
from rapidmq.storage import open_stores
from rapidmq.storage.api import MessageStore, MetadataStore, StorageError
from rapidmq.transport.tcp import (
    ConnectionHandler,
    HandlerFactory,
    ListenError,
    SocketConnection,
    bind_socket,
    open_listener,
    tls_handshake,
)
from rapidmq.transport.tls import server_context
from rapidmq.transport.websocket import websocket_factory
from rapidmq.upkeep import flush_messages, monitor_resources

__all__ = ["Server", "run"]

log = logging.getLogger("rapidmq")

#: How long open connections get to finish closing on shutdown.
SHUTDOWN_GRACE_S = 5.0
#: How often the core's timers (message TTL, queue expiry) are checked.
TICK_S = 0.05


class Server:
    """The broker's listeners and connections, around one core ``Broker``.

    Until :meth:`start` the core holds only the defaults (no store); ``start``
    replaces it with one restored from the stores.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metadata: MetadataStore | None = None
        self.messages: MessageStore | None = None
        self.broker = Broker(default_vhost=settings.default_vhost)
        self.users = UserStore()
        self.permissions = PermissionStore()
        self.limits = LimitStore(self.broker)
        if settings.default_user:
            self._add_default_user(self.users, self.permissions)
        #: The node's name, as RabbitMQ's ``rabbit@host``.
        self.node_name = f"rapidmq@{socket.gethostname()}"
        self.cluster_name = settings.cluster_name or self.node_name
        self.rates = RateSampler()
        self.started_at = time.time()
        self.amqp_settings = AMQPSettings(
            heartbeat_s=settings.heartbeat_s,
            frame_max=settings.frame_max,
            channel_max=settings.channel_max,
            handshake_timeout_s=settings.handshake_timeout_s,
            loopback_users=tuple(settings.loopback_users),
        )
        self.mqtt_state = MQTTState(self.broker)
        self.mqtt_settings = MQTTSettings(
            default_vhost=settings.mqtt_vhost,
            loopback_users=tuple(settings.loopback_users),
            anonymous_user=settings.default_user,
            anonymous_pass=settings.default_pass,
            anonymous_usernames=settings.mqtt_anonymous_usernames,
            connect_timeout_s=settings.handshake_timeout_s,
        )
        # -- authentication: one login chain for AMQP, MQTT and the management API ----
        # (rapidmq.auth.backends; its queued logins run in the serve() task group).
        self.login_limiter = LoginLimiter(settings.login_failure_limit)
        self.authenticator = build_authenticator(settings, lambda: self.users, self.login_limiter)
        self.amqp_settings.authenticator = self.authenticator
        self.mqtt_settings.authenticator = self.authenticator
        self.authenticator.on_accepted = self._login_accepted
        # -- end of authentication --------------------------------------------------------
        self.connections: set[SocketConnection] = set()
        self.ports: dict[str, int | None] = {
            "amqp": None,
            "mqtt": None,
            "mqtt_ws": None,
            "http": None,
            "prometheus": None,
            "amqps": None,
            "mqtts": None,
            "mqtt_wss": None,
            "https": None,
        }
        #: The TLS listeners' context; built by start() when a certificate is configured.
        self.tls_context: ssl.SSLContext | None = None
        self._listeners: list[tuple[anyio.abc.SocketListener, HandlerFactory]] = []
        self._tls_listeners: set[anyio.abc.SocketListener] = set()
        self._https_context: ssl.SSLContext | None = None
        self._http_sockets: list[tuple[str, socket.socket]] = []
        self._recovered = ""
        self._stopping = False
        total_memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        self.alarms = ResourceAlarms(
            memory_limit_bytes=parse_watermark(settings.memory_high_watermark).limit_bytes(
                total_memory
            ),
            disk_free_limit_bytes=parse_size(settings.disk_free_limit),
        )
        self.broker.alarms = self.alarms
        self.broker.permissions = self.permissions  # checked on every operation
        # Protocol connections, told when the alarms change.
        self._blockable: weakref.WeakSet[AMQPConnection | MQTTConnection] = weakref.WeakSet()

    def _add_default_user(self, users: UserStore, permissions: PermissionStore) -> None:
        """The default user, an administrator with every permission in the default vhost."""
        s = self.settings
        users.add_user(s.default_user, s.default_pass, tags=("administrator",))
        permissions.set(Permission(s.default_user, s.default_vhost))

    def _login_accepted(self, result: LoginResult) -> None:
        """A directory login's vhost groups give it access to their vhosts."""
        if result.backend == "ldap" and result.user is not None:
            self.permissions.set_directory_vhosts(result.user.name, result.granted_vhosts)

    def protocol_connections(self) -> list[tuple[SocketConnection, Any]]:
        """Every open client connection with its protocol handler (AMQP or MQTT).

        A WebSocket connection yields the MQTT handler inside it, once it has one.
        """
        out: list[tuple[SocketConnection, Any]] = []
        for conn in self.connections:
            handler: Any = conn.handler
            inner = getattr(handler, "inner", handler)
            if inner is not None:
                out.append((conn, inner))
        return out

    def uptime_ms(self) -> int:
        return int((time.time() - self.started_at) * 1000)

    def resources(self) -> dict[str, int]:
        """Memory, disk and file descriptors of the process, read now."""
        return {
            "memory_used_bytes": resident_bytes(),
            "disk_free_bytes": disk_free_bytes(self.settings.data_dir) or 0,
            "fd_used": open_fds(),
            "fd_total": fd_limit(),
        }

    def _amqp_handler(self, peer: tuple[str, int], wake: Callable[[], None]) -> ConnectionHandler:
        return self._watch(AMQPConnection(self.broker, self.users, self.amqp_settings, peer, wake))

    def _mqtt_handler(self, peer: tuple[str, int], wake: Callable[[], None]) -> ConnectionHandler:
        return self._watch(
            MQTTConnection(self.broker, self.users, self.mqtt_state, self.mqtt_settings, peer, wake)
        )

    def _alarms_changed(self) -> None:
        """Tell every publishing connection which alarms are on now."""
        active = self.alarms.active
        for handler in list(self._blockable):
            handler.set_resource_alarms(active)

    def _watch(self, handler: _Blockable) -> _Blockable:
        self._blockable.add(handler)
        active = self.alarms.active
        if active:
            handler.set_resource_alarms(active)
        return handler

    async def _serve_listener(
        self, listener: anyio.abc.SocketListener, factory: HandlerFactory
    ) -> None:
        tls = self.tls_context if listener in self._tls_listeners else None
        handshake_timeout_s = self.settings.handshake_timeout_s
        async with anyio.create_task_group() as tg:

            async def handle(stream: anyio.abc.SocketStream) -> None:
                if self._stopping:
                    await stream.aclose()
                    return
                session = None
                if tls is not None:
                    session = await tls_handshake(stream, tls, handshake_timeout_s)
                    if session is None or self._stopping:
                        await stream.aclose()
                        return
                conn = SocketConnection(stream, factory, session)
                self.connections.add(conn)
                try:
                    await conn.run()
                finally:
                    self.connections.discard(conn)

            # The listener is closed for shutdown, which ends serve().
            with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
                await listener.serve(handle, task_group=tg)
            # Let open connections finish their close handshake.
            with anyio.move_on_after(SHUTDOWN_GRACE_S):
                while self.connections:
                    await anyio.sleep(0.02)
            tg.cancel_scope.cancel()

    async def _tick(self) -> None:
        broker = self.broker
        while True:
            await anyio.sleep(TICK_S)
            now = time.monotonic()
            deadline = broker.next_deadline()
            if deadline is not None and deadline <= now:
                broker.tick()
            self.mqtt_state.tick(now)

    def statistics(self) -> dict[str, Any]:
        """The core's figures, which carry the resource alarms (``"alarms": ["memory"]``)."""
        return self.broker.statistics()

    def _open_storage(self) -> None:
        """Open the stores and rebuild vhosts, users and durable topology from them."""
        s = self.settings
        started = time.perf_counter()
        metadata, messages = open_stores(s.data_dir, s.storage)
        self.metadata, self.messages = metadata, messages
        try:
            codec = MessageCodec(encode_properties, decode_properties, long_header_writer)
            persistence = Persistence(messages, codec)
            broker = Broker(
                metadata=metadata, persistence=persistence, default_vhost=s.default_vhost
            )
            counts = broker.restore()
            metadata_ms = (time.perf_counter() - started) * 1000.0
            recovered = broker.recover_messages()
            persistence.commit()  # the drops of messages whose queue is gone
            persistence.durable(messages.sync())
            users = UserStore(metadata=metadata)
            user_count = users.restore()
            permissions = PermissionStore(metadata=metadata)
            permissions.restore()
            # Vhost and user limits, after the vhosts they apply to.
            limits = LimitStore(broker, metadata=metadata)
            limits.restore()
            # Like RabbitMQ's guest, the default user is made on a fresh store only.
            if not user_count and s.default_user:
                self._add_default_user(users, permissions)
        except BaseException:
            self._close_storage()
            raise
        self.broker = broker
        broker.alarms = self.alarms
        broker.permissions = permissions
        self.users = users
        self.permissions = permissions
        self.limits = limits
        self.mqtt_state = MQTTState(broker)
        # MQTT persistent sessions and retained messages; unreadable ones are logged.
        self.mqtt_state.restore(metadata, codec)
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        self._recovered = (
            f"recovered {counts['vhosts']} vhosts, {user_count} users, "
            f"{counts['exchanges']} exchanges, {counts['queues']} queues, "
            f"{counts['bindings']} bindings, {counts['policies']} policies "
            f"in {metadata_ms:.0f} ms; "
            f"recovered {recovered['messages']} messages in {recovered['queues']} queues "
            f"in {elapsed_ms - metadata_ms:.0f} ms"
        )

    def _close_storage(self) -> None:
        metadata, messages = self.metadata, self.messages
        self.metadata = self.messages = None
        for store in (messages, metadata):
            if store is None:
                continue
            try:
                store.close()
            except StorageError as err:
                # After a refused write RocksDB refuses the final flush too; what was
                # synced is safe, and the next start recovers it.
                log.warning("closing the store: %s", err)

    async def start(self) -> None:
        """Open the stores, then bind every configured listener.

        Raises:
            StorageError: the data dir cannot be used (one line naming the fix).
            ListenError: a listener cannot bind (one line).
            ConfigError: the load_definitions file is missing or bad (one line).
        """
        self._stopped = anyio.Event()
        self._http_shutdown = anyio.Event()
        self._http_finished = anyio.Event()
        s = self.settings
        if tls_enabled(s):
            self.tls_context = server_context(s)
            # HTTPS gets a context of its own: Hypercorn sets ALPN (h2, http/1.1) on it.
            self._https_context = server_context(s) if s.https_port is not None else None
        self._open_storage()
        if s.load_definitions:
            # Before any listener, so that no client sees the broker without them.
            from rapidmq.admin.definitions_file import load_definitions_file

            try:
                load_definitions_file(self, s.load_definitions)
            except BaseException:
                self._close_storage()
                raise
        wanted: list[tuple[str, int | None, str, str, HandlerFactory]] = [
            ("amqp", s.amqp_port, "AMQP", "--amqp-port", self._amqp_handler),
            ("mqtt", s.mqtt_port, "MQTT", "--mqtt-port", self._mqtt_handler),
            (
                "mqtt_ws",
                s.mqtt_ws_port,
                "MQTT over WebSocket",
                "--mqtt-ws-port",
                websocket_factory(self._mqtt_handler, path="/ws"),
            ),
        ]
        if self.tls_context is not None:
            wanted += [
                ("amqps", s.amqps_port, "AMQP over TLS", "--amqps-port", self._amqp_handler),
                ("mqtts", s.mqtts_port, "MQTT over TLS", "--mqtts-port", self._mqtt_handler),
                (
                    "mqtt_wss",
                    s.mqtt_wss_port,
                    "MQTT over secure WebSocket",
                    "--mqtt-wss-port",
                    websocket_factory(self._mqtt_handler, path="/ws"),
                ),
            ]
        try:
            for key, port, name, flag, factory in wanted:
                if port is None:
                    continue
                listener = await open_listener(s.bind, port, name=name, flag=flag)
                self._listeners.append((listener, factory))
                if key in ("amqps", "mqtts", "mqtt_wss"):
                    self._tls_listeners.add(listener)
                bound = int(listener.extra(anyio.abc.SocketAttribute.local_port))
                self.ports[key] = bound
                log.info("listening for %s on %s:%s", name, s.bind, bound)
            for key, port, name, flag in (
                ("http", s.http_port, "HTTP", "--http-port"),
                ("prometheus", s.prometheus_port, "Prometheus", "--prometheus-port"),
                ("https", s.https_port, "HTTPS", "--https-port"),
            ):
                if port is None or (key == "https" and self.tls_context is None):
                    continue
                sock = bind_socket(s.bind, port, name=name, flag=flag)
                self._http_sockets.append((key, sock))
                self.ports[key] = int(sock.getsockname()[1])
                log.info("listening for %s on %s:%s", name, s.bind, self.ports[key])
        except ListenError:
            for listener, _factory in self._listeners:
                await listener.aclose()
            for _key, sock in self._http_sockets:
                sock.close()
            self._close_storage()
            raise
        # Logged once listening, so that a refused start-up says one line only.
        log.info("%s", self._recovered)

    async def serve(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run until stop() is called. Listeners must have been started.

        The stores close when this returns, after every connection has ended.
        """
        try:
            async with anyio.create_task_group() as tg:
                for listener, factory in self._listeners:
                    tg.start_soon(self._serve_listener, listener, factory)
                tg.start_soon(self._tick)
                if self.broker.persistence is not None:
                    tg.start_soon(
                        flush_messages, self.broker.persistence, self.alarms, self._alarms_changed
                    )
                tg.start_soon(
                    monitor_resources, self.broker, self.alarms, self.settings, self._alarms_changed
                )
                tg.start_soon(self.authenticator.run)  # logins that wait for LDAP
                if self._http_sockets:
                    self._start_http(tg)
                task_status.started()
                await self._stopped.wait()
                tg.cancel_scope.cancel()
        finally:
            self._close_storage()

    def _start_http(self, tg: anyio.abc.TaskGroup) -> None:
        """The management API (and the Prometheus port), and the rate sampler."""
        from rapidmq.admin.app import create_app, metrics_app
        from rapidmq.admin.http import serve_http

        apps = [
            (
                metrics_app(self) if key == "prometheus" else create_app(self),
                sock,
                self._https_context if key == "https" else None,
            )
            for key, sock in self._http_sockets
        ]
        self._http_sockets = []

        async def run_all() -> None:
            try:
                async with anyio.create_task_group() as http_tg:
                    for app, sock, tls in apps:
                        http_tg.start_soon(
                            functools.partial(
                                serve_http,
                                app,
                                sock,
                                self._http_shutdown,
                                ssl_context=tls,
                                handshake_timeout_s=self.settings.handshake_timeout_s,
                            )
                        )
            finally:
                self._http_finished.set()

        tg.start_soon(run_all)
        tg.start_soon(self._sample_rates)

    async def _sample_rates(self) -> None:
        from rapidmq.admin.connections import sample_connections
        from rapidmq.admin.overview import sample_figures

        while True:
            figures = sample_figures(self.broker)
            figures.update(sample_connections(self))
            self.rates.take(figures)
            await anyio.sleep(SAMPLE_S)

    async def stop(self) -> None:
        """Stop accepting, close connections with 320 CONNECTION_FORCED, then return."""
        if self._stopping:
            return
        self._stopping = True
        self._http_shutdown.set()
        for listener, _factory in self._listeners:
            await listener.aclose()
        for conn in list(self.connections):
            conn.shutdown()
        with anyio.move_on_after(SHUTDOWN_GRACE_S):
            while self.connections:
                await anyio.sleep(0.02)
            if any(self.ports[key] is not None for key in ("http", "prometheus", "https")):
                await self._http_finished.wait()
        self._stopped.set()

    def ready_line(self) -> str:
        def show(port: int | None) -> str:
            return "off" if port is None else str(port)

        p = self.ports
        return f"rapidmq ready amqp={show(p['amqp'])} mqtt={show(p['mqtt'])} http={show(p['http'])}"

    _stopped: anyio.Event
    _http_shutdown: anyio.Event
    _http_finished: anyio.Event


_Blockable = TypeVar("_Blockable", AMQPConnection, MQTTConnection)


async def _main(settings: Settings, notes: Sequence[str]) -> int:
    server = Server(settings)
    try:
        await server.start()
    except ListenError as err:
        print(f"rapidmq: {err}", file=sys.stderr, flush=True)
        return 1
    except ConfigError as err:  # already one "rapidmq: " line
        print(err, file=sys.stderr, flush=True)
        return 1
    except StorageError as err:
        text = " ".join(str(err).split())
        print(
            text if text.startswith("rapidmq: ") else f"rapidmq: {text}",
            file=sys.stderr,
            flush=True,
        )
        return 1
    # Logged once started, so that a refused start-up says one line only.
    for note in notes:
        log.info("%s", note)
    # Signals are watched before the ready line goes out, so a SIGTERM sent the
    # moment a supervisor sees the line still stops the broker gracefully.
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with anyio.create_task_group() as tg:
            await tg.start(server.serve)
            print(server.ready_line(), flush=True)
            log.info("%s", server.ready_line())
            async for signum in signals:
                log.info("received %s, shutting down", signal.Signals(signum).name)
                break
            await server.stop()
    log.info("stopped")
    return 0


def run(settings: Settings, notes: Sequence[str] = ()) -> int:
    """Run the broker until SIGTERM/SIGINT; returns the process exit code.

    Args:
        settings: what to run with.
        notes: lines about the configuration to log once the broker has started.
    """
    configure_logging(settings.log_level, settings.log_format)
    try:
        configure_audit_file(settings.audit_log)
    except OSError as err:
        print(
            f"rapidmq: cannot open the audit log {settings.audit_log}: "
            f"{err.strerror or err}; fix --audit-log",
            file=sys.stderr,
            flush=True,
        )
        return 1
    backend = settings.backend
    options: dict[str, Any] = {}
    if backend == "asyncio":
        try:
            import uvloop  # noqa: F401
        except ImportError:
            pass
        else:
            options["use_uvloop"] = True
    main: Callable[[Settings, Sequence[str]], Awaitable[int]] = _main
    try:
        return anyio.run(main, settings, notes, backend=backend, backend_options=options)
    except KeyboardInterrupt:
        return 0
