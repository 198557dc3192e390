"""Dead-letter tools on a real Service Bus namespace (azure-servicebus): list, inspect, resubmit.

A queue's dead-letter sub-queue (``<queue>/$deadletterqueue``) is read with a receiver opened
with ``sub_queue=ServiceBusSubQueue.DEAD_LETTER``. Listing and inspecting only *peek* (no lock,
nothing changes). Resubmitting receives the message in peek-lock mode, sends a copy to the
queue (body, message id, session id, properties), and completes the dead-lettered original only
after the send succeeded, so a failure in between leaves the message dead-lettered, never lost.
Dead-letter sub-queues are not session-enabled even when their queue is, so no session id is
needed to read them; the copy keeps the original session id, which a session queue requires.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from azure.core.credentials import TokenCredential
from azure.servicebus import (
    ServiceBusClient,
    ServiceBusMessage,
    ServiceBusReceivedMessage,
    ServiceBusReceiveMode,
    ServiceBusSubQueue,
)

log = logging.getLogger(__name__)

PEEK_BATCH = 100
RECEIVE_WAIT_SECONDS = 5.0
MAX_BODY_PREVIEW = 4096


@dataclass(frozen=True)
class DeadLetteredMessage:
    """What an operator needs to decide about a dead-lettered message."""

    sequence_number: int
    message_id: str | None
    session_id: str | None
    enqueued_at: dt.datetime | None
    delivery_count: int | None
    reason: str | None
    description: str | None
    body: str
    application_properties: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready view (for the CLI)."""
        return {
            "sequenceNumber": self.sequence_number,
            "messageId": self.message_id,
            "sessionId": self.session_id,
            "enqueuedAt": self.enqueued_at.isoformat() if self.enqueued_at else None,
            "deliveryCount": self.delivery_count,
            "reason": self.reason,
            "description": self.description,
            "body": self.body,
            "applicationProperties": self.application_properties,
        }


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _body(message: ServiceBusReceivedMessage) -> bytes:
    body = message.body
    if isinstance(body, (bytes, bytearray)):
        return bytes(body)
    # AMQP data bodies arrive as a generator of sections.
    return b"".join(bytes(section) for section in body)


def _describe(message: ServiceBusReceivedMessage) -> DeadLetteredMessage:
    return DeadLetteredMessage(
        sequence_number=int(message.sequence_number or 0),
        message_id=_text(message.message_id),
        session_id=_text(message.session_id),
        enqueued_at=message.enqueued_time_utc,
        delivery_count=message.delivery_count,
        reason=_text(message.dead_letter_reason),
        description=_text(message.dead_letter_error_description),
        body=_body(message)[:MAX_BODY_PREVIEW].decode("utf-8", "replace"),
        application_properties={
            str(_text(k)): (_text(v) if isinstance(v, bytes) else v)
            for k, v in (message.application_properties or {}).items()
        },
    )


class DeadLetters:
    """List, inspect and resubmit the dead letters of a namespace's queues."""

    def __init__(self, client_factory: Callable[[], ServiceBusClient]) -> None:
        self._factory = client_factory

    @classmethod
    def from_connection_string(cls, connection_string: str) -> DeadLetters:
        """For a connection string (``Endpoint=sb://…;SharedAccessKeyName=…``, or the emulator's)."""
        return cls(lambda: ServiceBusClient.from_connection_string(connection_string))

    @classmethod
    def from_namespace(cls, namespace: str, credential: TokenCredential) -> DeadLetters:
        """For a namespace (``<name>.servicebus.windows.net``) and an Entra credential."""
        return cls(lambda: ServiceBusClient(namespace, credential))

    @contextmanager
    def _client(self) -> Iterator[ServiceBusClient]:
        client = self._factory()
        try:
            yield client
        finally:
            client.close()

    def list_messages(self, queue: str, *, limit: int = PEEK_BATCH) -> list[DeadLetteredMessage]:
        """Up to ``limit`` dead-lettered messages of ``queue``, oldest first (peeked)."""
        found: list[DeadLetteredMessage] = []
        with (
            self._client() as client,
            client.get_queue_receiver(queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as receiver,
        ):
            next_sequence: int | None = None
            while len(found) < limit:
                batch = receiver.peek_messages(
                    max_message_count=min(PEEK_BATCH, limit - len(found)),
                    sequence_number=next_sequence or 0,
                )
                if not batch:
                    break
                found.extend(_describe(m) for m in batch)
                next_sequence = int(batch[-1].sequence_number or 0) + 1
        return found

    def show(self, queue: str, sequence_number: int) -> DeadLetteredMessage | None:
        """One dead-lettered message by its sequence number (peeked), or None."""
        with (
            self._client() as client,
            client.get_queue_receiver(queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as receiver,
        ):
            batch = receiver.peek_messages(max_message_count=1, sequence_number=sequence_number)
        if batch and int(batch[0].sequence_number or 0) == sequence_number:
            return _describe(batch[0])
        return None

    def resubmit(
        self, queue: str, *, message_ids: set[str] | None = None, limit: int = PEEK_BATCH
    ) -> list[str]:
        """Send dead-lettered messages back to ``queue`` (all, or those with ``message_ids``);
        returns the message ids resubmitted. Others received on the way are abandoned, which
        leaves them dead-lettered."""
        done: list[str] = []
        with (
            self._client() as client,
            client.get_queue_receiver(
                queue,
                sub_queue=ServiceBusSubQueue.DEAD_LETTER,
                receive_mode=ServiceBusReceiveMode.PEEK_LOCK,
                max_wait_time=RECEIVE_WAIT_SECONDS,
            ) as receiver,
            client.get_queue_sender(queue) as sender,
        ):
            while len(done) < limit:
                batch = receiver.receive_messages(
                    max_message_count=min(PEEK_BATCH, limit - len(done)),
                    max_wait_time=RECEIVE_WAIT_SECONDS,
                )
                if not batch:
                    break
                wanted = 0
                for message in batch:
                    message_id = _text(message.message_id) or ""
                    if message_ids is not None and message_id not in message_ids:
                        receiver.abandon_message(message)
                        continue
                    wanted += 1
                    sender.send_messages(
                        ServiceBusMessage(
                            _body(message),
                            message_id=message_id or None,
                            session_id=_text(message.session_id),
                            content_type=_text(message.content_type),
                            correlation_id=_text(message.correlation_id),
                            application_properties=dict(message.application_properties or {}),
                        )
                    )
                    receiver.complete_message(message)
                    done.append(message_id)
                    log.info("resubmitted dead-lettered message %s to %s", message_id, queue)
                if wanted == 0:
                    break
        return done
