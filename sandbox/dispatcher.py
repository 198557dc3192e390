"""An in-process stand-in for the Service Bus broker and the Functions Service Bus trigger.

It reproduces what the hub's Service Bus functions rely on (sources in docs/sandbox-dispatcher.md
and /work/shared/reference/protocols.md):

- peek-lock delivery with the Functions default ``autoCompleteMessages``: the handler returning
  completes the message; raising abandons it, which redelivers it with ``delivery_count + 1``;
  after ``max_delivery_count`` deliveries (default 10) it is dead-lettered with reason
  ``MaxDeliveryCountExceeded``;
- sessions: a session-enabled queue refuses a message without a session id (the broker's
  error text), and delivers one session strictly in order, the next message only after the
  previous one was completed or dead-lettered; on a queue without sessions a session id is
  kept on the message and otherwise ignored (as the SDK documents);
- duplicate detection on ``message_id`` within a time window: the duplicate send "succeeds"
  (here: returns ``False``) and the message is dropped;
- time to live: an expired message is dropped, or dead-lettered with ``TTLExpiredException``
  when the queue dead-letters on expiration;
- unknown queue: ``MessagingEntityNotFoundError``; oversize message: ``MessageSizeExceededError``;
- Functions output bindings (``Dispatcher.output(queue)``) are sent only when the function
  succeeds; messages sent with ``send()`` inside a handler go out at once, as an SDK client's do.

The handler receives a real ``azure.functions.ServiceBusMessage`` with the trigger metadata the
host supplies. By default delivery is one message at a time, deterministic: the lowest enqueue
order among the messages that may be delivered next, across all queues. ``run_until_idle(
concurrency=n)`` delivers ``n`` at once, as the host's ``maxConcurrentCalls`` does.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import heapq
import inspect
import itertools
import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import azure.functions as func
from azure.functions.meta import Datum
from azure.functions.servicebus import ServiceBusMessage
from azure.servicebus.exceptions import (
    MessageSizeExceededError,
    MessagingEntityNotFoundError,
    ServiceBusError,
)

from shared.log import redact

log = logging.getLogger(__name__)

DEFAULT_MAX_DELIVERY_COUNT = 10
DEFAULT_DUPLICATE_WINDOW_SECONDS = 600.0
STANDARD_MAX_MESSAGE_BYTES = 256 * 1024
"""Standard tier message size limit (Premium: 1 MB by default, up to 100 MB)."""
LOCK_DURATION_SECONDS = 60.0
MAX_ID_LENGTH = 128
"""The SDK refuses longer message and session ids (``MESSAGE_PROPERTY_MAX_LENGTH``)."""
MAX_DESCRIPTION_LENGTH = 1024
SESSION_REQUIRED = (
    "The SessionId was not set on a message, and it cannot be sent to the entity. Entities that "
    "have session support enabled can only receive messages that have the SessionId set to a "
    "valid value."
)
TTL_EXPIRED = "TTLExpiredException"
MAX_DELIVERY_COUNT_EXCEEDED = "MaxDeliveryCountExceeded"
_PRIMITIVES = (str, int, float, bool, type(None))


@dataclass
class QueueBinding:
    """A queue and the Service Bus-triggered function that consumes it."""

    queue: str
    handler: Callable[[func.ServiceBusMessage], Any]
    sessions: bool = False
    max_delivery_count: int = DEFAULT_MAX_DELIVERY_COUNT
    dead_letter_on_expiration: bool = False
    """Service Bus drops expired messages unless the entity dead-letters on expiration."""


@dataclass(frozen=True)
class DeadLetter:
    """A message in a queue's dead-letter sub-queue (``<queue>/$deadletterqueue``)."""

    message: func.ServiceBusMessage
    reason: str
    description: str
    delivery_count: int


