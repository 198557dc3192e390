"""The Contoso Data Hub Functions app: creates the app and registers the blueprints."""

import azure.functions as func

from blueprints import archive, forecasts, lake_jobs, operations, pricing, quotes

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(operations.bp)
app.register_functions(quotes.bp)
app.register_functions(pricing.bp)
app.register_functions(forecasts.bp)
app.register_functions(archive.bp)
app.register_functions(lake_jobs.bp)
