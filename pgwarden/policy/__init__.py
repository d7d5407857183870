"""Policy: pure functions from (Classification, identity, target, estimate) to a Decision.

``load_policy(config_value)`` builds a Policy from the ``policy`` config key (``default`` or a
mapping, see ``pgwarden.policy.loader``); ``evaluate`` decides; ``needs_estimate`` says whether
a row estimate (blast radius) could change the decision; ``explain`` returns the decision and
why as JSON-able data. No I/O.
"""

from pgwarden.policy.engine import (
    EstimateInput,
    describe_operation,
    describe_statement,
    evaluate,
    explain,
    needs_estimate,
)
from pgwarden.policy.loader import default_policy, default_policy_text, load_policy, parse_policy
from pgwarden.policy.model import (
    ACTIONS,
    Action,
    Decision,
    Mode,
    Policy,
    PolicyError,
    PolicyIdentity,
    RowEstimate,
    Rule,
    When,
)

__all__ = [
    "ACTIONS",
    "Action",
    "Decision",
    "EstimateInput",
    "Mode",
    "Policy",
    "PolicyError",
    "PolicyIdentity",
    "RowEstimate",
    "Rule",
    "When",
    "default_policy",
    "default_policy_text",
    "describe_operation",
    "describe_statement",
    "evaluate",
    "explain",
    "load_policy",
    "needs_estimate",
    "parse_policy",
]