@dataclass
class DispatchStats:
    """Counters of one ``run_until_idle`` call, or of the dispatcher's whole life."""

    sent: int = 0
    duplicates: int = 0
    deliveries: int = 0
    completed: int = 0
    abandoned: int = 0
    dead_lettered: int = 0
    expired: int = 0

    def minus(self, earlier: DispatchStats) -> DispatchStats:
        """The counts since ``earlier`` (a snapshot of the same dispatcher)."""
        return DispatchStats(
            **{f.name: getattr(self, f.name) - getattr(earlier, f.name) for f in fields(self)}
        )

    def copy(self) -> DispatchStats:
        """A snapshot."""
        return DispatchStats(**{f.name: getattr(self, f.name) for f in fields(self)})


@dataclass
class _Envelope:
    queue: str
    order: int
    sequence_number: int
    body: bytes
    message_id: str
    session_id: str | None
    application_properties: dict[str, Any]
    content_type: str | None
    correlation_id: str | None
    enqueued_at: float
    time_to_live: float | None
    delivery_count: int = 0

    @property
    def expires_at(self) -> float | None:
        return None if self.time_to_live is None else self.enqueued_at + self.time_to_live


@dataclass
class _Queue:
    binding: QueueBinding
    # One FIFO per session (key None on a queue without sessions: the queue is one FIFO).
    fifos: dict[str | None, deque[_Envelope]] = field(default_factory=dict)
    # Sessions with a message in flight: a session is delivered one message at a time.
    busy: set[str | None] = field(default_factory=set)
    in_flight: int = 0
    dead: list[DeadLetter] = field(default_factory=list)
    seen_ids: dict[str, float] = field(default_factory=dict)
    sequence: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def pending(self) -> int:
        return sum(len(fifo) for fifo in self.fifos.values()) + self.in_flight


class _Delivery(threading.local):
    """Output-binding values of the delivery running on this thread (None: not delivering)."""

    outputs: list[tuple[str, Any]] | None = None


class Output:
    """A Service Bus output binding (``func.Out``-compatible) bound to a queue.

    Inside a delivery, values are held and sent only if the function completes, as the Functions
    host does (output bindings are not invoked when the function fails). Outside a delivery
    (an HTTP or timer function) ``set`` sends at once. ``str``/``bytes`` are the body; a
    ``dict`` is sent as JSON; a ``list`` sends one message per item.
    """

    def __init__(self, dispatcher: Dispatcher, queue: str) -> None:
        dispatcher.binding(queue)  # unknown queue: fail at bind time, as the host would
        self._dispatcher = dispatcher
        self._queue = queue
        self._value: Any = None

    def set(self, val: Any) -> None:
        """Send ``val`` (after the running function completes, when inside a delivery)."""
        self._value = val
        self._dispatcher._output(self._queue, val)

    def get(self) -> Any:
        """The last value set."""
        return self._value


