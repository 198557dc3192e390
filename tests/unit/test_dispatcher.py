"""The local Service Bus dispatcher (sandbox.dispatcher).

Contract tests cite the Service Bus behaviour they reproduce:
- [DLQ] MicrosoftDocs/azure-docs articles/service-bus-messaging/service-bus-dead-letter-queues.md
  (MaxDeliveryCountExceeded after the delivery count exceeds the limit, default 10;
  TTLExpiredException when dead-lettering on expiration; the DLQ is never cleaned automatically)
- [DUP] .../duplicate-detection.md (a duplicate send is accepted and the message dropped;
  window default 10 minutes)
- [SES] .../message-sessions.md (FIFO per session) and Azure/azure-service-bus#289 (the broker's
  error for a message without SessionId on a session-enabled entity); azure-servicebus
  ServiceBusMessage.session_id docstring ("For non-sessionful entities, this value is ignored")
- [OUT] MicrosoftDocs/azure-docs#71245 (output bindings are not invoked when a function fails)
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading

import azure.functions as func
import pytest
from azure.functions.servicebus import ServiceBusMessage
from azure.servicebus.exceptions import (
    MessageSizeExceededError,
    MessagingEntityNotFoundError,
    ServiceBusError,
)

from sandbox.dispatcher import (
    MAX_DELIVERY_COUNT_EXCEEDED,
    TTL_EXPIRED,
    Dispatcher,
    QueueBinding,
)
from shared.log import register_secret

pytestmark = pytest.mark.unit

T0 = 1_780_000_000.0


class Clock:
    """A settable clock for windows and expiry."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Recorder:
    """A handler that records deliveries and fails on demand (by message id and attempt)."""

    def __init__(self, fail: dict[str, int] | None = None, always_fail: bool = False) -> None:
        self.fail = fail or {}
        self.always_fail = always_fail
        self.seen: list[ServiceBusMessage] = []

    def __call__(self, message: ServiceBusMessage) -> None:
        self.seen.append(message)
        if self.always_fail or message.delivery_count <= self.fail.get(message.message_id, 0):
            raise RuntimeError(f"cannot process {message.message_id}")

    @property
    def ids(self) -> list[str]:
        return [m.message_id for m in self.seen]


def test_handler_gets_a_real_servicebus_message_with_broker_properties():
    # Given a queue and a message with properties
    clock, handler = Clock(), Recorder()
    dispatcher = Dispatcher([QueueBinding("quotes", handler)], clock=clock)
    dispatcher.send(
        "quotes",
        '{"quoteId": "Q1"}',
        message_id="Q1.0",
        application_properties={"kind": "quote", "revision": 0},
        correlation_id="corr-1",
    )
    # When it is delivered
    stats = dispatcher.run_until_idle()
    # Then the handler got the azure.functions type the worker builds, with the broker's values
    (message,) = handler.seen
    assert isinstance(message, ServiceBusMessage) and isinstance(message, func.ServiceBusMessage)
    assert json.loads(message.get_body()) == {"quoteId": "Q1"}
    assert message.message_id == "Q1.0"
    assert message.delivery_count == 1 and message.sequence_number == 1
    assert message.content_type == "application/json" and message.correlation_id == "corr-1"
    assert message.application_properties == {"kind": "quote", "revision": 0}
    assert message.user_properties == {"kind": "quote", "revision": 0}
    assert message.enqueued_time_utc == dt.datetime.fromtimestamp(T0, dt.UTC)
    assert message.lock_token and message.locked_until > message.enqueued_time_utc
    assert message.metadata["DeliveryCount"] == 1 and message.metadata["MessageId"] == "Q1.0"
    assert (dispatcher.stats.sent, stats.deliveries, stats.completed) == (1, 1, 1)
    assert dispatcher.pending("quotes") == 0


