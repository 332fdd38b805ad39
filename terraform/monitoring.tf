# Monitoring (on unless monitoring.enabled = false): two log-based metrics, five alert policies and one
# dashboard (dashboards/dicomflow.json).
#
#   signal                         source                                                        alert when
#   files failed                   Pub/Sub: messages published on the failed topic               > files_failed_threshold per window
#   operations stuck               log metric: on_operation logs "operation stuck" (ERROR)        > stuck_operations_threshold per window
#   dead letters                   Pub/Sub: backlog of the dead-letter inspection subscription   > dead_letter_threshold
#                                  (without inspection subscriptions: messages dead-lettered by
#                                  the operations subscription per window)
#   oldest unacked pending record  Pub/Sub: oldest_unacked_message_age of the pending subscription > pending_record_max_age_seconds
#   function errors                log metric: ERROR or worse on a function's stdout, by function > function_errors_threshold per window
#
# The functions log one JSON object per line (dicomflow/logs.py): Cloud Logging keeps `message` and the
# fields in jsonPayload and takes `severity` as the entry's severity. A gen2 function logs as the Cloud
# Run revision of its service (same name). Only stdout is read: the request log of the push
# subscription records every deliberate HTTP 500 of on_operation ("operation not done yet") at ERROR,
# while the function itself logs those at INFO.

