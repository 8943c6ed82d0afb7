"""The Prometheus instruments hexq counts with: names, help, labels and buckets, defined once.

Every process that counts (API, poller, worker) creates the same set on its own registry, so the
names and label sets cannot drift between them; in `hexq serve`'s multiprocess mode the scrape
merges them by name. Base units (seconds), `_total` on counters (prometheus_client adds it).
Labels are bounded: task types and queues the process knows, priority names, fixed enums.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram

# Task times run from a no-op's fraction of a millisecond to an hour-long report.
TASK_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
ATTEMPTS = (1.0, 2.0, 3.0, 4.0, 5.0, 8.0, 13.0)
LAG_SECONDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
WAIT_SECONDS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0)
BACKEND_SECONDS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0, 10.0)
HTTP_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass(frozen=True, slots=True)
class TaskInstruments:
    """What the task events (hexq.core.events) move."""

    submitted: Counter
    rejections: Counter
    processed: Counter
    retries: Counter
    dead_lettered: Counter
    replays: Counter
    cancelled: Counter
    recoveries: Counter
    fencing: Counter
    schedule_fires: Counter
    rate_waits: Counter
    duration: Histogram
    queue_wait: Histogram
    end_to_end: Histogram
    attempts: Histogram
    schedule_lag: Histogram
    rate_wait: Histogram
    deferrals: Counter
    circuit_transitions: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> TaskInstruments:
        def counter(name: str, help: str, *labels: str) -> Counter:
            return Counter(name, help, labels, registry=registry)

        def histogram(name: str, help: str, buckets: tuple[float, ...], *labels: str) -> Histogram:
            return Histogram(name, help, labels, registry=registry, buckets=buckets)

        return cls(
            submitted=counter("hexq_tasks_submitted", "Tasks stored by a submit (not those an idempotency key "
                              "answered with an earlier task)", "type", "queue", "priority"),
            rejections=counter("hexq_submit_rejections", "Submits refused, by reason", "reason"),
            processed=counter("hexq_tasks_processed", "Attempts a worker finished and settled: succeeded, failed "
                              "(a retry is scheduled), dead, cancelled, released (given back unfinished)",
                              "type", "queue", "priority", "status"),
            retries=counter("hexq_task_retries", "Retries scheduled, by what ended the attempt: error, timeout, "
                            "lease_expired", "type", "queue", "reason"),
            dead_lettered=counter("hexq_tasks_dead_lettered", "Tasks moved to the dead-letter queue", "type", "queue"),
            replays=counter("hexq_dead_letter_replays", "Dead tasks sent back to the queue", "type", "queue"),
            cancelled=counter("hexq_tasks_cancelled", "Tasks cancelled (waiting ones at once, running ones by their "
                              "worker)", "type", "queue"),
            recoveries=counter("hexq_lease_recoveries", "Expired leases the poller took over (the worker died or "
                               "hung)", "type", "queue"),
            fencing=counter("hexq_fencing_rejections", "Stale lease tokens the backend refused, by operation",
                            "op"),
            schedule_fires=counter("hexq_schedule_fires", "Schedule firings", "schedule"),
            rate_waits=counter("hexq_type_rate_limit_waits", "Tasks that waited for a token of their type's rate "
                               "limit", "type"),
            duration=histogram("hexq_task_duration_seconds", "Seconds an attempt ran, start to finish",
                               TASK_SECONDS, "type", "queue", "status"),
            queue_wait=histogram("hexq_task_queue_wait_seconds", "Seconds from eligible (created or due) to start",
                                 TASK_SECONDS, "type", "queue", "priority"),
            end_to_end=histogram("hexq_task_end_to_end_seconds", "Seconds from submit to the final state, retries "
                                 "included", TASK_SECONDS, "type", "queue", "priority", "status"),
            attempts=histogram("hexq_task_attempts", "Attempts a task used by its final state", ATTEMPTS,
                               "type", "status"),
            schedule_lag=histogram("hexq_schedule_lag_seconds", "Seconds a schedule fired after its due time",
                                   LAG_SECONDS),
            rate_wait=histogram("hexq_type_rate_limit_wait_seconds", "Seconds a task waited for its type's rate "
                                "limit", WAIT_SECONDS),
            deferrals=counter("hexq_task_deferrals", "Claimed tasks given back with their attempt unused: reason "
                              "retry (the handler raised Retry) or breaker (its circuit breaker is open)",
                              "type", "reason"),
            circuit_transitions=counter("hexq_circuit_transitions", "Circuit breaker state changes this process "
                                        "wrote, by the state entered", "breaker", "state"),
        )


def backend_histogram(registry: CollectorRegistry) -> Histogram:
    return Histogram("hexq_backend_op_duration_seconds", "Seconds a backend operation took, by operation",
                     ["op"], registry=registry, buckets=BACKEND_SECONDS)


@dataclass(frozen=True, slots=True)
class HttpInstruments:
    requests: Counter
    duration: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry) -> HttpInstruments:
        return cls(Counter("hexq_http_requests", "HTTP requests answered, by route template and status",
                           ["method", "route", "status"], registry=registry),
                   Histogram("hexq_http_request_duration_seconds", "Seconds to answer an HTTP request",
                             ["method", "route"], registry=registry, buckets=HTTP_SECONDS))