def test_failing_handler_is_redelivered_then_dead_lettered_with_max_delivery_count_exceeded():
    # Given a handler that always fails, with a secret in its error text  [DLQ]
    register_secret("s3cr3t-value-42")
    handler = Recorder(always_fail=True)

    def failing(message):
        handler.seen.append(message)
        raise RuntimeError("backend said no; client_secret=s3cr3t-value-42")

    dispatcher = Dispatcher([QueueBinding("q", failing)])
    dispatcher.send("q", "x", message_id="m1")
    # When the dispatcher runs
    stats = dispatcher.run_until_idle()
    # Then the message was delivered max_delivery_count (10) times with a growing count
    assert [m.delivery_count for m in handler.seen] == list(range(1, 11))
    assert len({m.lock_token for m in handler.seen}) == 10
    # And it sits in the dead-letter queue with the documented reason and a redacted, one-line
    # description (no traceback, no secret)
    (dead,) = dispatcher.dead_letters("q")
    assert dead.reason == MAX_DELIVERY_COUNT_EXCEEDED == "MaxDeliveryCountExceeded"
    assert dead.delivery_count == 10
    assert dead.description.startswith("RuntimeError: backend said no")
    assert "s3cr3t-value-42" not in dead.description and "Traceback" not in dead.description
    assert dead.message.dead_letter_reason == "MaxDeliveryCountExceeded"
    assert dead.message.message_id == "m1" and dead.message.get_body() == b"x"
    assert (stats.deliveries, stats.abandoned, stats.dead_lettered) == (10, 9, 1)
    assert dispatcher.pending("q") == 0


def test_handler_that_recovers_completes_on_a_later_delivery_and_max_count_is_per_queue():
    # Given a handler failing the first two deliveries, and a queue with max delivery count 2
    recovering, strict = Recorder(fail={"a": 2}), Recorder(fail={"b": 2})
    dispatcher = Dispatcher(
        [QueueBinding("q1", recovering), QueueBinding("q2", strict, max_delivery_count=2)]
    )
    dispatcher.send("q1", "1", message_id="a")
    dispatcher.send("q2", "2", message_id="b")
    # When delivered
    dispatcher.run_until_idle()
    # Then the first completes on its third delivery; the second is dead-lettered after two
    assert [m.delivery_count for m in recovering.seen] == [1, 2, 3]
    assert dispatcher.dead_letters("q1") == []
    assert [d.delivery_count for d in dispatcher.dead_letters("q2")] == [2]


def test_session_queue_refuses_a_message_without_session_id():
    # [SES] the broker's answer to a session-less message on a session-enabled entity
    dispatcher = Dispatcher([QueueBinding("urgent", Recorder(), sessions=True)])
    with pytest.raises(ServiceBusError, match="The SessionId was not set on a message"):
        dispatcher.send("urgent", "x")
    assert dispatcher.stats.sent == 0


def test_session_id_on_a_queue_without_sessions_is_kept_but_does_not_order():
    # [SES] "For non-sessionful entities, this value is ignored"
    handler = Recorder(fail={"s1-a": 1})
    dispatcher = Dispatcher([QueueBinding("plain", handler)])
    dispatcher.send("plain", "1", message_id="s1-a", session_id="S1")
    dispatcher.send("plain", "2", message_id="s2-a", session_id="S2")
    dispatcher.run_until_idle()
    assert handler.seen[0].session_id == "S1"
    assert handler.ids == ["s1-a", "s1-a", "s2-a"]


def test_sessions_deliver_strictly_in_order_under_interleaving_and_failures():
    # Given two sessions sent interleaved; A1 fails once, B2 twice, A3 is poison (dead-letters)
    handler = Recorder(fail={"A1": 1, "B2": 2, "A3": 99})
    dispatcher = Dispatcher([QueueBinding("s", handler, sessions=True, max_delivery_count=3)])
    for message_id in ("A1", "B1", "A2", "B2", "A3", "B3", "A4"):
        dispatcher.send("s", message_id, message_id=message_id, session_id=message_id[0])
    # When delivered
    dispatcher.run_until_idle()
    # Then each session saw its messages in send order, a message only after the previous one
    # was completed or dead-lettered (retries come before the next message of the session)
    by_session = {"A": [], "B": []}
    for message in handler.seen:
        by_session[message.session_id].append(message.message_id)
    assert by_session["A"] == ["A1", "A1", "A2", "A3", "A3", "A3", "A4"]
    assert by_session["B"] == ["B1", "B2", "B2", "B2", "B3"]
    assert [d.message.message_id for d in dispatcher.dead_letters("s")] == ["A3"]
    # And the order across sessions is deterministic: the same run gives the same sequence
    again = Recorder(fail={"A1": 1, "B2": 2, "A3": 99})
    replay = Dispatcher([QueueBinding("s", again, sessions=True, max_delivery_count=3)])
    for message_id in ("A1", "B1", "A2", "B2", "A3", "B3", "A4"):
        replay.send("s", message_id, message_id=message_id, session_id=message_id[0])
    replay.run_until_idle()
    assert again.ids == handler.ids