class Dispatcher:
    """The local Service Bus: queues, their triggers, redelivery, sessions and dead letters."""

    def __init__(
        self,
        bindings: Iterable[QueueBinding],
        *,
        duplicate_window_seconds: float = DEFAULT_DUPLICATE_WINDOW_SECONDS,
        clock: Callable[[], float] = time.time,
        max_message_size_bytes: int = STANDARD_MAX_MESSAGE_BYTES,
    ) -> None:
        self._queues: dict[str, _Queue] = {}
        for binding in bindings:
            if binding.queue in self._queues:
                raise ValueError(f"queue {binding.queue!r} is bound twice")
            if binding.max_delivery_count < 1:
                raise ValueError("max_delivery_count must be at least 1")
            self._queues[binding.queue] = _Queue(binding)
        if duplicate_window_seconds < 0:
            raise ValueError("duplicate_window_seconds must be >= 0")
        self._window = duplicate_window_seconds
        self._clock = clock
        self._max_bytes = max_message_size_bytes
        self._lock = threading.RLock()
        self._wakeup = threading.Condition(self._lock)
        self._ready: list[tuple[int, str, str | None]] = []  # heap of deliverable FIFO heads
        self._order = itertools.count()
        self._stats = DispatchStats()
        self._delivery = _Delivery()
        self._in_flight = 0
        self._thread: threading.Thread | None = None
        self._stopping = False

    # ---- sending --------------------------------------------------------------------------------
    def binding(self, queue: str) -> QueueBinding:
        """The binding of a queue; ``MessagingEntityNotFoundError`` for an unknown one."""
        return self._queue(queue).binding

    def send(
        self,
        queue: str,
        body: bytes | str,
        *,
        message_id: str | None = None,
        session_id: str | None = None,
        application_properties: Mapping[str, Any] | None = None,
        content_type: str | None = "application/json",
        correlation_id: str | None = None,
        time_to_live: float | dt.timedelta | None = None,
    ) -> bool:
        """Enqueue a message. Returns ``False`` when duplicate detection dropped it (Service Bus
        reports such a send as successful; the flag is for tests)."""
        state = self._queue(queue)
        payload = body.encode("utf-8") if isinstance(body, str) else bytes(body)
        for name, value in (("message_id", message_id), ("session_id", session_id)):
            if value is not None and len(value) > MAX_ID_LENGTH:
                raise ValueError(f"{name} cannot be longer than {MAX_ID_LENGTH} characters.")
        if state.binding.sessions and not session_id:
            raise ServiceBusError(SESSION_REQUIRED)
        properties = _check_properties(application_properties or {})
        size = len(payload) + len(json.dumps(properties, default=str))
        if size > self._max_bytes:
            raise MessageSizeExceededError(
                message=f"The message of {size} bytes exceeds the maximum size of "
                f"{self._max_bytes} bytes."
            )
        ttl = (
            time_to_live.total_seconds() if isinstance(time_to_live, dt.timedelta) else time_to_live
        )
        if ttl is not None and ttl <= 0:
            raise ValueError("time_to_live must be positive")
        # The SDK gives a message without an id a random one, which no duplicate can match.
        message_id = message_id or str(uuid.uuid4())
        with self._lock:
            now = self._clock()
            if self._is_duplicate(state, message_id, now):
                self._stats.duplicates += 1
                log.debug("duplicate message %s on %s dropped", message_id, queue)
                return False
            envelope = _Envelope(
                queue=queue,
                order=next(self._order),
                sequence_number=next(state.sequence),
                body=payload,
                message_id=message_id,
                session_id=session_id,
                application_properties=properties,
                content_type=content_type,
                correlation_id=correlation_id,
                enqueued_at=now,
                time_to_live=ttl,
            )
            key = session_id if state.binding.sessions else None
            fifo = state.fifos.setdefault(key, deque())
            fifo.append(envelope)
            if len(fifo) == 1 and key not in state.busy:
                heapq.heappush(self._ready, (envelope.order, queue, key))
            self._stats.sent += 1
            self._wakeup.notify_all()
        return True

    def output(self, queue: str) -> Output:
        """An output binding to ``queue`` (see ``Output``)."""
        return Output(self, queue)

    def _output(self, queue: str, value: Any) -> None:
        buffered = self._delivery.outputs
        if buffered is not None:
            buffered.append((queue, value))
        else:
            self._send_value(queue, value)

    def _send_value(self, queue: str, value: Any) -> None:
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, (str, bytes)):
                self.send(queue, item)
            else:
                self.send(queue, json.dumps(item))

    def _is_duplicate(self, state: _Queue, message_id: str, now: float) -> bool:
        seen = state.seen_ids
        # Ids are remembered in send order, so the expired ones are at the front.
        while seen:
            oldest_id, at = next(iter(seen.items()))
            if now - at < self._window:
                break
            del seen[oldest_id]
        if message_id in seen:
            return True
        if self._window > 0:
            seen[message_id] = now
        return False

    # ---- delivering -----------------------------------------------------------------------------
    def run_until_idle(
        self, max_messages: int | None = None, *, concurrency: int = 1
    ) -> DispatchStats:
        """Deliver until no message is left (including those the handlers sent), or
        ``max_messages`` deliveries were made. Returns this run's counters.

        ``concurrency`` > 1 delivers on that many threads at once, as the host does up to
        ``maxConcurrentCalls`` / ``maxConcurrentSessions``: one session is still delivered
        strictly in order, but messages without a session (and different sessions) overlap, so
        the order of outcomes is no longer deterministic."""
        if self._thread is not None:
            raise RuntimeError("the background delivery thread is running; stop() it first")
        if self._delivery.outputs is not None:
            raise RuntimeError("run_until_idle() called from inside a handler")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if concurrency > 1 and max_messages is not None:
            raise ValueError("max_messages needs concurrency=1 (it counts deliveries in order)")
        before = self.stats
        if concurrency > 1:
            self._deliver_concurrently(concurrency)
            return self.stats.minus(before)
        delivered = 0
        while max_messages is None or delivered < max_messages:
            outcome = self._deliver_next()
            if outcome is None:
                break
            delivered += outcome
        return self.stats.minus(before)

    def _deliver_concurrently(self, workers: int) -> None:
        errors: list[BaseException] = []

        def work() -> None:
            while True:
                with self._lock:
                    # Idle only when nothing is ready and nothing is in flight: a delivery in
                    # flight may still send messages or release its session's next one.
                    while not self._ready and self._in_flight and not errors:
                        self._wakeup.wait(0.1)
                    if not self._ready or errors:
                        self._wakeup.notify_all()
                        return
                try:
                    self._deliver_next()
                except BaseException as exc:  # a dispatcher fault, not a handler's: stop all
                    with self._lock:
                        errors.append(exc)
                        self._wakeup.notify_all()
                    return

        threads = [
            threading.Thread(target=work, name=f"servicebus-call-{n}", daemon=True)
            for n in range(workers)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]

    def _deliver_next(self) -> int | None:
        """Deliver (or expire) the next message. None: nothing to do; else deliveries made."""
        with self._lock:
            while True:
                if not self._ready:
                    return None
                order, queue, key = heapq.heappop(self._ready)
                state = self._queues[queue]
                fifo = state.fifos.get(key)
                if not fifo or fifo[0].order != order or key in state.busy:
                    continue  # a stale entry: that message was taken, or its session is busy
                envelope = fifo.popleft()
                if key is None:
                    # No session: the next message may go while this one is in flight.
                    self._push_head(state, key)
                else:
                    state.busy.add(key)
                expires = envelope.expires_at
                if expires is not None and self._clock() >= expires:
                    self._expire(state, envelope)
                    self._release(state, key)
                    return 0
                state.in_flight += 1
                self._in_flight += 1
                envelope.delivery_count += 1
                self._stats.deliveries += 1
                message = self._message(envelope, lock_token=str(uuid.uuid4()))
                break
        error = self._invoke(state.binding, message)
        with self._lock:
            state.in_flight -= 1
            self._in_flight -= 1
            if error is None:
                self._stats.completed += 1
            elif envelope.delivery_count >= state.binding.max_delivery_count:
                self._dead_letter(
                    state,
                    envelope,
                    MAX_DELIVERY_COUNT_EXCEEDED,
                    _describe(error),
                )
            else:
                self._stats.abandoned += 1
                # Abandon: the message is available again at once, ahead of its session's
                # later messages (it keeps its place and sequence number).
                state.fifos.setdefault(key, deque()).appendleft(envelope)
                if key is None:
                    self._push_head(state, key)
            self._release(state, key)
            self._wakeup.notify_all()
        return 1

    def _invoke(self, binding: QueueBinding, message: func.ServiceBusMessage) -> Exception | None:
        outputs: list[tuple[str, Any]] = []
        previous = self._delivery.outputs
        self._delivery.outputs = outputs
        try:
            result = binding.handler(message)
            if inspect.isawaitable(result):
                asyncio.run(_awaited(result))
        except Exception as exc:  # any failure of user code abandons the message
            log.warning(
                "handler for %s failed on message %s (delivery %s): %s",
                binding.queue,
                message.message_id,
                message.delivery_count,
                _describe(exc),
            )
            return exc
        finally:
            self._delivery.outputs = previous
        for queue, value in outputs:
            self._send_value(queue, value)
        return None

    def _release(self, state: _Queue, key: str | None) -> None:
        if key is None:
            return  # a queue without sessions keeps its head in the ready heap (_push_head)
        state.busy.discard(key)
        fifo = state.fifos.get(key)
        if fifo:
            self._push_head(state, key)
        elif fifo is not None:
            # Forget drained sessions so that a long run with many sessions stays small.
            del state.fifos[key]

    def _push_head(self, state: _Queue, key: str | None) -> None:
        fifo = state.fifos.get(key)
        if fifo:
            heapq.heappush(self._ready, (fifo[0].order, state.binding.queue, key))

    def _expire(self, state: _Queue, envelope: _Envelope) -> None:
        self._stats.expired += 1
        if state.binding.dead_letter_on_expiration:
            self._dead_letter(
                state, envelope, TTL_EXPIRED, "The message expired and was dead lettered."
            )
        else:
            log.debug("message %s on %s expired", envelope.message_id, envelope.queue)

    def _dead_letter(
        self, state: _Queue, envelope: _Envelope, reason: str, description: str
    ) -> None:
        self._stats.dead_lettered += 1
        message = self._message(envelope, lock_token=None, reason=reason, description=description)
        state.dead.append(DeadLetter(message, reason, description, envelope.delivery_count))
        log.info("message %s on %s dead-lettered: %s", envelope.message_id, envelope.queue, reason)

    def _message(
        self,
        envelope: _Envelope,
        *,
        lock_token: str | None,
        reason: str | None = None,
        description: str | None = None,
    ) -> func.ServiceBusMessage:
        enqueued = _utc(envelope.enqueued_at)
        expires = None if envelope.expires_at is None else _utc(envelope.expires_at)
        locked_until = _utc(self._clock() + LOCK_DURATION_SECONDS) if lock_token else None
        ttl = None if envelope.time_to_live is None else dt.timedelta(seconds=envelope.time_to_live)
        properties = dict(envelope.application_properties)
        # What the host passes to the worker as trigger metadata (the message's .metadata).
        metadata: dict[str, Datum] = {
            "MessageId": Datum(envelope.message_id, "string"),
            "SequenceNumber": Datum(envelope.sequence_number, "int"),
            "DeliveryCount": Datum(envelope.delivery_count, "int"),
            "EnqueuedTimeUtc": Datum(_iso(enqueued), "string"),
            "ApplicationProperties": Datum(json.dumps(properties, default=str), "json"),
            "UserProperties": Datum(json.dumps(properties, default=str), "json"),
        }
        optional = {
            "SessionId": envelope.session_id,
            "ContentType": envelope.content_type,
            "CorrelationId": envelope.correlation_id,
            "LockToken": lock_token,
            "ExpiresAtUtc": _iso(expires) if expires else None,
            "LockedUntil": _iso(locked_until) if locked_until else None,
            "DeadLetterReason": reason,
            "DeadLetterErrorDescription": description,
        }
        metadata.update({k: Datum(v, "string") for k, v in optional.items() if v is not None})
        return ServiceBusMessage(
            body=envelope.body,
            trigger_metadata=metadata,
            application_properties=properties,
            user_properties=dict(properties),
            content_type=envelope.content_type,
            correlation_id=envelope.correlation_id,
            dead_letter_reason=reason,
            dead_letter_error_description=description,
            delivery_count=envelope.delivery_count,
            enqueued_sequence_number=envelope.sequence_number,
            enqueued_time_utc=enqueued,
            expires_at_utc=expires,
            locked_until=locked_until,
            lock_token=lock_token,
            message_id=envelope.message_id,
            sequence_number=envelope.sequence_number,
            session_id=envelope.session_id,
            time_to_live=ttl,
            to=envelope.queue,
        )

    # ---- background delivery --------------------------------------------------------------------
    def start(self) -> None:
        """Deliver on a background thread (the long-running sandbox). Idempotent."""
        with self._lock:
            if self._thread is not None:
                return
            self._stopping = False
            self._thread = threading.Thread(
                target=self._loop, name="servicebus-dispatcher", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the background thread after the delivery in progress, if any."""
        with self._lock:
            thread = self._thread
            if thread is None:
                return
            self._stopping = True
            self._wakeup.notify_all()
        thread.join(timeout)
        with self._lock:
            self._thread = None

    def wait_until_idle(self, timeout: float = 10.0) -> bool:
        """With the background thread: wait until nothing is pending or in flight."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._ready or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._wakeup.wait(min(remaining, 0.05))
            return True

    def _loop(self) -> None:
        while True:
            with self._lock:
                if self._stopping:
                    return
            try:
                outcome = self._deliver_next()
            except Exception:  # the delivery thread must survive anything
                log.exception("dispatcher delivery failed")
                outcome = 0
            if outcome is None:
                with self._lock:
                    if not self._stopping:
                        # Wake up on a send, or periodically for time-to-live expiry.
                        self._wakeup.wait(0.1)

    # ---- inspection -----------------------------------------------------------------------------
    def pending(self, queue: str) -> int:
        """Messages in a queue not yet completed or dead-lettered (in flight included)."""
        with self._lock:
            return self._queue(queue).pending()

    def dead_letters(self, queue: str) -> list[DeadLetter]:
        """The queue's dead-letter sub-queue, oldest first (never cleaned automatically)."""
        with self._lock:
            return list(self._queue(queue).dead)

    @property
    def stats(self) -> DispatchStats:
        """Counters since the dispatcher was created (or reset)."""
        with self._lock:
            return self._stats.copy()

    @property
    def queues(self) -> list[str]:
        """The bound queue names."""
        return list(self._queues)

    def reset(self) -> None:
        """Forget every message, dead letter, remembered id and counter (test isolation)."""
        with self._lock:
            if self._in_flight:
                raise RuntimeError("cannot reset while a message is being delivered")
            for name, state in self._queues.items():
                self._queues[name] = _Queue(state.binding)
            self._ready.clear()
            self._stats = DispatchStats()

    def _queue(self, queue: str) -> _Queue:
        state = self._queues.get(queue)
        if state is None:
            raise MessagingEntityNotFoundError(
                message=f"The messaging entity '{queue}' could not be found."
            )
        return state


def _check_properties(properties: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in properties.items():
        if not isinstance(key, str):
            raise TypeError("application property names must be strings")
        if isinstance(value, dt.datetime):
            out[key] = value.isoformat()
        elif isinstance(value, uuid.UUID):
            out[key] = str(value)
        elif isinstance(value, _PRIMITIVES):
            out[key] = value
        else:
            raise TypeError(
                f"application property {key!r}: {type(value).__name__} is not a Service Bus "
                "primitive (str, int, float, bool, None, datetime, UUID)"
            )
    return out


def _describe(exc: BaseException) -> str:
    """An exception as a dead-letter description: its type and text, secrets redacted,
    truncated; never a traceback."""
    text = redact(str(exc)) or "(no message)"
    description = f"{type(exc).__name__}: {text}"
    if len(description) > MAX_DESCRIPTION_LENGTH:
        description = description[: MAX_DESCRIPTION_LENGTH - 1] + "…"
    return description


def _utc(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


def _iso(value: dt.datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def _awaited(awaitable: Any) -> Any:
    return await awaitable
