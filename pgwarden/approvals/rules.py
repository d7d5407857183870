"""Who may do what with an approval.

- Deciding (approve or deny) needs membership of one of ``approvals.approvers`` (group names
  compare exactly, case-sensitive: a group named ``DBA`` is not ``dba``).
- Nobody decides on their own statement: not approve, and not deny either (a requester who
  changed their mind cancels the statement, which withdraws the request). "Own" is judged
  fail-closed: subjects are compared after Unicode NFKC normalisation, removal of invisible
  format characters, trimming and case folding, and whatever the issuer, so ``Agent-7``
  from another identity provider cannot approve ``agent-7``'s statement. The same comparison
  counts distinct approvers for ``min_approvals``: ``bob`` and ``BOB`` are one vote.
- Seeing an approval (API list/get): approvers see all; anyone else only the requests whose
  requester is exactly their subject.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from pgwarden.auth.identity import Identity
from pgwarden.store.base import ApprovalRecord

__all__ = ["is_approver", "may_view", "same_person", "subject_key"]


def subject_key(subject: str) -> str:
    """The form two subjects are compared in to decide whether they are the same person."""
    text = unicodedata.normalize("NFKC", subject)
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    return text.strip().casefold()


def same_person(a: str, b: str) -> bool:
    return subject_key(a) == subject_key(b)


def is_approver(who: Identity, approvers: Iterable[str]) -> bool:
    allowed = set(approvers)
    return any(group in allowed for group in who.groups)


def may_view(who: Identity, record: ApprovalRecord, approvers: Iterable[str]) -> bool:
    return is_approver(who, approvers) or record.requester == who.subject
