"""Who may do what in the HTTP API and the console, from the groups in the caller's token.

* auditor (``api.auditors``): list sessions, read their events and replays, verify them;
* approver (``approvals.approvers``): see and decide approval requests (never their own);
* admin (``api.admins``): everything an auditor sees, plus the policy page.

Anyone with a valid token may attach context to their own live session and see their own
approval requests. Group names match exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

from pgwarden.auth.identity import Identity
from pgwarden.config import Config


@dataclass(frozen=True, slots=True)
class Roles:
    auditor: bool
    approver: bool
    admin: bool

    @property
    def reads_sessions(self) -> bool:
        return self.auditor or self.admin


def roles_of(who: Identity, config: Config) -> Roles:
    groups = set(who.groups)
    admin = bool(groups & set(config.api.admins))
    return Roles(
        auditor=admin or bool(groups & set(config.api.auditors)),
        approver=bool(groups & set(config.approvals.approvers)),
        admin=admin,
    )