locals {
  monitoring_window = "${var.monitoring.alignment_seconds}s"

  function_service_names = [for key in keys(local.function_ids) : "${var.name_prefix}-${replace(key, "_", "-")}"]
  on_operation_service   = "${var.name_prefix}-on-operation"

  log_metric_names = {
    operations_stuck = "${var.name_prefix}/operations_stuck"
    function_errors  = "${var.name_prefix}/function_errors"
  }

  function_stdout_filter = join("\n", [
    "resource.type=\"cloud_run_revision\"",
    "log_id(\"run.googleapis.com/stdout\")",
  ])

  # Monitoring filters (metric and resource), by signal.
  monitoring_filters = {
    files_failed = join(" AND ", [
      "metric.type=\"pubsub.googleapis.com/topic/send_message_operation_count\"",
      "resource.type=\"pubsub_topic\"",
      "resource.label.topic_id=\"${var.settings.failed_topic}\"",
    ])
    operations_stuck = join(" AND ", [
      "metric.type=\"logging.googleapis.com/user/${local.log_metric_names.operations_stuck}\"",
      "resource.type=\"cloud_run_revision\"",
    ])
    dead_letter = var.inspection_subscriptions ? join(" AND ", [
      "metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\"",
      "resource.type=\"pubsub_subscription\"",
      "resource.label.subscription_id=\"${local.dead_letter_inspect_subscription}\"",
      ]) : join(" AND ", [
      "metric.type=\"pubsub.googleapis.com/subscription/dead_letter_message_count\"",
      "resource.type=\"pubsub_subscription\"",
      "resource.label.subscription_id=\"${local.operations_subscription}\"",
    ])
    pending_dead_letter = join(" AND ", [
      "metric.type=\"pubsub.googleapis.com/topic/send_message_operation_count\"",
      "resource.type=\"pubsub_topic\"",
      "resource.label.topic_id=\"${local.topics.pending_dead_letter}\"",
    ])
    pending_oldest_unacked = join(" AND ", [
      "metric.type=\"pubsub.googleapis.com/subscription/oldest_unacked_message_age\"",
      "resource.type=\"pubsub_subscription\"",
      "resource.label.subscription_id=\"${var.settings.pending_subscription}\"",
    ])
    function_errors = join(" AND ", [
      "metric.type=\"logging.googleapis.com/user/${local.log_metric_names.function_errors}\"",
      "resource.type=\"cloud_run_revision\"",
    ])
  }

  alerts = var.monitoring.enabled ? {
    files_failed = {
      title     = "files failed"
      severity  = "ERROR"
      aligner   = "ALIGN_SUM"
      threshold = var.monitoring.files_failed_threshold
      what      = "More than ${var.monitoring.files_failed_threshold} file(s) were published on the failed topic `${var.settings.failed_topic}` within ${var.monitoring.alignment_seconds} s. The message's stage says why: intake (not DICOM, unreadable, refused read), deleted (gone before its import), conflict (other content under stored UIDs), reconcile (refused by the import or missing after ${var.settings.max_attempts} attempt(s), with the API's reason), staging (copy refused for good), operation (stuck or unfollowable operation), message (an unparseable watch)."
      todo      = var.inspection_subscriptions ? "Read the reasons: `gcloud pubsub subscriptions pull ${var.settings.failed_topic}-inspect --limit 20`." : "Read the reasons on your own subscription to `${var.settings.failed_topic}`."
    }
    operations_stuck = {
      title     = "operations stuck"
      severity  = "ERROR"
      aligner   = "ALIGN_SUM"
      threshold = var.monitoring.stuck_operations_threshold
      what      = "on_operation reported an import or export operation still running after ${var.settings.operation_max_age_seconds} s (OPERATION_MAX_AGE_SECONDS); its files were published on `${var.settings.failed_topic}` with stage `operation`."
      todo      = "Look the operation up: `gcloud healthcare operations describe OPERATION_ID --dataset ${var.healthcare.dataset} --location ${local.healthcare_location}` (the id is in the log entry's `operation` label)."
    }
    dead_letter = {
      title     = "dead-letter backlog"
      severity  = "CRITICAL"
      aligner   = var.inspection_subscriptions ? "ALIGN_MAX" : "ALIGN_SUM"
      threshold = var.monitoring.dead_letter_threshold
      what      = "Watch messages of the operations subscription were dead-lettered after ${var.operations_delivery.max_delivery_attempts} delivery attempts: their batches were never followed up (no reconcile, no exports, no result)."
      todo      = var.inspection_subscriptions ? "Inspect them: `gcloud pubsub subscriptions pull ${local.dead_letter_inspect_subscription} --limit 20`, fix the cause, then republish them on `${var.settings.operations_topic}`." : "Inspect them on your subscription to `${var.name_prefix}-operations-dead-letter`, then republish them on `${var.settings.operations_topic}`."
    }
    pending_dead_letter = {
      title     = "pending messages dead-lettered"
      severity  = "ERROR"
      aligner   = "ALIGN_SUM"
      threshold = var.monitoring.dead_letter_threshold
      what      = "on_flush put message(s) of `${var.settings.pending_subscription}` it can never process (malformed, a bucket outside SOURCE_BUCKETS, an excluded name) on `${local.topics.pending_dead_letter}`, each with its reason in the `dead_letter_reason` attribute."
      todo      = var.inspection_subscriptions ? "Read them: `gcloud pubsub subscriptions pull ${local.topics.pending_dead_letter}-inspect --limit 20` (attribute dead_letter_reason); whoever published them on `${var.settings.pending_topic}` needs fixing." : "Read them on your own subscription to `${local.topics.pending_dead_letter}` (attribute dead_letter_reason)."
    }
    pending_oldest_unacked = {
      title     = "pending record waiting too long"
      severity  = "WARNING"
      aligner   = "ALIGN_MAX"
      threshold = var.monitoring.pending_record_max_age_seconds
      what      = "The oldest unacknowledged record of `${var.settings.pending_subscription}` is older than ${var.monitoring.pending_record_max_age_seconds} s: uploads are not being imported (flush not running or failing, no import capacity, or a folder that never settles)."
      todo      = "Check the flush: the `flush finished` and `flush failed` entries of `${var.name_prefix}-on-flush`, the scheduler job `${var.name_prefix}-flush-tick`, and running operations (`dicomflow status`)."
    }
    function_errors = {
      title     = "function errors"
      severity  = "ERROR"
      aligner   = "ALIGN_SUM"
      threshold = var.monitoring.function_errors_threshold
      what      = "A dicomflow function logged more than ${var.monitoring.function_errors_threshold} entry(ies) at ERROR or worse within ${var.monitoring.alignment_seconds} s."
      todo      = "Read them in Logs Explorer: `resource.type=\"cloud_run_revision\" severity>=ERROR resource.labels.service_name=~\"^${var.name_prefix}-on-\"`."
    }
  } : {}
}

