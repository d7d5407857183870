"""Just-in-time approval of single held statements: the control plane.

The data path holds a statement and asks ``ApprovalService.request(...)``; approvers decide
through the HTTP API (``pgwarden.api.approvals``) or the CLI (``pgwarden approvals``); webhooks
(``notify``) tell them a request is waiting. See ``service.py`` for the rules.
"""

from pgwarden.approvals.binding import jsonable_params, statement_hash
from pgwarden.approvals.errors import ApprovalError
from pgwarden.approvals.notify import Notifier, verify_signature
from pgwarden.approvals.render import approval_json
from pgwarden.approvals.rules import is_approver, may_view, same_person
from pgwarden.approvals.service import ApprovalService, Outcome, PendingApproval
from pgwarden.store.base import ApprovalRecord, ApprovalState

__all__ = [
    "ApprovalError",
    "ApprovalRecord",
    "ApprovalService",
    "ApprovalState",
    "Notifier",
    "Outcome",
    "PendingApproval",
    "approval_json",
    "is_approver",
    "jsonable_params",
    "may_view",
    "same_person",
    "statement_hash",
    "verify_signature",
]
