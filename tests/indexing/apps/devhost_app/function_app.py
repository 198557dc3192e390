"""Fixture app for the dev HTTP adapter: route templates, methods, auth levels, an output."""

import json

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


def _echo(req: func.HttpRequest) -> func.HttpResponse:
    body = {
        "method": req.method,
        "route": dict(req.route_params),
        "params": dict(req.params),
        "body": req.get_body().decode(),
    }
    return func.HttpResponse(json.dumps(body), mimetype="application/json")


@app.route(route="items/{id:int}", methods=["GET", "PUT"])
def item(req: func.HttpRequest) -> func.HttpResponse:
    return _echo(req)


@app.route(route="items/special", methods=["GET"])
def special(req: func.HttpRequest) -> func.HttpResponse:
    return _echo(req)


@app.route(
    route="things/{name}/parts/{part?}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS
)
def parts(req: func.HttpRequest) -> func.HttpResponse:
    return _echo(req)


@app.route(route="admin/ping", methods=["POST"], auth_level=func.AuthLevel.ADMIN)
def admin(req: func.HttpRequest) -> func.HttpResponse:
    return _echo(req)


@app.route(route="send", methods=["POST"])
@app.service_bus_queue_output(
    arg_name="msg", queue_name="outbox", connection="ServiceBusConnection"
)
def send(req: func.HttpRequest, msg: func.Out[str]) -> func.HttpResponse:
    msg.set(req.get_body().decode())
    return func.HttpResponse(status_code=202)


@app.route(route="boom", methods=["GET"])
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("unhandled")
