"""Turns each tick's unprocessed inbox rows into one Stripe run per affected workspace.

Rows are claimed by `processed_at IS NULL`, not by an id cursor, so an event whose
transaction commits after a higher id was processed is still picked up on the next tick;
claiming and marking happen in one transaction, so no row is replayed. The run key is the
highest inbox id the run covers: a retry of the same tick cannot launch it twice.

Each tick also deletes processed events older than KPI_WEBHOOK_INBOX_RETENTION_DAYS, at most
DELETED_PER_TICK of them (the oldest first), so the inbox stays bounded and no tick's work
grows with it.
"""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
import sqlalchemy as sa

from kpi_pipelines import settings
from kpi_pipelines.automation.partitions import workspace_partitions
from kpi_pipelines.automation.pools import connection_tags
from kpi_pipelines.integrations.shared.spec import ProviderSpec, provider_sensor
from kpi_pipelines.resources import WarehouseResource
from kpi_pipelines.warehouse.inbox import delete_processed

# Processed events past their retention deleted per tick: a tick every 15 s clears
# 240,000 an hour, far more than Stripe sends.
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
        description="One Stripe sync per workspace that received webhook events since the last tick.",
        job=job,
    )
    def stripe_webhook_sensor(
        context: dg.SensorEvaluationContext, warehouse: WarehouseResource
    ) -> dg.SensorResult | dg.SkipReason:
        with warehouse.get().control() as db:
            rows = db.execute(sa.text(CLAIM)).all()
        deleted = delete_processed(
            warehouse.get(),
            "stripe",
            older_than=timedelta(days=settings.webhook_inbox_retention_days()),
            limit=DELETED_PER_TICK,
        )
        if deleted:
            context.log.info(f"deleted {deleted} processed Stripe webhook event(s) past retention")
        runs = {(row.workspace_id, row.run_key): row.events for row in rows}
        if not runs:
            return dg.SkipReason("no unprocessed Stripe webhook events")
        known = set(context.instance.get_dynamic_partitions(workspace_partitions.name))
        # A workspace added since the partition sensor's last tick gets its partition now,
        # in the same result, rather than its events waiting.
        missing = sorted({ws for ws, _ in runs} - known)
        requests = []
        for (workspace_id, run_key), events in sorted(runs.items()):
            requests.append(
                dg.RunRequest(
                    run_key=run_key,
                    partition_key=workspace_id,
                    tags={
                        "kpi/trigger": "stripe-webhook",
                        "kpi/events": str(events),
                        **connection_tags(workspace_id, spec.key),
                    },
                )
            )
        return dg.SensorResult(
            run_requests=requests,
            dynamic_partitions_requests=[workspace_partitions.build_add_request(missing)]
            if missing
            else [],
        )

    return stripe_webhook_sensor
