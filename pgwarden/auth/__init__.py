"""Token identity: who is connecting, proven by a JWT from the local or a trusted OIDC issuer."""

from .identity import AuthError, Identity
from .local_issuer import LocalIssuer
from .oidc import OidcIssuer, OidcIssuerConfig
from .verifier import TokenVerifier

__all__ = [
    "AuthError",
    "Identity",
    "LocalIssuer",
    "OidcIssuer",
    "OidcIssuerConfig",
    "TokenVerifier",
]
