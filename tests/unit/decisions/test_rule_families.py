"""Rule rows of one action: named fields, families in precedence order, total cap last."""

from __future__ import annotations

from nextbest.decisions.catalog import Catalog
from nextbest.decisions.policy import ContactCap, Policy
from nextbest.decisions.reasons import Reason
from nextbest.decisions.rule_families import channel_rows


def test_rows_come_in_precedence_order_with_the_total_cap_last(
    catalog: Catalog, policy: Policy
) -> None:
    # the total cap listed first in the file still comes after the channel cap
    caps = [ContactCap(channel="all", max_contacts=3), ContactCap(channel="email", max_contacts=1)]
    pol = policy.model_copy(update={"caps": caps})
    action = next(a for a in catalog.actions if "email" in a.channels and a.eligibility)
    rows = channel_rows([action], pol, "email", {})
    reasons = [r.fail_reason for r in rows]
    assert reasons.index(Reason.NO_CONSENT) < reasons.index(Reason.NOT_ELIGIBLE)
    assert reasons[-2:] == [Reason.CHANNEL_CAP, Reason.TOTAL_CAP]
    consent = rows[reasons.index(Reason.NO_CONSENT)]
    assert consent.feature == pol.consent_feature(action.id, action.purpose, "email")
    assert (consent.op, consent.threshold, consent.nan_reason) == ("lt", 0.5, Reason.NO_CONSENT)
    total = rows[-1]
    assert (total.feature, total.op, total.threshold) == ("contacts_total_7d", "ge", 3.0)
    assert total.fields["days"] == 7 and total.fields["action_id"] == action.id
    assert all(r.action == 0 for r in rows)
