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
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc

from rapidmq.auth.users import UserStore
from rapidmq.config import Settings
from rapidmq.core.broker import Broker
from rapidmq.core.message_codec import MessageCodec
from rapidmq.core.persistence import Persistence
from rapidmq.protocols.amqp091.connection import AMQPConnection, AMQPSettings
from rapidmq.protocols.amqp091.properties import decode_properties, encode_properties
from rapidmq.protocols.mqtt.connection import MQTTConnection, MQTTSettings
from rapidmq.protocols.mqtt.state import MQTTState
from rapidmq.storage import open_stores
from rapidmq.storage.api import MessageStore, MetadataStore, StorageError
from rapidmq.transport.tcp import (
    ConnectionHandler,
    HandlerFactory,
    ListenError,
    SocketConnection,
    open_listener,
)
from rapidmq.transport.websocket import websocket_factory

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
        if settings.default_user:
            self.users.add_user(
                settings.default_user, settings.default_pass, tags=("administrator",)
            )
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
            connect_timeout_s=settings.handshake_timeout_s,
        )
        self.connections: set[SocketConnection] = set()
        self.ports: dict[str, int | None] = {
            "amqp": None,
            "mqtt": None,
            "mqtt_ws": None,
            "http": None,
        }
        self._listeners: list[tuple[anyio.abc.SocketListener, HandlerFactory]] = []
        self._recovered = ""
        self._stopping = False

    def _amqp_handler(self, peer: tuple[str, int], wake: Callable[[], None]) -> ConnectionHandler:
        return AMQPConnection(self.broker, self.users, self.amqp_settings, peer, wake)

    def _mqtt_handler(self, peer: tuple[str, int], wake: Callable[[], None]) -> ConnectionHandler:
        return MQTTConnection(
            self.broker, self.users, self.mqtt_state, self.mqtt_settings, peer, wake
        )

    async def _serve_listener(
        self, listener: anyio.abc.SocketListener, factory: HandlerFactory
    ) -> None:
        async with anyio.create_task_group() as tg:

            async def handle(stream: anyio.abc.SocketStream) -> None:
                if self._stopping:
                    await stream.aclose()
                    return
                conn = SocketConnection(stream, factory)
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

    async def _flush_messages(self) -> None:
        """The group commit: commit, sync in a worker thread, report the durable batch.

        It sleeps on an event while nothing is written, so an idle broker pays nothing.
        """
        persist = self.broker.persistence
        if persist is None:
            return
        store = persist.store
        written = anyio.Event()

        def wakeup() -> None:
            written.set()

        persist.wakeup = wakeup
        if persist.pending:
            written.set()
        try:
            while True:
                await written.wait()
                written = anyio.Event()  # writes from here on wake the next round
                persist.commit()
                durable = await anyio.to_thread.run_sync(store.sync)
                persist.durable(durable)
        finally:
            persist.wakeup = None

    def _open_storage(self) -> None:
        """Open the stores and rebuild vhosts, users and durable topology from them."""
        s = self.settings
        started = time.perf_counter()
        metadata, messages = open_stores(s.data_dir, s.storage)
        self.metadata, self.messages = metadata, messages
        try:
            codec = MessageCodec(encode_properties, decode_properties)
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
            # Like RabbitMQ's guest, the default user is made on a fresh store only.
            if not user_count and s.default_user:
                users.add_user(s.default_user, s.default_pass, tags=("administrator",))
        except BaseException:
            self._close_storage()
            raise
        self.broker = broker
        self.users = users
        self.mqtt_state = MQTTState(broker)
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        self._recovered = (
            f"recovered {counts['vhosts']} vhosts, {user_count} users, "
            f"{counts['exchanges']} exchanges, {counts['queues']} queues, "
            f"{counts['bindings']} bindings in {metadata_ms:.0f} ms; "
            f"recovered {recovered['messages']} messages in {recovered['queues']} queues "
            f"in {elapsed_ms - metadata_ms:.0f} ms"
        )

    def _close_storage(self) -> None:
        metadata, messages = self.metadata, self.messages
        self.metadata = self.messages = None
        try:
            if messages is not None:
                messages.close()
        finally:
            if metadata is not None:
                metadata.close()

    async def start(self) -> None:
        """Open the stores, then bind every configured listener.

        Raises:
            StorageError: the data dir cannot be used (one line naming the fix).
            ListenError: a listener cannot bind (one line).
        """
        self._stopped = anyio.Event()
        s = self.settings
        self._open_storage()
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
        try:
            for key, port, name, flag, factory in wanted:
                if port is None:
                    continue
                listener = await open_listener(s.bind, port, name=name, flag=flag)
                self._listeners.append((listener, factory))
                bound = int(listener.extra(anyio.abc.SocketAttribute.local_port))
                self.ports[key] = bound
                log.info("listening for %s on %s:%s", name, s.bind, bound)
        except ListenError:
            for listener, _factory in self._listeners:
                await listener.aclose()
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
                tg.start_soon(self._flush_messages)
                task_status.started()
                await self._stopped.wait()
                tg.cancel_scope.cancel()
        finally:
            self._close_storage()

    async def stop(self) -> None:
        """Stop accepting, close connections with 320 CONNECTION_FORCED, then return."""
        if self._stopping:
            return
        self._stopping = True
        for listener, _factory in self._listeners:
            await listener.aclose()
        for conn in list(self.connections):
            conn.shutdown()
        with anyio.move_on_after(SHUTDOWN_GRACE_S):
            while self.connections:
                await anyio.sleep(0.02)
        self._stopped.set()

    def ready_line(self) -> str:
        def show(port: int | None) -> str:
            return "off" if port is None else str(port)

        p = self.ports
        return f"rapidmq ready amqp={show(p['amqp'])} mqtt={show(p['mqtt'])} http={show(p['http'])}"

    _stopped: anyio.Event


async def _main(settings: Settings) -> int:
    server = Server(settings)
    try:
        await server.start()
    except ListenError as err:
        print(f"rapidmq: {err}", file=sys.stderr, flush=True)
        return 1
    except StorageError as err:
        text = " ".join(str(err).split())
        print(
            text if text.startswith("rapidmq: ") else f"rapidmq: {text}",
            file=sys.stderr,
            flush=True,
        )
        return 1
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


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def run(settings: Settings) -> int:
    """Run the broker until SIGTERM/SIGINT; returns the process exit code."""
    _configure_logging(settings.log_level)
    backend = settings.backend
    options: dict[str, Any] = {}
    if backend == "asyncio":
        try:
            import uvloop  # noqa: F401
        except ImportError:
            pass
        else:
            options["use_uvloop"] = True
    main: Callable[[Settings], Awaitable[int]] = _main
    try:
        return anyio.run(main, settings, backend=backend, backend_options=options)
    except KeyboardInterrupt:
        return 0
