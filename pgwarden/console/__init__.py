"""The web console: sign-in through the configured OIDC issuer, sessions and their replay with
a verify badge, the approvals queue, and the policy with an "explain this statement" box.

Server-rendered (Jinja2) pages under ``/console`` of the API's address; every asset is served
from this package. ``console_router(...)`` builds the routes; ``console_for(server)`` wires them
to a running gateway. See ``routes.py`` for the pages and ``auth.py`` for signing in.
"""

from pgwarden.console.routes import console_for, console_router

__all__ = ["console_for", "console_router"]