def test_duplicate_message_id_within_the_window_is_dropped_and_accepted_after_it():
    # [DUP] a duplicate send "succeeds" and is dropped; ids are remembered after delivery too
    clock, handler = Clock(), Recorder()
    dispatcher = Dispatcher([QueueBinding("q", handler)], duplicate_window_seconds=600, clock=clock)
    assert dispatcher.send("q", "first", message_id="Q1|3") is True
    assert dispatcher.send("q", "second", message_id="Q1|3") is False
    dispatcher.run_until_idle()
    clock.now += 599
    assert dispatcher.send("q", "third", message_id="Q1|3") is False
    clock.now += 2
    assert dispatcher.send("q", "fourth", message_id="Q1|3") is True
    dispatcher.run_until_idle()
    # Then only the first and the one after the window were delivered
    assert [m.get_body() for m in handler.seen] == [b"first", b"fourth"]
    assert dispatcher.stats.duplicates == 2


def test_messages_without_an_id_get_distinct_ids_and_are_never_duplicates():
    handler = Recorder()
    dispatcher = Dispatcher([QueueBinding("q", handler)])
    assert dispatcher.send("q", "a") and dispatcher.send("q", "a")
    dispatcher.run_until_idle()
    assert len(set(handler.ids)) == 2


def test_output_binding_and_direct_sends_chain_within_one_run():
    # Given quotes -> dataverse (output binding) -> audit (direct SDK-style send)
    audit = Recorder()
    wiring = {}

    def quotes(message):
        wiring["to_dataverse"].set({"quote": message.get_body().decode()})

    def dataverse(message):
        wiring["dispatcher"].send("audit", message.get_body(), message_id=f"a-{message.message_id}")

    dispatcher = Dispatcher(
        [
            QueueBinding("quotes", quotes),
            QueueBinding("dataverse", dataverse),
            QueueBinding("audit", audit),
        ]
    )
    wiring.update(dispatcher=dispatcher, to_dataverse=dispatcher.output("dataverse"))
    dispatcher.send("quotes", "Q1")
    dispatcher.send("quotes", "Q2")
    # When the dispatcher runs until idle
    stats = dispatcher.run_until_idle()
    # Then messages sent during delivery were delivered in the same run
    assert [json.loads(m.get_body()) for m in audit.seen] == [{"quote": "Q1"}, {"quote": "Q2"}]
    assert (stats.sent, stats.completed, dispatcher.stats.sent) == (4, 6, 6)
    assert all(dispatcher.pending(q) == 0 for q in dispatcher.queues)


def test_output_binding_values_are_sent_only_when_the_function_succeeds():
    # [OUT] a failed invocation sends nothing through its output bindings; an SDK send is
    # immediate and not taken back
    sink, direct = Recorder(), Recorder()
    wiring = {}

    def flaky(message):
        wiring["out"].set([f"via-binding-{message.delivery_count}"])
        wiring["dispatcher"].send("direct", f"via-sdk-{message.delivery_count}")
        if message.delivery_count == 1:
            raise RuntimeError("first attempt fails")

    dispatcher = Dispatcher(
        [QueueBinding("in", flaky), QueueBinding("sink", sink), QueueBinding("direct", direct)]
    )
    wiring.update(dispatcher=dispatcher, out=dispatcher.output("sink"))
    # When the function fails once, then succeeds
    dispatcher.send("in", "go")
    dispatcher.run_until_idle()
    # Then only the successful attempt's binding output went out; both direct sends did
    assert [m.get_body() for m in sink.seen] == [b"via-binding-2"]
    assert [m.get_body() for m in direct.seen] == [b"via-sdk-1", b"via-sdk-2"]


