"""Alerts leave with the run that raised them.

Waiting for the `alert_notification_sensor`'s next tick would add up to its interval (30 s) to
every alert. So after each step that writes alerts, the monitoring run delivers the pending
events itself, with one HTTP attempt each and a short budget: retrying a channel that is down
is the sensor's job, and it must not hold the run up. Events are claimed before they are sent
(see `mlops_assets.storage.notify`), so the run and a sensor tick at the same moment never post
one event twice.
"""

import dagster as dg

from mlops_assets.defs.alerts.sensors import deliver_alerts

# The steps that open, escalate or resolve alerts (asset keys of the monitoring job): every
# alert, drift included, is folded in performance_alerts, right after the drift report.
ALERTING_STEPS = frozenset({"performance_alerts"})
RUN_NOTIFY_BUDGET_SECONDS = 10.0


@dg.success_hook(required_resource_keys={"warehouse", "notifier", "mlflow", "models"})
def deliver_raised_alerts(context: dg.HookContext) -> None:
    """After a step that raises alerts, deliver the pending alert events from the run."""
    if context.op.name not in ALERTING_STEPS:
        return
    resources = context.resources
    report = deliver_alerts(
        warehouse=resources.warehouse,
        notifier=resources.notifier,
        mlflow=resources.mlflow,
        models=resources.models,
        log=context.log,
        budget_seconds=RUN_NOTIFY_BUDGET_SECONDS,
        max_attempts=1,
    )
    if report.delivered:
        context.log.info(f"delivered alert event(s) {list(report.delivered)} from the run")
    if report.failed:
        # Left for the alert_notification_sensor, which retries and raises on a broken channel.
        context.log.warning(
            f"alert event(s) {list(report.failed)} not delivered from the run: "
            + "; ".join(report.errors)
        )
