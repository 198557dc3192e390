"""Fixture app: a Service Bus trigger whose connection setting does not exist."""

import azure.functions as func

app = func.FunctionApp()


@app.service_bus_queue_trigger(arg_name="msg", queue_name="orders", connection="OrdersBus")
def on_order(msg: func.ServiceBusMessage) -> None:
    return None