def test_output_binding_outside_a_delivery_sends_at_once():
    sink = Recorder()
    dispatcher = Dispatcher([QueueBinding("sink", sink)])
    dispatcher.output("sink").set("from an HTTP function")
    assert dispatcher.pending("sink") == 1


def test_unknown_queue_is_messaging_entity_not_found():
    dispatcher = Dispatcher([QueueBinding("q", Recorder())])
    with pytest.raises(MessagingEntityNotFoundError, match="nope"):
        dispatcher.send("nope", "x")
    with pytest.raises(MessagingEntityNotFoundError):
        dispatcher.output("nope")
    with pytest.raises(MessagingEntityNotFoundError):
        dispatcher.dead_letters("nope")


def test_expired_messages_are_dropped_or_dead_lettered_with_ttl_expired_exception():
    # [DLQ] expiring messages go to the DLQ only when dead-lettering on expiration is enabled
    clock, kept, dropped = Clock(), Recorder(), Recorder()
    dispatcher = Dispatcher(
        [QueueBinding("dlq", kept, dead_letter_on_expiration=True), QueueBinding("drop", dropped)],
        clock=clock,
    )
    dispatcher.send("dlq", "late", message_id="t1", time_to_live=5)
    dispatcher.send("drop", "late", message_id="t2", time_to_live=dt.timedelta(seconds=5))
    dispatcher.send("drop", "fresh", message_id="t3", time_to_live=60)
    clock.now += 10
    stats = dispatcher.run_until_idle()
    assert kept.seen == [] and dropped.ids == ["t3"]
    assert dropped.seen[0].time_to_live == dt.timedelta(seconds=60)
    (dead,) = dispatcher.dead_letters("dlq")
    assert dead.reason == TTL_EXPIRED == "TTLExpiredException" and dead.delivery_count == 0
    assert dispatcher.dead_letters("drop") == []
    assert (stats.expired, stats.dead_lettered, stats.completed) == (2, 1, 1)


def test_send_validates_size_ids_and_properties_like_the_sdk():
    dispatcher = Dispatcher([QueueBinding("q", Recorder())], max_message_size_bytes=1024)
    with pytest.raises(MessageSizeExceededError):
        dispatcher.send("q", b"x" * 2048)
    with pytest.raises(ValueError, match="message_id cannot be longer than 128"):
        dispatcher.send("q", "x", message_id="m" * 129)
    with pytest.raises(TypeError, match="not a Service Bus primitive"):
        dispatcher.send("q", "x", application_properties={"bad": {"nested": 1}})
    assert dispatcher.stats.sent == 0


def test_run_until_idle_honours_max_messages_and_delivers_across_queues_in_send_order():
    a, b = Recorder(), Recorder()
    dispatcher = Dispatcher([QueueBinding("a", a), QueueBinding("b", b)])
    for i in range(3):
        dispatcher.send("a", "x", message_id=f"a{i}")
        dispatcher.send("b", "x", message_id=f"b{i}")
    first = dispatcher.run_until_idle(max_messages=4)
    assert first.deliveries == 4 and a.ids == ["a0", "a1"] and b.ids == ["b0", "b1"]
    assert dispatcher.pending("a") == dispatcher.pending("b") == 1
    assert dispatcher.run_until_idle().deliveries == 2


def test_async_handlers_are_awaited():
    seen = []

    async def handler(message):
        await asyncio.sleep(0)
        seen.append(message.message_id)

    dispatcher = Dispatcher([QueueBinding("q", handler)])
    dispatcher.send("q", "x", message_id="async-1")
    assert dispatcher.run_until_idle().completed == 1 and seen == ["async-1"]


def test_background_thread_delivers_until_stopped():
    handler = Recorder()
    dispatcher = Dispatcher([QueueBinding("q", handler)])
    dispatcher.start()
    try:
        for i in range(5):
            dispatcher.send("q", str(i), message_id=f"m{i}")
        assert dispatcher.wait_until_idle(timeout=10)
        with pytest.raises(RuntimeError, match="background"):
            dispatcher.run_until_idle()
    finally:
        dispatcher.stop()
    assert handler.ids == [f"m{i}" for i in range(5)]
    dispatcher.send("q", "after", message_id="m5")
    assert dispatcher.run_until_idle().completed == 1


