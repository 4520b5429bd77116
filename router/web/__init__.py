"""The ``--http`` endpoints and the operator's console, on Starlette.

``app.make_app`` builds the application from plain callables (``router.web.providers``);
``router.runtime.http`` serves it on uvicorn in the router's event loop, and
``serve`` wires it to a ``RouterService`` or runs it alone
(``mcp-router console``).  ``static/htmx.min.js`` is htmx 2.0.11 from the npm
registry (``npm pack htmx.org@2.0.11``), under its Zero-Clause BSD licence
(``static/htmx.LICENSE``).
"""
