"""Turns each tick's unprocessed inbox rows into Stripe runs over the affected workspaces:
up to the spec's `workspaces_per_run` workspaces per run, side by side among the workspace
partitions (a lone one gets a run of its own, held back by the run queue while another sync
of its connection runs; a grouped run's syncs wait for their connection's lock instead).

Rows are claimed by `processed_at IS NULL`, not by an id cursor, so an event whose
transaction commits after a higher id was processed is still picked up on the next tick;
claiming and marking happen in one transaction, so no row is replayed. A run's key holds the
highest inbox id of its workspaces: a retry of the same tick cannot launch it twice.

Each tick also deletes processed events older than KPI_WEBHOOK_INBOX_RETENTION_DAYS, at most
DELETED_PER_TICK of them (the oldest first), so the inbox stays bounded and no tick's work
grows with it.
"""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
import sqlalchemy as sa

from kpi_pipelines import settings
from kpi_pipelines.automation.partitions import provider_partitions, workspace_groups
from kpi_pipelines.automation.pools import run_target
from kpi_pipelines.integrations.shared.spec import ProviderSpec, provider_sensor
from kpi_pipelines.resources import WarehouseResource
from kpi_pipelines.warehouse.inbox import delete_processed

# How often the sensor claims new events: at every look of Dagster's sensor daemon (every
# 5 s), since an event's KPIs wait for it; an idle tick is one indexed query. Not 5: the
# daemon skips a sensor whose interval has not fully passed since its last tick, and with
# its own 5-second loop a 5-second sensor ran every 10 s as often as not.
WEBHOOK_SENSOR_SECONDS = 1
# Processed events past their retention deleted per tick: a tick every 5 s clears 720,000
# an hour, far more than Stripe sends.
DELETED_PER_TICK = 1000

CLAIM = """
WITH claimed AS (
    SELECT id, workspace_id FROM webhook_inbox
    WHERE provider = 'stripe' AND processed_at IS NULL
    ORDER BY id
    FOR UPDATE SKIP LOCKED
), per_workspace AS (
    SELECT workspace_id, max(id) AS last_id, count(*) AS events FROM claimed GROUP BY workspace_id
)
UPDATE webhook_inbox i
SET processed_at = now(), run_key = 'stripe-webhook:' || p.workspace_id || ':' || p.last_id
FROM claimed c JOIN per_workspace p USING (workspace_id)
WHERE i.id = c.id
RETURNING i.workspace_id, i.run_key, p.events
"""


def webhook_inbox_sensor(
    spec: ProviderSpec, job: dg.UnresolvedAssetJobDefinition
) -> dg.SensorDefinition:
    """The sensor that launches a Stripe run for every workspace with new inbox events."""

    @provider_sensor(
        name="stripe_webhook_sensor",
        description=(
            "Stripe syncs of the workspaces that received webhook events since the last tick,"
            " several workspaces per run."
        ),
        job=job,
        every=WEBHOOK_SENSOR_SECONDS,
    )
    def stripe_webhook_sensor(
        context: dg.SensorEvaluationContext, warehouse: WarehouseResource
    ) -> dg.SensorResult | dg.SkipReason:
        partitions = provider_partitions(spec.key)
        known = context.instance.get_dynamic_partitions(partitions.name)
        most = settings.workspaces_per_run(spec.workspaces_per_run)
        with warehouse.get().control() as db:
            claimed = {
                row.workspace_id: (row.run_key, row.events) for row in db.execute(sa.text(CLAIM))
            }
            # A connection added since the partition sensor's last tick gets its partition
            # now, in the same result (after the others), rather than its events waiting.
            missing = sorted(set(claimed) - set(known))
            groups = workspace_groups([*known, *missing], claimed, most)
            requests = [_run_request(spec, group, claimed) for group in groups]
            for request, group in zip(requests, groups, strict=True):
                if len(group) > 1:  # the inbox names the run that took each event
                    db.execute(
                        sa.text(
                            # now(): the claim's, in this transaction (indexed)
                            "UPDATE webhook_inbox SET run_key = :key"
                            " WHERE provider = 'stripe' AND processed_at = now()"
                            " AND run_key = ANY(:claimed)"
                        ),
                        {"key": request.run_key, "claimed": [claimed[w][0] for w in group]},
                    )
        deleted = delete_processed(
            warehouse.get(),
            "stripe",
            older_than=timedelta(days=settings.webhook_inbox_retention_days()),
            limit=DELETED_PER_TICK,
        )
        if deleted:
            context.log.info(f"deleted {deleted} processed Stripe webhook event(s) past retention")
        if not requests:
            return dg.SkipReason("no unprocessed Stripe webhook events")
        return dg.SensorResult(
            run_requests=requests,
            dynamic_partitions_requests=[partitions.build_add_request(missing)] if missing else [],
        )

    return stripe_webhook_sensor


def _run_request(
    spec: ProviderSpec, group: list[str], claimed: dict[str, tuple[str, int]]
) -> dg.RunRequest:
    """The run over `group`'s workspaces; `claimed`: each one's run key and event count."""
    events = sum(claimed[workspace_id][1] for workspace_id in group)
    if len(group) == 1:
        run_key = claimed[group[0]][0]
    else:  # every id claimed in a tick is new, so the highest keeps the key unique
        last_id = max(int(claimed[w][0].rsplit(":", 1)[1]) for w in group)
        run_key = f"stripe-webhook:{group[0]}..{group[-1]}:{last_id}"
    target = run_target(spec.key, group)
    return dg.RunRequest(
        run_key=run_key,
        partition_key=target.partition_key,
        tags={"kpi/trigger": "stripe-webhook", "kpi/events": str(events), **target.tags},
    )