def test_dead_letters_stay_until_reset():
    dispatcher = Dispatcher([QueueBinding("q", Recorder(always_fail=True), max_delivery_count=1)])
    dispatcher.send("q", "x", message_id="d1")
    dispatcher.run_until_idle()
    dispatcher.run_until_idle()
    assert len(dispatcher.dead_letters("q")) == 1
    dispatcher.reset()
    assert dispatcher.dead_letters("q") == [] and dispatcher.stats.sent == 0
    assert dispatcher.send("q", "x", message_id="d1") is True  # remembered ids forgotten too


class Overlap:
    """A handler that blocks until ``width`` deliveries run at once (proving they overlap) and
    records, per session, how many of its messages were in flight together."""

    def __init__(self, width: int, fail: dict[str, int] | None = None) -> None:
        self.barrier = threading.Barrier(width, timeout=10)
        self.width = width
        self.fail = fail or {}
        self.lock = threading.Lock()
        self.running: dict[str | None, int] = {}
        self.most_per_session = 0
        self.seen: list[str] = []

    def __call__(self, message: ServiceBusMessage) -> None:
        with self.lock:
            self.seen.append(message.message_id)
            count = self.running.get(message.session_id, 0) + 1
            self.running[message.session_id] = count
            self.most_per_session = max(self.most_per_session, count)
            first_wave = len(self.seen) <= self.width
        try:
            if first_wave:
                self.barrier.wait()
            if message.delivery_count <= self.fail.get(message.message_id, 0):
                raise RuntimeError(f"cannot process {message.message_id}")
        finally:
            with self.lock:
                self.running[message.session_id] -= 1


def test_concurrent_delivery_overlaps_messages_without_sessions_and_loses_none():
    # Given 40 messages on a queue without sessions, two of them failing once
    handler = Overlap(width=4, fail={"m03": 1, "m17": 1})
    dispatcher = Dispatcher([QueueBinding("q", handler)])
    for n in range(40):
        dispatcher.send("q", f"n{n}", message_id=f"m{n:02d}")
    # When delivered four at a time
    stats = dispatcher.run_until_idle(concurrency=4)
    # Then four deliveries ran at once (the barrier would time out otherwise), every message
    # completed exactly once and the failed ones were redelivered
    assert stats.completed == 40 and stats.abandoned == 2 and stats.deliveries == 42
    assert sorted(set(handler.seen)) == [f"m{n:02d}" for n in range(40)]
    assert handler.seen.count("m03") == 2 and handler.seen.count("m17") == 2
    assert dispatcher.pending("q") == 0


def test_concurrent_delivery_keeps_each_session_in_order_and_one_at_a_time():
    # Given four sessions of five messages each, sent interleaved, one message failing twice
    handler = Overlap(width=4, fail={"C2": 2})
    dispatcher = Dispatcher([QueueBinding("s", handler, sessions=True)])
    for n in range(5):
        for session in "ABCD":
            dispatcher.send("s", f"{session}{n}", message_id=f"{session}{n}", session_id=session)
    # When delivered on four threads
    dispatcher.run_until_idle(concurrency=4)
    # Then the sessions overlapped, yet no session ever had two messages in flight, and each
    # session saw its messages in send order (a retry before the next message)
    assert handler.most_per_session == 1
    for session in "ABCD":
        order = [m for m in handler.seen if m[0] == session]
        expected = [f"{session}{n}" for n in range(5)]
        if session == "C":
            expected = ["C0", "C1", "C2", "C2", "C2", "C3", "C4"]
        assert order == expected


def test_concurrency_must_be_positive_and_cannot_count_max_messages():
    dispatcher = Dispatcher([QueueBinding("q", Recorder())])
    with pytest.raises(ValueError):
        dispatcher.run_until_idle(concurrency=0)
    with pytest.raises(ValueError):
        dispatcher.run_until_idle(3, concurrency=2)
