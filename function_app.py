"""The Contoso Data Hub Functions app: creates the app and registers the blueprints."""

import azure.functions as func

from blueprints import (
    archive,
    dashboard,
    forecasts,
    lake_jobs,
    operations,
    pricing,
    quotes,
    reconcile,
    sap_batches,
    urgent_orders,
)

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(operations.bp)
app.register_functions(quotes.bp)
app.register_functions(pricing.bp)
app.register_functions(forecasts.bp)
app.register_functions(archive.bp)
app.register_functions(lake_jobs.bp)
app.register_functions(urgent_orders.bp)
app.register_functions(reconcile.bp)
app.register_functions(sap_batches.bp)
app.register_functions(dashboard.bp)
