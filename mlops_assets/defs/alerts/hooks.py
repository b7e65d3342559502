"""Alerts leave with the run that raised them.

Waiting for the `alert_notification_sensor`'s next tick would add up to its interval (30 s) to
every alert. So after each step that writes alerts, the monitoring run delivers the pending
events itself, with one HTTP attempt each and a short budget: retrying a channel that is down
is the sensor's job, and it must not hold the run up. Events are claimed before they are sent
(see `mlops_assets.storage.notify`), so the run and a sensor tick at the same moment never post
one event twice.
"""

import time

import dagster as dg

from mlops_assets.defs.alerts.sensors import NOTIFY_BATCH, deliver_alerts

# The steps that open, escalate or resolve alerts (asset keys of the monitoring job): every
# alert, drift included, is folded in performance_alerts, right after the drift report.
ALERTING_STEPS = frozenset({"performance_alerts"})
# What the two alerting steps of a run (performance_alerts, feature_drift_report) could spend
# before drift alerts moved into performance_alerts: 10 s each.
RUN_NOTIFY_BUDGET_SECONDS = 20.0


@dg.success_hook(required_resource_keys={"warehouse", "notifier", "mlflow", "models"})
def deliver_raised_alerts(context: dg.HookContext) -> None:
    """After a step that raises alerts, deliver the pending alert events from the run."""
    if context.op.name not in ALERTING_STEPS:
        return
    resources = context.resources
    deadline = time.monotonic() + RUN_NOTIFY_BUDGET_SECONDS
    delivered: list[int] = []
    failed: list[int] = []
    errors: list[str] = []
    while (left := deadline - time.monotonic()) > 0:
        report = deliver_alerts(
            warehouse=resources.warehouse,
            notifier=resources.notifier,
            mlflow=resources.mlflow,
            models=resources.models,
            log=context.log,
            budget_seconds=left,
            max_attempts=1,
        )
        delivered += report.delivered
        failed += report.failed
        errors += report.errors
        # Events go oldest first, a batch at a time: after a full batch, this run's own events
        # (performance and drift, raised by one step) may still be behind older ones. A failure
        # means the channel is likely down: the sensor retries.
        if report.failed or len(report.delivered) < NOTIFY_BATCH:
            break
    if delivered:
        context.log.info(f"delivered alert event(s) {delivered} from the run")
    if failed:
        # Left for the alert_notification_sensor, which retries and raises on a broken channel.
        context.log.warning(
            f"alert event(s) {failed} not delivered from the run: " + "; ".join(errors)
        )
