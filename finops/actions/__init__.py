"""Acting on recommendations: cloud executors, the safety checks around them, the audit log.

Policies decide; this package does. Everything here is safe by default: a run is a dry
run unless asked to apply, the kill switch (`actions.enabled: false` or `FINOPS_ACTIONS=off`)
turns every run into one, and every decision, taken or not, lands in the audit log.

    audit.py      the append-only, hash-chained audit log and its JSON-lines mirror
    targets.py    what a recommendation asks to act on, and a resource's observed state
    retry.py      retries with backoff for throttled or unavailable cloud calls
    aws.py        EC2, Auto Scaling, EKS node group and SageMaker notebook executors (boto3)
    gcp.py        Compute Engine instance and GKE node pool executors (google-cloud clients)
    executors.py  which executor acts on which resource type
    recheck.py    the newest GPU samples of a cluster, re-read just before acting
    runner.py     the run: actionable recommendations, safety checks, stop/start/restore
    warn_then_act.py  scheduled stops, their webhook warnings, snoozes, acting when due
"""