resource "google_logging_metric" "operations_stuck" {
  count = var.monitoring.enabled ? 1 : 0

  project     = var.project_id
  name        = local.log_metric_names.operations_stuck
  description = "Operations on_operation reported stuck (still running after OPERATION_MAX_AGE_SECONDS)."
  filter = join("\n", [
    local.function_stdout_filter,
    "resource.labels.service_name=\"${local.on_operation_service}\"",
    "jsonPayload.message=\"operation stuck\"",
  ])

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "dicomflow operations stuck (${var.name_prefix})"
  }

  depends_on = [google_project_service.main]
}

resource "google_logging_metric" "function_errors" {
  count = var.monitoring.enabled ? 1 : 0

  project     = var.project_id
  name        = local.log_metric_names.function_errors
  description = "Entries at ERROR or worse logged by the dicomflow functions, by function."
  filter = join("\n", [
    local.function_stdout_filter,
    "resource.labels.service_name=(${join(" OR ", [for name in local.function_service_names : "\"${name}\""])})",
    "severity>=ERROR",
  ])
  label_extractors = {
    function = "EXTRACT(resource.labels.service_name)"
  }

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "dicomflow function errors (${var.name_prefix})"
    labels {
      key         = "function"
      value_type  = "STRING"
      description = "The function's Cloud Run service name."
    }
  }

  depends_on = [google_project_service.main]
}

resource "google_monitoring_alert_policy" "main" {
  for_each = local.alerts

  project               = var.project_id
  display_name          = "dicomflow (${var.name_prefix}): ${each.value.title}"
  combiner              = "OR"
  severity              = each.value.severity
  notification_channels = var.notification_channels
  user_labels           = local.labels

  conditions {
    display_name = each.value.title
    condition_threshold {
      filter          = local.monitoring_filters[each.key]
      comparison      = "COMPARISON_GT"
      threshold_value = each.value.threshold
      duration        = "0s"
      aggregations {
        alignment_period   = local.monitoring_window
        per_series_aligner = each.value.aligner
      }
      trigger {
        count = 1
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "dicomflow (${var.name_prefix}): ${each.value.title}"
    content   = "${each.value.what}\n\n${each.value.todo}\n\nDashboard: \"dicomflow (${var.name_prefix})\". Runbook: docs/failure-handling.md of the dicomflow repository."
  }

  lifecycle {
    precondition {
      condition     = var.monitoring.pending_record_max_age_seconds > var.settings.max_wait_seconds + 60
      error_message = "The monitoring.pending_record_max_age_seconds must exceed settings.max_wait_seconds plus one flush tick (60 s): records of a folder that is still settling are expected to wait that long."
    }
  }

  depends_on = [google_project_service.main, google_logging_metric.operations_stuck, google_logging_metric.function_errors]
}

resource "google_monitoring_dashboard" "main" {
  count = var.monitoring.enabled ? 1 : 0

  project = var.project_id
  dashboard_json = templatefile("${path.module}/dashboards/dicomflow.json", {
    name_prefix                      = var.name_prefix
    failed_topic                     = var.settings.failed_topic
    results_topic                    = var.settings.results_topic
    pending_subscription             = var.settings.pending_subscription
    operations_subscription          = local.operations_subscription
    dead_letter_inspect_subscription = local.dead_letter_inspect_subscription
    operations_stuck_metric          = local.log_metric_names.operations_stuck
    function_errors_metric           = local.log_metric_names.function_errors
  })

  depends_on = [google_project_service.main, google_logging_metric.operations_stuck, google_logging_metric.function_errors]
}
