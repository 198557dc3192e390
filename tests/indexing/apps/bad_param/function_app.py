"""Fixture app: the parameter name does not match its binding name."""

import azure.functions as func

app = func.FunctionApp()


@app.route(route="ping", auth_level=func.AuthLevel.ANONYMOUS)
@app.queue_output(arg_name="outbox", queue_name="pings", connection="AzureWebJobsStorage")
def ping(req: func.HttpRequest, out: func.Out[str]) -> func.HttpResponse:
    out.set("ping")
    return func.HttpResponse("pong")
