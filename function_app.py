"""The Contoso Data Hub Functions app: creates the app and registers the blueprints."""

import azure.functions as func

from blueprints import operations, quotes

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(operations.bp)
app.register_functions(quotes.bp)
