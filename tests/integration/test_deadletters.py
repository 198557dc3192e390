"""Dead-letter tools against a real Service Bus namespace or the Service Bus emulator.

Runs only when ``SERVICEBUS_TEST_CONNECTION_STRING`` is set (a namespace or emulator connection
string) and its queue ``SERVICEBUS_TEST_QUEUE`` (default ``deadletter-tools-test``, without
sessions) exists. The local dispatcher's dead letters are NOT a substitute: they do not go
through azure-servicebus, AMQP, peek-lock or the ``$deadletterqueue`` sub-queue at all.
Facts used: receivers on ``sub_queue=ServiceBusSubQueue.DEAD_LETTER`` read
``<queue>/$deadletterqueue``; ``dead_letter_message`` sets reason and description; peek does
not lock (learn.microsoft.com/azure/service-bus-messaging/service-bus-dead-letter-queues,
azure-sdk-for-python sdk/servicebus/azure-servicebus/samples/sync_samples/receive_deadlettered_messages.py).
"""

from __future__ import annotations

import os
import uuid

import pytest

pytestmark = pytest.mark.integration

CONNECTION = os.environ.get("SERVICEBUS_TEST_CONNECTION_STRING", "")
QUEUE = os.environ.get("SERVICEBUS_TEST_QUEUE", "deadletter-tools-test")

if not CONNECTION:
    pytest.skip(
        "SERVICEBUS_TEST_CONNECTION_STRING is not set: the dead-letter tools need a real Service "
        "Bus namespace or the Service Bus emulator (the local dispatcher is not a substitute)",
        allow_module_level=True,
    )


def test_dead_lettered_message_is_listed_shown_and_resubmitted():
    from azure.servicebus import ServiceBusClient, ServiceBusMessage

    from shared.adapters.deadletters import DeadLetters

    tools = DeadLetters.from_connection_string(CONNECTION)
    message_id = f"dl-{uuid.uuid4()}"
    with ServiceBusClient.from_connection_string(CONNECTION) as client:
        # Given a message dead-lettered with a reason
        with client.get_queue_sender(QUEUE) as sender:
            sender.send_messages(ServiceBusMessage('{"probe": true}', message_id=message_id))
        with client.get_queue_receiver(QUEUE, max_wait_time=10) as receiver:
            for message in receiver.receive_messages(max_message_count=10, max_wait_time=10):
                if message.message_id == message_id:
                    receiver.dead_letter_message(
                        message, reason="probe", error_description="dead-lettered by the test"
                    )
                else:
                    receiver.abandon_message(message)
        # When the tools list and show it
        listed = [m for m in tools.list_messages(QUEUE) if m.message_id == message_id]
        assert len(listed) == 1 and listed[0].reason == "probe"
        shown = tools.show(QUEUE, listed[0].sequence_number)
        assert shown is not None and shown.body == '{"probe": true}'
        # And resubmit it
        assert tools.resubmit(QUEUE, message_ids={message_id}) == [message_id]
        # Then it is back on the queue and no longer dead-lettered
        assert not [m for m in tools.list_messages(QUEUE) if m.message_id == message_id]
        with client.get_queue_receiver(QUEUE, max_wait_time=10) as receiver:
            back = receiver.receive_messages(max_message_count=10, max_wait_time=10)
            assert message_id in {m.message_id for m in back}
            for message in back:
                receiver.complete_message(message)
