"""The synthetic organisation behind the embedded demo, billed as AWS and Google Cloud deliver bills.

Northwind AI is a mid-sized ML company: seven teams on AWS and Google Cloud, GPU training
clusters that run all the time or in multi-day training runs, GPU inference fleets, dev
clusters used on weekdays only, CPU fleets, storage, data transfer and managed services.
Its billing tells the stories the product looks for: GPU compute is about two thirds of
spend, spend grows a few percent a month, commitments (reserved instances, a savings plan,
a committed-use discount) are partly unused, 10-15% of spend carries no team tag and the
tags that exist are messy (`Team` and `owner` for `team`, `ML-Platform` for `ml-platform`).

The charges are modelled as FOCUS 1.2 rows; `generate` writes what the providers would
deliver (see `finops.demo_exports`): AWS as a CUR 2.0 Data Export (monthly Parquet with a
manifest per billing period), GCP as its detailed billing export (monthly Parquet in the
BigQuery export's schema), and a restated AWS month (a late credit and a corrected
data-transfer line) as a second delivery of that month, whose manifest
`deliver_restatement` puts in place. `focus_table` builds FOCUS rows in memory at any
size, for benchmarks.

`generate` also writes what the GPUs reported, hourly, for exactly the hours their nodes
are billed: the clusters' DCGM exporters as OpenMetrics files, and two dev hosts outside
any cluster as nvidia-smi logs. Training clusters run multi-day jobs with idle gaps,
inference follows its users' day, dev GPUs are busy in office hours only, and the
IDLE_CLUSTERS sit idle, billed, for the last IDLE_DAYS days: the shutdown candidates.

Every amount is an exact decimal: unit prices have at most 4 decimals and quantities at
most 2, so each cost (price x quantity) has at most 6 and sums are exact. The whole
organisation is generated with numpy over (resource, day) grids; the Python loops run over
fleets, commitments and months only. The same seed and months give byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import string
from dataclasses import dataclass, fields, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from finops import demo_exports
from finops.warehouse.schema import FOCUS_12_COLUMNS, Kind

__all__ = [
    "DEMO_TEAMS",
    "IDLE_CLUSTERS",
    "IDLE_DAYS",
    "DemoFiles",
    "Team",
    "deliver_restatement",
    "focus_table",
    "generate",
]

_OFFICE_TIME_ZONE = "Europe/London"
"""Northwind AI's clock: dev GPUs follow its working day and nvidia-smi logs in its time."""

IDLE_CLUSTERS: tuple[str, ...] = ("train-p4d-use1", "vision-serving")
"""GPU clusters left running idle, and billed, for the last IDLE_DAYS days of the demo."""
IDLE_DAYS = 14


@dataclass(frozen=True)
class Team:
    """A team of the demo organisation, as the chargeback config knows it."""

    name: str
    cost_centre: str
    business_unit: str


DEMO_TEAMS: tuple[Team, ...] = (
    Team("ml-platform", "CC-1010", "Platform"),
    Team("data-engineering", "CC-1020", "Platform"),
    Team("search-ranking", "CC-2010", "Consumer"),
    Team("recommendations", "CC-2020", "Consumer"),
    Team("fraud-detection", "CC-3010", "Risk"),
    Team("nlp-research", "CC-4010", "Research"),
    Team("vision", "CC-4020", "Research"),
)


@dataclass(frozen=True)
class DemoFiles:
    """Where `generate` wrote the demo's billing files, and what they cover."""

    root: Path
    months: tuple[date, ...]
    """First day of each generated month, ascending."""
    aws_dir: Path
    """`root/aws-cur`: a local copy of the CUR 2.0 Data Export's S3 prefix, export
    `northwind-cur`: `data/BILLING_PERIOD=YYYY-MM/<execution>/*.parquet` and each
    period's `metadata/BILLING_PERIOD=YYYY-MM/northwind-cur-Manifest.json`."""
    gcp_dir: Path
    """`root/gcp-billing-export/YYYY-MM/*.parquet`: the detailed billing export, one folder
    per invoice month (the BigQuery table's schema, as `bq extract` writes it)."""
    restated_month: date
    restated_dir: Path
    """The restated month's second delivery: its data folder below aws_dir."""
    restated_manifest: Path
    """`root/aws-cur-restatement/northwind-cur-Manifest.json`: the manifest that makes that
    delivery current, not yet in place (`deliver_restatement` puts it there)."""
    rows: int
    """CUR line items and export records written (the restated delivery not counted)."""
    gpu_openmetrics_dir: Path
    """`root/gpu-openmetrics/YYYY-MM/<cluster>.om`: the clusters' DCGM samples, hourly. Labels:
    gpu, UUID, modelName, Hostname, instance_id (the node's billing ResourceId), cluster (its
    `cluster` tag) and, on the shared training and the serving clusters, namespace (a team)
    and pod."""
    nvidia_smi_dir: Path
    """`root/nvidia-smi/<host>.csv`: dev hosts' nvidia-smi logs, hourly, in local time; the
    host is the node's billing ResourceName."""
    nvidia_smi_time_zone: str = _OFFICE_TIME_ZONE
    """The IANA time zone of the nvidia-smi hosts' clocks."""


# --- the organisation: providers, accounts, price list, fleets, commitments --------------

AWS = "AWS"
GCP = "Google Cloud"


@dataclass(frozen=True)
class _Provider:
    invoice_issuer: str
    billing_account_id: str
    billing_account_name: str
    billing_account_type: str
    sub_account_type: str
    negotiated_discount: Decimal
    """Contracted price = list price less this share (AWS has an enterprise agreement)."""
    invoice_prefix: str


# fmt: off
_PROVIDERS: dict[str, _Provider] = {
    AWS: _Provider("AWS", "004827361950", "northwind-payer", "Management Account",
                   "Linked Account", Decimal("0.05"), "1"),
    GCP: _Provider("Google Cloud", "01A2B3-C4D5E6-F7A8B9", "Northwind AI main billing",
                   "Billing Account", "Project", Decimal("0"), "5"),
}
# fmt: on


@dataclass(frozen=True)
class _Account:
    provider: str
    sub_account_id: str
    sub_account_name: str
    project_number: str | None = None
    """GCP only: the project's number, written as x_ProjectNumber."""


_ACCOUNTS: dict[str, _Account] = {
    "aws-ml-prod": _Account(AWS, "012345678901", "ml-prod"),
    "aws-ml-staging": _Account(AWS, "023456789012", "ml-staging"),
    "aws-ml-dev": _Account(AWS, "034567890123", "ml-dev"),
    "aws-data": _Account(AWS, "045678901234", "data-platform"),
    "aws-shared": _Account(AWS, "098765432109", "shared-services"),
    "gcp-recs-prod": _Account(GCP, "recs-prod-4821", "recs-prod", "482193746501"),
    "gcp-recs-dev": _Account(GCP, "recs-dev-2290", "recs-dev", "229061834472"),
    "gcp-vision-prod": _Account(GCP, "vision-prod-1937", "vision-prod", "193720485516"),
    "gcp-vision-dev": _Account(GCP, "vision-dev-5518", "vision-dev", "551873629048"),
    "gcp-nlp-research": _Account(GCP, "nlp-research-7702", "nlp-research", "770214958863"),
    "gcp-analytics": _Account(GCP, "analytics-prod-3304", "analytics-prod", "330481726635"),
}

_REGIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "us-east-1": ("US East (N. Virginia)", ("us-east-1a", "us-east-1b", "us-east-1c")),
    "us-west-2": ("US West (Oregon)", ("us-west-2a", "us-west-2b", "us-west-2c")),
    "us-central1": ("Iowa", ("us-central1-a", "us-central1-b", "us-central1-c")),
    "europe-west4": ("Netherlands", ("europe-west4-a", "europe-west4-b", "europe-west4-c")),
}

# How a resource's quantity accrues each day.
HOURS = "hours"  # instance hours: 24 when always on, fewer on weekdays, 0 when idle
STORED = "stored"  # GB held, billed per GB-month: a day is 1/days-in-month of a month
MOVED = "moved"  # GB transferred or TiB scanned that day


@dataclass(frozen=True)
class _Offering:
    """One priced SKU of the price list and how its resources are named."""

    provider: str
    service: str
    category: str
    subcategory: str
    resource_type: str
    sku_id: str
    sku_meter: str
    description: str
    list_price: str
    """USD per pricing unit, at most 4 decimals."""
    unit: str
    measure: str
    id_template: str | None
    """ResourceId from {account}, {region}, {zone}, {name}, {hex}; None: no resource."""
    instance_type: str | None = None
    gpus: int = 0
    gpu_model: str | None = None
    zonal: bool = True


# fmt: off
def _ec2(sku: str, itype: str, price: str, gpus: int = 0, model: str | None = None) -> _Offering:
    return _Offering(AWS, "Amazon Elastic Compute Cloud", "Compute", "Virtual Machines",
                     "Instance", sku, "Compute Instance", f"Linux {itype} Instance Hour", price,
                     "Hours", HOURS, "i-0{hex}", itype, gpus, model)


def _gce(sku: str, itype: str, price: str, gpus: int = 0, model: str | None = None) -> _Offering:
    return _Offering(GCP, "Compute Engine", "Compute", "Virtual Machines", "Instance", sku,
                     "Compute Instance", f"{itype} instance running", price, "Hours", HOURS,
                     "projects/{account}/zones/{zone}/instances/{name}-{hex}", itype, gpus, model)


_OFFERINGS: dict[str, _Offering] = {
    "p4d.24xlarge": _ec2("8ZRX9VJNF3H3P7CV", "p4d.24xlarge", "32.7726", 8, "A100"),
    "p5.48xlarge": _ec2("Q7MKS2Z4WB9PJ6XE", "p5.48xlarge", "55.0400", 8, "H100"),
    "g5.12xlarge": _ec2("YV3CJ8QW2B5KF7HT", "g5.12xlarge", "5.6720", 4, "A10G"),
    "g5.2xlarge": _ec2("R4N6ZD8TX2WQ9MPL", "g5.2xlarge", "1.2120", 1, "A10G"),
    "g5.xlarge": _ec2("H2TB7KQ9VX4RZ6NM", "g5.xlarge", "1.0060", 1, "A10G"),
    "m6i.4xlarge": _ec2("6NCXWF2QKJ7R4BTD", "m6i.4xlarge", "0.7680"),
    "m6i.2xlarge": _ec2("3PZQ8YV6HRT2MXWC", "m6i.2xlarge", "0.3840"),
    "c7g.4xlarge": _ec2("W9KD4M2XQF6ZB8RT", "c7g.4xlarge", "0.5780"),
    "ml.g5.2xlarge": _Offering(
        AWS, "Amazon SageMaker", "AI and Machine Learning", "Machine Learning", "Endpoint",
        "X4PJ7ZT2WQ6KRB9M", "Hosting Instance", "ml.g5.2xlarge real-time inference hour", "1.5150",
        "Hours", HOURS, "arn:aws:sagemaker:{region}:{account}:endpoint/{name}",
        instance_type="ml.g5.2xlarge", gpus=1, gpu_model="A10G"),
    "ml.g5.12xlarge": _Offering(
        AWS, "Amazon SageMaker", "AI and Machine Learning", "Machine Learning", "TrainingJob",
        "M8TQ2KX6ZB4WRJ7P", "Training Instance", "ml.g5.12xlarge training hour", "7.0900", "Hours",
        HOURS, "arn:aws:sagemaker:{region}:{account}:training-job/{name}-{hex}",
        instance_type="ml.g5.12xlarge", gpus=4, gpu_model="A10G"),
    "ml.t3.xlarge": _Offering(
        AWS, "Amazon SageMaker", "AI and Machine Learning", "Machine Learning", "NotebookInstance",
        "T6WQ3ZK9XB2RM7JD", "Notebook Instance", "ml.t3.xlarge notebook instance hour", "0.2000",
        "Hours", HOURS, "arn:aws:sagemaker:{region}:{account}:notebook-instance/{name}",
        instance_type="ml.t3.xlarge"),
    "db.r6g.2xlarge": _Offering(
        AWS, "Amazon Relational Database Service", "Databases", "Relational Databases",
        "DBInstance", "JD8R2XQ6WK4ZT9MB", "Database Instance",
        "db.r6g.2xlarge PostgreSQL Multi-AZ instance hour", "0.8990", "Hours", HOURS,
        "arn:aws:rds:{region}:{account}:db:{name}", instance_type="db.r6g.2xlarge"),
    "eks": _Offering(
        AWS, "Amazon Elastic Kubernetes Service", "Compute", "Containers", "Cluster",
        "ZK7W4QX2RB9TM6JP", "Cluster Hour", "Amazon EKS cluster hour", "0.1000", "Hours", HOURS,
        "arn:aws:eks:{region}:{account}:cluster/{name}", zonal=False),
    "ebs-gp3": _Offering(
        AWS, "Amazon Elastic Block Store", "Storage", "Block Storage", "Volume",
        "9QBX6TZ2KW4RJ8MD", "Storage", "gp3 provisioned storage, per GB-month", "0.0800",
        "GB-Months", STORED, "vol-0{hex}"),
    "s3-standard": _Offering(
        AWS, "Amazon Simple Storage Service", "Storage", "Object Storage", "Bucket",
        "WP9ZJ7X2QT4KB6RM", "Storage", "S3 Standard storage, per GB-month", "0.0230", "GB-Months",
        STORED, "arn:aws:s3:::{name}", zonal=False),
    "aws-egress": _Offering(
        AWS, "AWS Data Transfer", "Networking", "Network Connectivity", "DataTransfer",
        "AQ8W2ZX4KT6RB9JM", "Data Transfer", "Data transfer out to the internet, per GB", "0.0900",
        "GB", MOVED, None, zonal=False),
    "aws-inter-az": _Offering(
        AWS, "AWS Data Transfer", "Networking", "Network Connectivity", "DataTransfer",
        "KB4X9W2QZT7RJ6MP", "Data Transfer", "Data transfer between availability zones, per GB",
        "0.0100", "GB", MOVED, None, zonal=False),
    "a2-highgpu-8g": _gce("6E74-B2C8-4AF6", "a2-highgpu-8g", "29.3879", 8, "A100"),
    "a3-highgpu-8g": _gce("9C31-D5A7-2B84", "a3-highgpu-8g", "88.2540", 8, "H100"),
    "g2-standard-24": _gce("F2A9-71C3-8E5D", "g2-standard-24", "2.0017", 2, "L4"),
    "n2-standard-16": _gce("3B8D-E4F1-C702", "n2-standard-16", "0.7769"),
    "n2-standard-8": _gce("A5C6-2D9E-41B7", "n2-standard-8", "0.3885"),
    "gke": _Offering(
        GCP, "Kubernetes Engine", "Compute", "Containers", "Cluster", "B6F4-3C92-D1E8",
        "Cluster Management", "Regional Kubernetes cluster management fee", "0.1000", "Hours",
        HOURS, "projects/{account}/locations/{region}/clusters/{name}", zonal=False),
    "vertex-prediction": _Offering(
        GCP, "Vertex AI", "AI and Machine Learning", "AI Platforms", "Endpoint", "D7E2-9B4A-63F1",
        "Online Prediction", "Online prediction g2-standard-12 node hour", "1.0020", "Hours",
        HOURS, "projects/{account}/locations/{region}/endpoints/{name}",
        instance_type="g2-standard-12", gpus=1, gpu_model="L4", zonal=False),
    "gcs-standard": _Offering(
        GCP, "Cloud Storage", "Storage", "Object Storage", "Bucket", "E5C1-8A3F-7D26", "Storage",
        "Standard storage, per GB-month", "0.0200", "GB-Months", STORED,
        "projects/_/buckets/{name}", zonal=False),
    "bigquery": _Offering(
        GCP, "BigQuery", "Analytics", "Data Processing", "Dataset", "24E6-581D-38E5", "Analysis",
        "Analysis (on-demand), per TiB scanned", "6.2500", "TiB", MOVED,
        "projects/{account}/datasets/{name}", zonal=False),
    "gcp-egress": _Offering(
        GCP, "Networking", "Networking", "Network Connectivity", "DataTransfer", "9DE9-9092-B3BC",
        "Data Transfer", "Network internet egress (premium tier), per GB", "0.1200", "GB", MOVED,
        None, zonal=False),
}
# fmt: on

# x_PurchaseOption values and what each means for pricing and the charge description.
ON_DEMAND = "OnDemand"
SPOT = "Spot"
RESERVED = "Reserved"
SAVINGS_PLAN = "SavingsPlan"
COMMITTED_USE = "CommittedUse"
_PRICING_CATEGORY = {
    ON_DEMAND: "Standard",
    SPOT: "Dynamic",
    RESERVED: "Committed",
    SAVINGS_PLAN: "Committed",
    COMMITTED_USE: "Committed",
}
_PURCHASE_PHRASE = {
    ON_DEMAND: "On Demand",
    SPOT: "Spot",
    RESERVED: "Reserved Instance applied:",
    SAVINGS_PLAN: "Savings Plan covered:",
    COMMITTED_USE: "Committed use discount applied:",
}
_PRICE_TERM = {
    ON_DEMAND: "JRTCKXETXF",
    SPOT: "SPOT",
    RESERVED: "4NA7Y494T4",
    SAVINGS_PLAN: "SP3YNU",
    COMMITTED_USE: "CUD3Y",
}
_SPOT_PRICE_SHARE = 0.35
"""A spot hour costs about this share of the list price, varying day by day."""

# Schedules: when a resource's hours accrue.
ALWAYS = "always"  # around the clock, every day
WEEKDAYS = "weekdays"  # dev clusters and notebooks: office hours, Monday to Friday
RUNS = "runs"  # training clusters: multi-day runs, idle in between
_RUN_DAYS = 4


@dataclass(frozen=True)
class _Fleet:
    """Resources deployed alike: a cluster's node group, a set of buckets, a traffic flow."""

    name: str
    account: str
    region: str
    offering: str
    nodes: int
    """How many resources at the end of the period; fewer earlier when it grows."""
    schedule: str = ALWAYS
    team: str | None = None
    """None: no team tag at all (the untagged spend)."""
    env: str = "prod"
    workload: str | None = None
    project: str | None = None
    cluster: str | None = None
    team_key: str = "team"
    """`Team` and `owner` are the older spellings some resources still carry."""
    team_value: str | None = None
    """The team as tagged, when written in another casing than its name."""
    purchase: str = ON_DEMAND
    commitment: str | None = None
    size: float = 1.0
    """Per resource: GB stored (STORED) or GB / TiB moved a day (MOVED)."""
    busy: float = 0.5
    """RUNS only: the share of days a training run is going."""
    growth: float = 0.05
    """Monthly growth of the fleet's node count or volume."""

    def tags(self) -> dict[str, str] | None:
        """The resource tags; None when it carries none at all."""
        tags: dict[str, str] = {}
        if self.team:
            tags[self.team_key] = self.team_value or self.team
        if self.team or self.workload:
            tags["env"] = self.env
        for key, value in (
            ("project", self.project),
            ("cluster", self.cluster),
            ("workload", self.workload),
        ):
            if value:
                tags[key] = value
        return tags or None


# fmt: off
_FLEETS: tuple[_Fleet, ...] = (
    # ml-platform: the shared training cluster, always on and covered by reserved instances.
    _Fleet("train-p4d", "aws-ml-prod", "us-east-1", "p4d.24xlarge", 6, team="ml-platform",
           workload="training", cluster="train-p4d-use1", project="foundation-models",
           purchase=RESERVED, commitment="ri-p4d", growth=0.0),
    _Fleet("train-p4d-burst", "aws-ml-prod", "us-east-1", "p4d.24xlarge", 3, RUNS,
           team="ml-platform", workload="training", cluster="train-p4d-use1",
           project="foundation-models", busy=0.3),
    _Fleet("platform-system", "aws-ml-prod", "us-east-1", "m6i.4xlarge", 14, team="ml-platform",
           team_value="ML-Platform", workload="batch", cluster="train-p4d-use1"),
    _Fleet("eks", "aws-ml-prod", "us-east-1", "eks", 3, team="ml-platform", growth=0.0),
    _Fleet("northwind-training-data", "aws-ml-prod", "us-east-1", "s3-standard", 1,
           team="ml-platform", project="foundation-models", size=600_000),
    _Fleet("northwind-checkpoints", "aws-ml-prod", "us-east-1", "s3-standard", 1,
           team="ml-platform", team_value="ML-Platform", project="foundation-models",
           size=250_000, growth=0.06),
    _Fleet("train-scratch", "aws-ml-prod", "us-east-1", "ebs-gp3", 9, team="ml-platform",
           workload="training", cluster="train-p4d-use1", size=4_000),
    _Fleet("ml-dev-g5", "aws-ml-dev", "us-west-2", "g5.12xlarge", 6, WEEKDAYS,
           team="ml-platform", env="dev", workload="notebook", cluster="ml-dev-usw2"),
    # search-ranking: GPU inference on a savings plan, spot p5 for training.
    _Fleet("search-inference", "aws-ml-prod", "us-east-1", "g5.12xlarge", 12,
           team="search-ranking", team_key="Team", workload="inference",
           cluster="search-serving-use1", project="ranking-v3", purchase=SAVINGS_PLAN,
           commitment="sp-compute", growth=0.0),
    _Fleet("search-inference-od", "aws-ml-prod", "us-east-1", "g5.12xlarge", 6,
           team="search-ranking", team_key="Team", workload="inference",
           cluster="search-serving-use1", project="ranking-v3", growth=0.06),
    _Fleet("search-train-p5", "aws-ml-prod", "us-east-1", "p5.48xlarge", 4, RUNS,
           team="search-ranking", workload="training", cluster="search-train-use1",
           project="ranking-v3", purchase=SPOT, busy=0.45),
    _Fleet("search-staging", "aws-ml-staging", "us-east-1", "g5.2xlarge", 3,
           team="search-ranking", team_key="Team", env="staging", workload="inference"),
    _Fleet("search-feature-servers", "aws-ml-prod", "us-east-1", "m6i.4xlarge", 20,
           team="search-ranking", team_key="Team", workload="inference",
           cluster="search-serving-use1", project="ranking-v3"),
    _Fleet("search-features", "aws-ml-prod", "us-east-1", "s3-standard", 2,
           team="search-ranking", project="ranking-v3", size=120_000),
    # fraud-detection: SageMaker endpoints, CPU stream scoring, a feature store on RDS.
    _Fleet("fraud-scoring", "aws-ml-prod", "us-east-1", "c7g.4xlarge", 24, team="fraud-detection",
           team_key="owner", workload="inference", cluster="fraud-stream-use1"),
    _Fleet("fraud-endpoint", "aws-ml-prod", "us-east-1", "ml.g5.2xlarge", 6,
           team="fraud-detection", team_key="owner", workload="inference",
           project="fraud-gnn"),
    _Fleet("fraud-train", "aws-ml-prod", "us-east-1", "ml.g5.12xlarge", 3, RUNS,
           team="fraud-detection", workload="training", project="fraud-gnn", busy=0.35),
    _Fleet("fraud-features", "aws-ml-prod", "us-east-1", "db.r6g.2xlarge", 4,
           team="fraud-detection", team_key="owner", workload="batch", growth=0.0),
    _Fleet("fraud-staging", "aws-ml-staging", "us-east-1", "c7g.4xlarge", 4,
           team="fraud-detection", team_key="owner", env="staging", workload="inference"),
    _Fleet("fraud-notebooks", "aws-ml-dev", "us-west-2", "ml.t3.xlarge", 6, WEEKDAYS,
           team="fraud-detection", env="dev", workload="notebook"),
    # data-engineering: spot ETL, a data lake, the metadata database.
    _Fleet("etl-spot", "aws-data", "us-east-1", "c7g.4xlarge", 30, team="data-engineering",
           workload="batch", cluster="etl-use1", purchase=SPOT),
    _Fleet("etl-core", "aws-data", "us-east-1", "m6i.4xlarge", 16, team="data-engineering",
           workload="batch", cluster="etl-use1"),
    _Fleet("northwind-data-lake", "aws-data", "us-east-1", "s3-standard", 3,
           team="data-engineering", size=250_000, growth=0.06),
    _Fleet("lake-metadata", "aws-data", "us-east-1", "db.r6g.2xlarge", 3,
           team="data-engineering", workload="batch", growth=0.0),
    _Fleet("ci-runners", "aws-shared", "us-east-1", "c7g.4xlarge", 10, WEEKDAYS,
           team="data-engineering", team_key="Team", workload="batch", purchase=SPOT),
    # Untagged: notebooks nobody tagged, forgotten GPUs, orphaned volumes, shared traffic.
    _Fleet("jupyter", "aws-ml-dev", "us-west-2", "g5.xlarge", 12, WEEKDAYS, env="dev",
           workload="notebook"),
    _Fleet("gpu-sandbox", "aws-ml-dev", "us-west-2", "g5.12xlarge", 3, growth=0.0),
    _Fleet("orphaned-volumes", "aws-ml-dev", "us-west-2", "ebs-gp3", 24, size=1_500),
    _Fleet("internet-egress", "aws-ml-prod", "us-east-1", "aws-egress", 1, size=4_500),
    _Fleet("cross-az", "aws-ml-prod", "us-east-1", "aws-inter-az", 1, size=25_000),
    _Fleet("legacy-batch", "aws-shared", "us-east-1", "m6i.2xlarge", 10, growth=0.0),
    # recommendations: L4 serving on a committed-use discount, A100 training runs.
    _Fleet("recs-serve", "gcp-recs-prod", "us-central1", "g2-standard-24", 12,
           team="recommendations", workload="inference", cluster="recs-serving",
           project="two-tower", purchase=COMMITTED_USE, commitment="cud-g2", growth=0.0),
    _Fleet("recs-serve-od", "gcp-recs-prod", "us-central1", "g2-standard-24", 6,
           team="recommendations", workload="inference", cluster="recs-serving",
           project="two-tower", growth=0.07),
    _Fleet("recs-train", "gcp-recs-prod", "us-central1", "a2-highgpu-8g", 4, RUNS,
           team="recommendations", team_key="owner", workload="training",
           cluster="recs-train", project="two-tower", purchase=SPOT, busy=0.5),
    _Fleet("recs-train-od", "gcp-recs-prod", "us-central1", "a2-highgpu-8g", 2, RUNS,
           team="recommendations", workload="training", cluster="recs-train",
           project="two-tower", busy=0.3),
    _Fleet("recs-dev", "gcp-recs-dev", "us-central1", "g2-standard-24", 4, WEEKDAYS,
           team="recommendations", env="dev", workload="notebook"),
    _Fleet("recs_events", "gcp-recs-prod", "us-central1", "bigquery", 1,
           team="recommendations", workload="batch", size=14),
    _Fleet("northwind-recs-features", "gcp-recs-prod", "us-central1", "gcs-standard", 1,
           team="recommendations", size=250_000),
    # vision: training and serving in europe-west4.
    _Fleet("vision-train", "gcp-vision-prod", "europe-west4", "a2-highgpu-8g", 4, RUNS,
           team="vision", workload="training", cluster="vision-train", project="detector-v2",
           busy=0.3),
    _Fleet("vision-serve", "gcp-vision-prod", "europe-west4", "g2-standard-24", 8,
           team="vision", workload="inference", cluster="vision-serving",
           project="detector-v2"),
    _Fleet("vision-dev", "gcp-vision-dev", "europe-west4", "g2-standard-24", 4, WEEKDAYS,
           team="vision", team_key="owner", env="dev", workload="notebook"),
    _Fleet("northwind-vision-images", "gcp-vision-prod", "europe-west4", "gcs-standard", 1,
           team="vision", project="detector-v2", size=400_000),
    _Fleet("vision-gke", "gcp-vision-prod", "europe-west4", "gke", 2, team="vision",
           growth=0.0),
    # nlp-research: H100 runs, a Vertex AI endpoint, workbench notebooks.
    _Fleet("nlp-a3", "gcp-nlp-research", "us-central1", "a3-highgpu-8g", 2, RUNS,
           team="nlp-research", workload="training", cluster="nlp-h100",
           project="llm-finetune", busy=0.3),
    _Fleet("nlp-a3-spot", "gcp-nlp-research", "us-central1", "a3-highgpu-8g", 2, RUNS,
           team="nlp-research", workload="training", cluster="nlp-h100",
           project="llm-finetune", purchase=SPOT, busy=0.35),
    _Fleet("nlp-assistant", "gcp-nlp-research", "us-central1", "vertex-prediction", 3,
           team="nlp-research", workload="inference", project="llm-finetune"),
    _Fleet("nlp-workbench", "gcp-nlp-research", "us-central1", "n2-standard-8", 6, WEEKDAYS,
           team="nlp-research", team_key="owner", env="dev", workload="notebook"),
    # data-engineering on GCP: the analytics warehouse and its GKE cluster.
    _Fleet("analytics", "gcp-analytics", "us-central1", "bigquery", 1, team="data-engineering",
           workload="batch", size=45),
    _Fleet("analytics-gke-pool", "gcp-analytics", "us-central1", "n2-standard-16", 30,
           team="data-engineering", workload="batch", cluster="analytics-gke"),
    _Fleet("analytics-gke", "gcp-analytics", "us-central1", "gke", 1, team="data-engineering",
           growth=0.0),
    # Untagged on GCP: egress, exports nobody owns, an old Airflow.
    _Fleet("gcp-egress", "gcp-recs-prod", "us-central1", "gcp-egress", 1, size=2_500),
    _Fleet("northwind-tmp-exports", "gcp-analytics", "us-central1", "gcs-standard", 1,
           size=300_000, growth=0.08),
    _Fleet("airflow-legacy", "gcp-analytics", "us-central1", "n2-standard-8", 4, growth=0.0),
)
# fmt: on


@dataclass(frozen=True)
class _Commitment:
    """A commitment discount: capacity for `nodes` instances of one offering, every hour."""

    key: str
    id: str
    name: str
    account: str
    region: str
    offering: str
    category: str
    type: str
    purchase: str
    discount: Decimal
    """The committed rate is the list price less this share."""
    nodes: int


# fmt: off
_COMMITMENTS: tuple[_Commitment, ...] = (
    _Commitment(
        "ri-p4d",
        "arn:aws:ec2:us-east-1:012345678901:reserved-instances/4f1c2a9e-7b3d-4e8a-9c61-2d5f8b0e3a71",
        "p4d.24xlarge 3yr No Upfront", "aws-ml-prod", "us-east-1", "p4d.24xlarge",
        "Usage", "Reserved Instance", RESERVED, Decimal("0.40"), 6),
    _Commitment(
        "sp-compute",
        "arn:aws:savingsplans::004827361950:savingsplan/9b2e6d14-3c8f-4a57-b0e2-71d4c6a8f359",
        "Compute Savings Plan 1yr No Upfront", "aws-ml-prod", "us-east-1", "g5.12xlarge",
        "Spend", "Savings Plan", SAVINGS_PLAN, Decimal("0.28"), 14),
    _Commitment(
        "cud-g2", "projects/recs-prod-4821/regions/us-central1/commitments/g2-serving-3y",
        "g2-serving-3y", "gcp-recs-prod", "us-central1", "g2-standard-24",
        "Usage", "Committed Use Discount", COMMITTED_USE, Decimal("0.45"), 13),
)
# fmt: on


@dataclass(frozen=True)
class _OneOff:
    """A credit or adjustment outside usage."""

    account: str
    offering: str
    category: str
    description: str
    amount: Decimal
    frequency: str
    monthly: bool = False
    """True: every month; False: once, in the second month (the first when only one)."""
    corrects_previous_month: bool = False


# fmt: off
_ONE_OFFS: tuple[_OneOff, ...] = (
    _OneOff("gcp-nlp-research", "vertex-prediction", "Credit",
            "Promotional credit: Vertex AI research program", Decimal("-4000"), "Recurring",
            monthly=True),
    _OneOff("aws-ml-prod", "p5.48xlarge", "Adjustment",
            "Refund: p5.48xlarge capacity unavailable during scheduled training window",
            Decimal("-1850.25"), "One-Time", corrects_previous_month=True),
)
# fmt: on

_AWS_TAX_RATE = Decimal("0.02")
"""Sales tax on each linked account's billed usage, one Tax row per service and month."""

# The restated AWS month: the first delivery over-metered one data-transfer line by
# _OVERMETERED_GB; the restated delivery corrects that line and adds a late SLA credit.
_OVERMETERED_GB = 1_000
_LATE_CREDIT = _OneOff(
    "aws-ml-prod",
    "s3-standard",
    "Credit",
    "AWS service credit: S3 availability below SLA",
    Decimal("-2500"),
    "One-Time",
)

# --- columns and Arrow types -------------------------------------------------------------

# Text is dictionary-encoded, which keeps 10 M rows in a few GB: 16-bit indices for the
# columns with few distinct values, 32-bit for those with a value per resource.
_LABEL = pa.dictionary(pa.int16(), pa.string())
_NAME = pa.dictionary(pa.int32(), pa.string())
_PER_RESOURCE = ("ResourceId", "ResourceName")
_DECIMAL_PLACES = 10
_DECIMAL = pa.decimal128(38, _DECIMAL_PLACES)
_TIMESTAMP = pa.timestamp("us", tz="UTC")
_TAG_MAP = pa.map_(pa.string(), pa.string())
_MICROS_PER_DAY = 86_400_000_000

_AWS_EXTRAS = ("x_InstanceType", "x_PurchaseOption")


def _text_type(name: str) -> pa.DataType:
    return _NAME if name in _PER_RESOURCE else _LABEL


def _arrow_type(name: str, kind: Kind) -> pa.DataType:
    if kind in (Kind.TEXT, Kind.CURRENCY, Kind.JSON):
        return _text_type(name)
    return {
        Kind.MONEY: _DECIMAL,
        Kind.QUANTITY: _DECIMAL,
        Kind.TIMESTAMP: _TIMESTAMP,
        Kind.KEY_VALUE: _TAG_MAP,
    }[kind]


# Rows are built with Tags as JSON text (a 2-byte dictionary index a row); the AWS files
# turn them into a map, the GCP files keep the text.
_ROW_SCHEMA = pa.schema(
    [
        pa.field(c.name, _LABEL if c.kind is Kind.KEY_VALUE else _arrow_type(c.name, c.kind))
        for c in FOCUS_12_COLUMNS
    ]
    + [pa.field(name, _LABEL) for name in (*_AWS_EXTRAS, "x_ProjectNumber")]
)
_PARQUET_SCHEMA = pa.schema(
    [pa.field(c.name, _arrow_type(c.name, c.kind)) for c in FOCUS_12_COLUMNS]
    + [pa.field(name, _LABEL) for name in _AWS_EXTRAS]
)

# --- the calendar ------------------------------------------------------------------------


def _add_months(first_day: date, count: int) -> date:
    years, month = divmod(first_day.month - 1 + count, 12)
    return date(first_day.year + years, month + 1, 1)


def _epoch_day(day: date) -> int:
    return day.toordinal() - date(1970, 1, 1).toordinal()


@dataclass(frozen=True)
class _Calendar:
    months: tuple[date, ...]
    month_starts: np.ndarray
    """Epoch day of each month's first day, plus the first day after the last month."""
    days: np.ndarray
    """Epoch day of every day in the months."""
    month_of_day: np.ndarray
    days_in_month: np.ndarray
    """Per day: how many days its month has."""
    weekday: np.ndarray
    """Per day: 0 is Monday."""

    @property
    def growth_age(self) -> np.ndarray:
        """Per day: months before the last day (0 on it), for compounding growth back."""
        return (self.days - self.days[-1]) / 30.44


def _calendar(first_month: date, months: int) -> _Calendar:
    starts = np.array([_epoch_day(_add_months(first_month, i)) for i in range(months + 1)])
    days = np.arange(starts[0], starts[-1])
    month_of_day = np.searchsorted(starts, days, side="right") - 1
    return _Calendar(
        months=tuple(_add_months(first_month, i) for i in range(months)),
        month_starts=starts,
        days=days,
        month_of_day=month_of_day,
        days_in_month=np.diff(starts)[month_of_day],
        weekday=(days + 3) % 7,  # 1970-01-01 was a Thursday
    )


def _last_complete_month() -> date:
    today = datetime.now(UTC).date()
    return _add_months(today.replace(day=1), -1)


# --- Arrow building blocks ---------------------------------------------------------------


def _decimals(amounts: np.ndarray, places: int, valid: np.ndarray | None = None) -> pa.Array:
    """Exact decimal128(38,10) values from integers counting units of 10**-places.

    Built from the buffers: each value is a little-endian 128-bit integer scaled by 10**10,
    which is the int64 in the low word and its sign in the high word.
    """
    words = np.empty((len(amounts), 2), dtype=np.int64)
    words[:, 0] = amounts
    words[:, 0] *= 10 ** (_DECIMAL_PLACES - places)
    words[:, 1] = words[:, 0] >> 63
    validity = None if valid is None else pa.array(valid, type=pa.bool_()).buffers()[1]
    return pa.Array.from_buffers(_DECIMAL, len(amounts), [validity, pa.py_buffer(words)])


def _timestamps(epoch_days: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(epoch_days, dtype=np.int64) * _MICROS_PER_DAY, type=_TIMESTAMP)


def _encode(records: list[dict[str, str | None]]) -> dict[str, pa.Array]:
    """Per-entity text columns (one record per fleet or commitment), dictionary-encoded."""
    return {
        name: pc.dictionary_encode(pa.array([r[name] for r in records], pa.string())).cast(
            _text_type(name)
        )
        for name in records[0]
    }


def _rows(count: int, columns: dict[str, pa.Array | str | None]) -> pa.Table:
    """A block of rows in the row schema; a str is one value for every row, absent is null."""
    zeros = pa.array(np.zeros(count, dtype=np.int16))  # one index buffer for all constants
    arrays = []
    for field in _ROW_SCHEMA:
        value = columns.get(field.name)
        if value is None:
            arrays.append(pa.nulls(count, field.type))
        elif isinstance(value, str):
            arrays.append(pa.DictionaryArray.from_arrays(zeros, pa.array([value])))
        else:
            arrays.append(value if value.type == field.type else value.cast(field.type))
    return pa.Table.from_arrays(arrays, schema=_ROW_SCHEMA)


def _take(columns: dict[str, pa.Array], index: np.ndarray) -> dict[str, pa.Array]:
    positions = pa.array(index.astype(np.int32))
    return {name: array.take(positions) for name, array in columns.items()}


def _hex_ids(rng: np.random.Generator, count: int, width: int) -> pa.Array:
    """`count` random lowercase hex strings of `width` digits, built as one buffer."""
    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    chars = digits[rng.integers(0, 16, size=count * width)]
    offsets = np.arange(0, (count + 1) * width, width, dtype=np.int32)
    return pa.Array.from_buffers(
        pa.string(), count, [None, pa.py_buffer(offsets), pa.py_buffer(chars)]
    )


def _fill(template: str, values: dict[str, pa.Array | str]) -> pa.Array:
    """Fill a `{name}`-style template element-wise from arrays and strings."""
    parts: list[pa.Array | str] = []
    for literal, name, _, _ in string.Formatter().parse(template):
        if literal:
            parts.append(literal)
        if name:
            parts.append(values[name])
    return pc.binary_join_element_wise(*parts, "")


def _price(text: str | Decimal) -> int:
    """A price in ten-thousandths of a dollar."""
    return int((Decimal(text) * 10_000).to_integral_value())


# --- the organisation's resources --------------------------------------------------------


def _fleet_records(fleets: tuple[_Fleet, ...]) -> list[dict[str, str | None]]:
    records = []
    for fleet in fleets:
        offering = _OFFERINGS[fleet.offering]
        commitment = _commitment(fleet.commitment)
        compute = offering.instance_type is not None
        tags = fleet.tags()
        records.append(
            {
                **_account_record(fleet.account),
                "RegionId": fleet.region,
                "RegionName": _REGIONS[fleet.region][0],
                **_offering_record(fleet.offering),
                "ChargeDescription": (
                    f"{_PURCHASE_PHRASE[fleet.purchase]} {offering.description}"
                    if compute
                    else offering.description
                ),
                "PricingCategory": _PRICING_CATEGORY[fleet.purchase],
                "SkuPriceId": f"{offering.sku_id}.{_PRICE_TERM[fleet.purchase]}",
                "x_PurchaseOption": fleet.purchase if compute else None,
                "CommitmentDiscountId": commitment.id if commitment else None,
                "CommitmentDiscountName": commitment.name if commitment else None,
                "CommitmentDiscountCategory": commitment.category if commitment else None,
                "CommitmentDiscountType": commitment.type if commitment else None,
                "CommitmentDiscountStatus": "Used" if commitment else None,
                "CommitmentDiscountUnit": _commitment_unit(commitment),
                "Tags": json.dumps(tags, separators=(",", ":")) if tags else None,
            }
        )
    return records


def _account_record(key: str) -> dict[str, str | None]:
    account = _ACCOUNTS[key]
    provider = _PROVIDERS[account.provider]
    return {
        "ProviderName": account.provider,
        "PublisherName": account.provider,
        "InvoiceIssuerName": provider.invoice_issuer,
        "BillingAccountId": provider.billing_account_id,
        "BillingAccountName": provider.billing_account_name,
        "BillingAccountType": provider.billing_account_type,
        "SubAccountId": account.sub_account_id,
        "SubAccountName": account.sub_account_name,
        "SubAccountType": provider.sub_account_type,
        "x_ProjectNumber": account.project_number,
    }


def _service_record(offering: str) -> dict[str, str | None]:
    keys = ("ServiceName", "ServiceCategory", "ServiceSubcategory")
    return {k: v for k, v in _offering_record(offering).items() if k in keys}


def _offering_record(key: str) -> dict[str, str | None]:
    offering = _OFFERINGS[key]
    gpu_details = (
        json.dumps({"x_GpuCount": offering.gpus, "x_GpuModel": offering.gpu_model})
        if offering.gpus
        else None
    )
    return {
        "ServiceName": offering.service,
        "ServiceCategory": offering.category,
        "ServiceSubcategory": offering.subcategory,
        "ResourceType": offering.resource_type,
        "SkuId": offering.sku_id,
        "SkuMeter": offering.sku_meter,
        "SkuPriceDetails": gpu_details,
        "PricingUnit": offering.unit,
        "ConsumedUnit": offering.unit,
        "x_InstanceType": offering.instance_type,
    }


@dataclass(frozen=True)
class _Resources:
    """Every resource of the organisation's fleets (`scale` copies of each node)."""

    fleet: np.ndarray
    first_day: np.ndarray
    """Index of the first calendar day the resource exists."""
    size: np.ndarray
    run_phase: np.ndarray
    columns: dict[str, pa.Array]
    """ResourceId, ResourceName, AvailabilityZone: one entry per resource."""


def _resources(
    fleets: tuple[_Fleet, ...], calendar: _Calendar, rng: np.random.Generator, scale: int
) -> _Resources:
    last_day = len(calendar.days) - 1
    fleet_of, first_day, size, ids, names, zones = [], [], [], [], [], []
    for index, fleet in enumerate(fleets):
        offering = _OFFERINGS[fleet.offering]
        account = _ACCOUNTS[fleet.account]
        count = fleet.nodes * scale
        node = np.arange(count)
        # A growing fleet reaches its size on the last day; node i joined when the fleet,
        # growing `growth` a month, first needed i + 1 nodes.
        joined = (
            last_day + 30.44 * np.log((node + 1) / count) / math.log1p(fleet.growth)
            if fleet.growth and offering.measure == HOURS
            else np.zeros(count)
        )
        fleet_of.append(np.full(count, index))
        first_day.append(np.clip(np.floor(joined), 0, last_day).astype(np.int64))
        size.append(fleet.size * (rng.uniform(0.6, 1.4, count) if count > 1 else np.ones(1)))
        numbered = pc.binary_join_element_wise(
            f"{fleet.name}-", pc.utf8_lpad(pa.array(node + 1).cast(pa.string()), 3, "0"), ""
        )
        name = numbered if count > 1 else pa.array([fleet.name])
        region_zones = _REGIONS[fleet.region][1]
        zone = pa.array(region_zones).take(rng.integers(0, len(region_zones), count))
        id_parts = {
            "account": account.sub_account_id,
            "region": fleet.region,
            "zone": zone,
            "name": name,
            "hex": _hex_ids(rng, count, 16 if offering.provider == AWS else 4),
        }
        if offering.id_template is None:
            ids.append(pa.nulls(count, pa.string()))
            names.append(pa.nulls(count, pa.string()))
        else:
            ids.append(_fill(offering.id_template, id_parts))
            names.append(name)
        zones.append(zone if offering.zonal else pa.nulls(count, pa.string()))
    fleet_index = np.concatenate(fleet_of)
    return _Resources(
        fleet=fleet_index,
        first_day=np.concatenate(first_day),
        size=np.concatenate(size),
        run_phase=rng.integers(0, _RUN_DAYS, len(fleet_index)),
        columns={
            "ResourceId": pc.dictionary_encode(pa.concat_arrays(ids)),
            "ResourceName": pc.dictionary_encode(pa.concat_arrays(names)),
            "AvailabilityZone": pc.dictionary_encode(pa.concat_arrays(zones)).cast(_LABEL),
        },
    )


# --- one provider's estate and its charges -----------------------------------------------


@dataclass(frozen=True)
class _FleetPrices:
    """Per fleet, in ten-thousandths of a dollar per pricing unit."""

    list_price: np.ndarray
    contracted_price: np.ndarray
    paid_price: np.ndarray
    """The commitment's rate for covered fleets, else the contracted price (spot: per day)."""
    committed: np.ndarray


def _fleet_prices(fleets: tuple[_Fleet, ...]) -> _FleetPrices:
    list_price, contracted, paid, committed = [], [], [], []
    for fleet in fleets:
        offering = _OFFERINGS[fleet.offering]
        discount = _PROVIDERS[offering.provider].negotiated_discount
        commitment = _commitment(fleet.commitment)
        list_price.append(_price(offering.list_price))
        contracted.append(_price(Decimal(offering.list_price) * (1 - discount)))
        paid.append(_commitment_rate(commitment) if commitment else contracted[-1])
        committed.append(commitment is not None)
    return _FleetPrices(
        np.array(list_price), np.array(contracted), np.array(paid), np.array(committed)
    )


def _commitment(key: str | None) -> _Commitment | None:
    return next((c for c in _COMMITMENTS if c.key == key), None)


def _commitment_rate(commitment: _Commitment) -> int:
    list_price = Decimal(_OFFERINGS[commitment.offering].list_price)
    return _price(list_price * (1 - commitment.discount))


@dataclass(frozen=True)
class _Estate:
    """One provider's share of the organisation over a calendar."""

    provider: str
    fleets: tuple[_Fleet, ...]
    commitments: tuple[_Commitment, ...]
    calendar: _Calendar
    resources: _Resources
    prices: _FleetPrices
    fleet_columns: dict[str, pa.Array]
    invoice_ids: pa.Array
    """Per month: the provider's invoice for its billing account."""
    scale: int


def _estate(provider: str, calendar: _Calendar, rng: np.random.Generator, scale: int) -> _Estate:
    fleets = tuple(f for f in _FLEETS if _ACCOUNTS[f.account].provider == provider)
    prefix = _PROVIDERS[provider].invoice_prefix
    return _Estate(
        provider=provider,
        fleets=fleets,
        commitments=tuple(c for c in _COMMITMENTS if _ACCOUNTS[c.account].provider == provider),
        calendar=calendar,
        resources=_resources(fleets, calendar, rng, scale),
        prices=_fleet_prices(fleets),
        fleet_columns=_encode(_fleet_records(fleets)),
        invoice_ids=pa.array([f"{prefix}{m:%Y%m}" for m in calendar.months]),
        scale=scale,
    )


def _invoices(estate: _Estate, month: np.ndarray) -> pa.Array:
    return pa.DictionaryArray.from_arrays(month.astype(np.int16), estate.invoice_ids)


@dataclass(frozen=True)
class _Usage:
    """One row per resource per day it ran or held data, as numbers."""

    resource: np.ndarray
    day: np.ndarray
    """Index into the calendar's days."""
    quantity: np.ndarray
    """Pricing (and consumed) quantity, in hundredths of the pricing unit."""
    paid_price: np.ndarray
    """What a unit cost on this row, in ten-thousandths of a dollar."""

    def fleet(self, estate: _Estate) -> np.ndarray:
        return estate.resources.fleet[self.resource]


def _usage(estate: _Estate, rng: np.random.Generator) -> _Usage:
    """What each resource used each day; built a month at a time to bound the memory."""
    calendar, resources, fleets = estate.calendar, estate.resources, estate.fleets
    n_days, n_resources = len(calendar.days), len(resources.fleet)

    def per_resource(values: list[object]) -> np.ndarray:
        return np.array(values)[resources.fleet]

    office_hours_only = per_resource([f.schedule == WEEKDAYS for f in fleets])
    in_runs = per_resource([f.schedule == RUNS for f in fleets])
    hourly = per_resource([_OFFERINGS[f.offering].measure == HOURS for f in fleets])
    stored = per_resource([_OFFERINGS[f.offering].measure == STORED for f in fleets])
    growth_rate = per_resource([f.growth for f in fleets])
    busy = per_resource([f.busy for f in fleets])
    on_spot = per_resource([f.purchase == SPOT for f in fleets])
    list_price = estate.prices.list_price[resources.fleet]
    paid_price = estate.prices.paid_price[resources.fleet]
    run_draws = rng.random((n_resources, n_days // _RUN_DAYS + 2))
    spot_share = _SPOT_PRICE_SHARE * rng.lognormal(0.0, 0.08, (len(fleets), n_days))

    months = []
    for month in range(len(calendar.months)):
        days = np.flatnonzero(calendar.month_of_day == month)
        day = np.repeat(days, n_resources).astype(np.int32)
        resource = np.tile(np.arange(n_resources, dtype=np.int32), len(days))
        cells = len(day)
        growth = (1 + growth_rate[resource]) ** calendar.growth_age[day]
        weekday = calendar.weekday[day] < 5

        # Always-on resources lose a few hours to maintenance now and then; dev resources
        # run office hours on weekdays; training runs last _RUN_DAYS days and grow more
        # frequent with the fleet.
        hours = np.where(rng.random(cells) < 0.015, 24 - rng.integers(2, 10, cells), 24)
        hours = np.where(
            office_hours_only[resource], np.where(weekday, rng.integers(6, 15, cells), 0), hours
        )
        run = (day + resources.run_phase[resource]) // _RUN_DAYS
        training = run_draws[resource, run] < busy[resource] * growth
        hours = np.where(in_runs[resource], np.where(training, 24, 0), hours)

        # Storage bills each day's share of a GB-month; traffic and scans dip at weekends.
        volume = resources.size[resource] * growth * 100
        moved = volume * rng.lognormal(0.0, 0.2, cells) * np.where(weekday, 1.0, 0.6)
        quantity = np.where(
            hourly[resource],
            hours * 100,
            np.where(stored[resource], volume / calendar.days_in_month[day], moved),
        ).round()

        spot_price = (list_price[resource] * spot_share[resources.fleet[resource], day]).round()
        paid = np.where(on_spot[resource], spot_price, paid_price[resource])

        kept = (day >= resources.first_day[resource]) & (quantity > 0)
        months.append(
            _Usage(
                resource[kept],
                day[kept],
                quantity[kept].astype(np.int64),
                paid[kept].astype(np.int64),
            )
        )
    return _Usage(*(np.concatenate([getattr(m, f.name) for m in months]) for f in fields(_Usage)))


def _period_columns(
    calendar: _Calendar, charge_start: np.ndarray, charge_end: np.ndarray, month: np.ndarray
) -> dict[str, pa.Array | str | None]:
    return {
        "ChargePeriodStart": _timestamps(charge_start),
        "ChargePeriodEnd": _timestamps(charge_end),
        "BillingPeriodStart": _timestamps(calendar.month_starts[month]),
        "BillingPeriodEnd": _timestamps(calendar.month_starts[month + 1]),
        "BillingCurrency": "USD",
    }


def _usage_rows(estate: _Estate, usage: _Usage) -> pa.Table:
    calendar, prices = estate.calendar, estate.prices
    fleet = usage.fleet(estate)
    committed = prices.committed[fleet]
    effective_micros = usage.paid_price * usage.quantity
    spend_based = np.array(
        [getattr(_commitment(f.commitment), "category", None) == "Spend" for f in estate.fleets]
    )
    month = calendar.month_of_day[usage.day]
    days = calendar.days[usage.day]
    # Columns that hold the same values share one array (USD is also the pricing currency).
    quantity = _decimals(usage.quantity, 2)
    list_price = _decimals(prices.list_price[fleet], 4)
    contracted_price = _decimals(prices.contracted_price[fleet], 4)
    effective = _decimals(effective_micros, 6)
    return _rows(
        len(usage.day),
        {
            **_take(estate.fleet_columns, fleet),
            **_take(estate.resources.columns, usage.resource),
            **_period_columns(calendar, days, days + 1, month),
            "InvoiceId": _invoices(estate, month),
            "ChargeCategory": "Usage",
            "ChargeFrequency": "Usage-Based",
            "PricingCurrency": "USD",
            "PricingQuantity": quantity,
            "ConsumedQuantity": quantity,
            "ListUnitPrice": list_price,
            "ContractedUnitPrice": contracted_price,
            "ListCost": _decimals(prices.list_price[fleet] * usage.quantity, 6),
            "ContractedCost": _decimals(prices.contracted_price[fleet] * usage.quantity, 6),
            "BilledCost": _decimals(np.where(committed, 0, effective_micros), 6),
            "EffectiveCost": effective,
            "CommitmentDiscountQuantity": _decimals(
                np.where(spend_based[fleet], effective_micros, usage.quantity * 10_000),
                6,
                valid=committed,
            ),
            "PricingCurrencyListUnitPrice": list_price,
            "PricingCurrencyContractedUnitPrice": contracted_price,
            "PricingCurrencyEffectiveCost": effective,
        },
    )


def _commitment_unit(commitment: _Commitment | None) -> str | None:
    if commitment is None:
        return None
    return "USD" if commitment.category == "Spend" else "Hours"


def _commitment_rows(estate: _Estate, usage: _Usage) -> pa.Table:
    """Each day's unused commitment and each month's commitment fee."""
    commitments, calendar = estate.commitments, estate.calendar
    if not commitments:
        return _rows(0, {})
    columns = _encode(
        [
            {
                **_account_record(c.account),
                **_offering_record(c.offering),
                "RegionId": c.region,
                "RegionName": _REGIONS[c.region][0],
                "ResourceId": c.id,
                "ResourceName": c.name,
                "ResourceType": c.type,
                "CommitmentDiscountId": c.id,
                "CommitmentDiscountName": c.name,
                "CommitmentDiscountCategory": c.category,
                "CommitmentDiscountType": c.type,
                "CommitmentDiscountUnit": _commitment_unit(c),
                "PricingUnit": "Hours",
                "ConsumedUnit": None,
                "x_PurchaseOption": c.purchase,
                "SkuPriceId": f"{_OFFERINGS[c.offering].sku_id}.{_PRICE_TERM[c.purchase]}",
            }
            for c in commitments
        ]
    )
    rate = np.array([_commitment_rate(c) for c in commitments])
    spend_based = np.array([c.category == "Spend" for c in commitments])
    capacity = np.array([c.nodes * estate.scale * 2400 for c in commitments])  # 1/100 hours

    # Unused hours per commitment and day: its capacity less its covered fleets' hours.
    index = {c.key: i for i, c in enumerate(commitments)}
    commitment_of_fleet = np.array([index.get(f.commitment or "", -1) for f in estate.fleets])
    covered_by = commitment_of_fleet[usage.fleet(estate)]
    covered = covered_by >= 0
    n_days = len(calendar.days)
    used = np.bincount(
        covered_by[covered] * n_days + usage.day[covered],
        weights=usage.quantity[covered],
        minlength=len(commitments) * n_days,
    ).reshape(len(commitments), n_days)
    unused = capacity[:, None] - used.astype(np.int64)
    which, day = np.nonzero(unused > 0)
    idle_hours = unused[which, day]
    idle_cost = rate[which] * idle_hours
    month = calendar.month_of_day[day]
    unused_rows = _rows(
        len(day),
        {
            **_take(columns, which),
            **_period_columns(calendar, calendar.days[day], calendar.days[day] + 1, month),
            "InvoiceId": _invoices(estate, month),
            "ChargeCategory": "Usage",
            "ChargeFrequency": "Usage-Based",
            "ChargeDescription": "Unused commitment",
            "PricingCategory": "Committed",
            "PricingCurrency": "USD",
            "CommitmentDiscountStatus": "Unused",
            "PricingQuantity": _decimals(idle_hours, 2),
            "CommitmentDiscountQuantity": _decimals(
                np.where(spend_based[which], idle_cost, idle_hours * 10_000), 6
            ),
            "ListCost": _decimals(idle_cost, 6),
            "ContractedCost": _decimals(idle_cost, 6),
            "BilledCost": _decimals(np.zeros(len(day)), 6),
            "EffectiveCost": _decimals(idle_cost, 6),
            "PricingCurrencyEffectiveCost": _decimals(idle_cost, 6),
        },
    )

    # The fee for a month's whole capacity, billed monthly and amortised into the usage.
    n_months = len(calendar.months)
    which = np.repeat(np.arange(len(commitments)), n_months)
    month = np.tile(np.arange(n_months), len(commitments))
    fee_hours = capacity[which] * np.diff(calendar.month_starts)[month]
    fee = rate[which] * fee_hours
    starts = calendar.month_starts[month]
    fee_rows = _rows(
        len(month),
        {
            **_take(columns, which),
            **_period_columns(calendar, starts, calendar.month_starts[month + 1], month),
            "InvoiceId": _invoices(estate, month),
            "ChargeCategory": "Purchase",
            "ChargeFrequency": "Recurring",
            "ChargeDescription": "Monthly commitment fee",
            "PricingCategory": "Standard",
            "PricingCurrency": "USD",
            "PricingQuantity": _decimals(fee_hours, 2),
            "ListUnitPrice": _decimals(rate[which], 4),
            "ContractedUnitPrice": _decimals(rate[which], 4),
            "ListCost": _decimals(fee, 6),
            "ContractedCost": _decimals(fee, 6),
            "BilledCost": _decimals(fee, 6),
            "EffectiveCost": _decimals(np.zeros(len(month)), 6),
            "PricingCurrencyEffectiveCost": _decimals(np.zeros(len(month)), 6),
        },
    )
    return pa.concat_tables([unused_rows, fee_rows])


def _one_off_rows(estate: _Estate, one_offs: tuple[_OneOff, ...], once_in: int) -> pa.Table:
    """Credits and adjustments: monthly ones every month, the others in month `once_in`."""
    calendar = estate.calendar
    blocks = [_rows(0, {})]
    for one_off in one_offs:
        if _ACCOUNTS[one_off.account].provider != estate.provider:
            continue
        month = np.arange(len(calendar.months)) if one_off.monthly else np.array([once_in])
        charged = month - 1 if one_off.corrects_previous_month else month
        first = calendar.months[0]
        starts = np.array([_epoch_day(_add_months(first, m)) for m in charged])
        ends = np.array([_epoch_day(_add_months(first, m + 1)) for m in charged])
        amount = _decimals(np.full(len(month), _price(one_off.amount) * 100), 6)
        blocks.append(
            _rows(
                len(month),
                {
                    **_account_record(one_off.account),
                    **_service_record(one_off.offering),
                    **_period_columns(calendar, starts, ends, month),
                    "InvoiceId": _invoices(estate, month),
                    "ChargeCategory": one_off.category,
                    "ChargeClass": "Correction" if one_off.corrects_previous_month else None,
                    "ChargeFrequency": one_off.frequency,
                    "ChargeDescription": one_off.description,
                    "ListCost": amount,
                    "ContractedCost": amount,
                    "BilledCost": amount,
                    "EffectiveCost": amount,
                },
            )
        )
    return pa.concat_tables(blocks)


def _tax_rows(estate: _Estate, usage: _Usage) -> pa.Table:
    """AWS sales tax on billed usage: one Tax row per linked account, service and month."""
    if estate.provider != AWS:
        return _rows(0, {})
    calendar = estate.calendar
    pairs: dict[tuple[str, str], str] = {}
    for fleet in estate.fleets:
        pairs.setdefault((fleet.account, _OFFERINGS[fleet.offering].service), fleet.offering)
    pair_index = {pair: i for i, pair in enumerate(pairs)}
    pair_of_fleet = np.array(
        [pair_index[(f.account, _OFFERINGS[f.offering].service)] for f in estate.fleets]
    )
    fleet = usage.fleet(estate)
    billed = np.where(estate.prices.committed[fleet], 0, usage.paid_price * usage.quantity)
    n_months = len(calendar.months)
    totals = np.bincount(
        pair_of_fleet[fleet] * n_months + calendar.month_of_day[usage.day],
        weights=billed,
        minlength=len(pairs) * n_months,
    )
    pair, month = np.divmod(np.flatnonzero(totals > 0), n_months)
    tax_micros = np.round(totals[pair * n_months + month] * float(_AWS_TAX_RATE))
    tax = _decimals(tax_micros.astype(np.int64), 6)
    columns = _encode(
        [
            {**_account_record(account), **_service_record(offering)}
            for (account, _), offering in pairs.items()
        ]
    )
    starts = calendar.month_starts[month]
    return _rows(
        len(month),
        {
            **_take(columns, pair),
            **_period_columns(calendar, starts, calendar.month_starts[month + 1], month),
            "InvoiceId": _invoices(estate, month),
            "ChargeCategory": "Tax",
            "ChargeFrequency": "Recurring",
            "ChargeDescription": f"Sales tax ({_AWS_TAX_RATE:.0%})",
            "ListCost": tax,
            "ContractedCost": tax,
            "BilledCost": tax,
            "EffectiveCost": tax,
        },
    )


def _other_charges(estate: _Estate, usage: _Usage, once_in: int) -> pa.Table:
    """What the provider bills besides usage: commitments, credits, adjustments, tax."""
    return pa.concat_tables(
        [
            _commitment_rows(estate, usage),
            _one_off_rows(estate, _ONE_OFFS, once_in),
            _tax_rows(estate, usage),
        ]
    )


def _charges(estate: _Estate, usage: _Usage, once_in: int) -> pa.Table:
    """Everything the provider bills."""
    return pa.concat_tables([_usage_rows(estate, usage), _other_charges(estate, usage, once_in)])


def _overmetered(estate: _Estate, usage: _Usage, month: int) -> _Usage:
    """The usage as first delivered: the month's largest internet-egress line over-metered."""
    egress = np.array([f.offering == "aws-egress" for f in estate.fleets])[usage.fleet(estate)]
    in_month = estate.calendar.month_of_day[usage.day] == month
    candidates = np.flatnonzero(egress & in_month)
    line = candidates[np.argmax(usage.quantity[candidates])]
    quantity = usage.quantity.copy()
    quantity[line] += _OVERMETERED_GB * 100
    return replace(usage, quantity=quantity)


# --- GPU metrics: what the DCGM exporters and nvidia-smi saw -----------------------------

# How a cluster's GPUs are used.
TRAINING = "training"  # multi-day jobs at full load; always-on nodes idle between jobs
INFERENCE = "inference"  # load follows the users' day, lower at weekends
DEV = "dev"  # notebooks: busy in office hours on weekdays, idle otherwise


@dataclass(frozen=True)
class _GpuModel:
    name: str
    """As DCGM's modelName label and nvidia-smi's name field give it."""
    memory_mib: int
    idle_w: float
    max_w: float
    profiling: bool
    """DCGM exports its profiling fields (GR_ENGINE_ACTIVE): the data-centre A100 and H100."""


_GPU_MODELS: dict[str, _GpuModel] = {
    "A100": _GpuModel("NVIDIA A100-SXM4-40GB", 40_960, 52.0, 400.0, True),
    "H100": _GpuModel("NVIDIA H100 80GB HBM3", 81_559, 72.0, 700.0, True),
    "A10G": _GpuModel("NVIDIA A10G", 23_028, 24.0, 300.0, False),
    "L4": _GpuModel("NVIDIA L4", 23_034, 16.0, 72.0, False),
}
_NO_GPU = _GpuModel("", 0, 0.0, 0.0, False)
"""What per-fleet arrays hold for CPU fleets, which never report."""


@dataclass(frozen=True)
class _GpuUse:
    """How a cluster's GPUs are used, and whose pods hold them."""

    pattern: str
    namespaces: tuple[str, ...] = ()
    """Teams whose pods hold the GPUs, owner first; each namespace is named after its team."""
    deployment: str | None = None
    """Inference: the serving deployment whose pods hold the GPUs for good."""
    users_zone: str = _OFFICE_TIME_ZONE
    """Where the users are: their day drives an inference cluster's load."""


# fmt: off
_GPU_CLUSTERS: dict[str, _GpuUse] = {
    # The shared training cluster: each job runs in its team's namespace.
    "train-p4d-use1": _GpuUse(TRAINING, ("ml-platform", "nlp-research", "vision",
                                         "search-ranking")),
    "search-train-use1": _GpuUse(TRAINING),
    "recs-train": _GpuUse(TRAINING),
    "vision-train": _GpuUse(TRAINING),
    "nlp-h100": _GpuUse(TRAINING),
    "search-serving-use1": _GpuUse(INFERENCE, ("search-ranking",), "ranker", "America/New_York"),
    "recs-serving": _GpuUse(INFERENCE, ("recommendations",), "two-tower", "America/Chicago"),
    "vision-serving": _GpuUse(INFERENCE, ("vision",), "detector", "Europe/Amsterdam"),
    "ml-dev-usw2": _GpuUse(DEV),
}
# fmt: on
_DEV_HOST = _GpuUse(DEV)
"""GPUs outside any cluster: the nvidia-smi hosts."""

_NVIDIA_SMI_HOSTS = ("recs-dev-001", "jupyter-001")
"""Dev hosts outside any cluster: they log every GPU with nvidia-smi, and have no DCGM."""

_DCGM_GPUS_PER_NODE = 1
"""GPUs per node the demo's exporters write (a real one writes all): this keeps 8 months at
about 1.2 M sample lines. Costs stay whole: a node's cost is split over its reporting GPUs."""
_MAX_GPUS = max(o.gpus for o in _OFFERINGS.values())

_DCGM_METRICS: dict[str, str] = {
    "DCGM_FI_DEV_GPU_UTIL": "GPU utilization (in %).",
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE": "Ratio of time the graphics engine is active.",
    "DCGM_FI_DEV_FB_FREE": "Framebuffer memory free (in MiB).",
    "DCGM_FI_DEV_FB_USED": "Framebuffer memory used (in MiB).",
    "DCGM_FI_DEV_POWER_USAGE": "Power draw (in W).",
}
_NVIDIA_SMI_HEADER = (
    "timestamp, name, uuid, pci.bus_id, utilization.gpu [%], utilization.memory [%], "
    "memory.total [MiB], memory.used [MiB], power.draw [W]"
)
_FIRST_GPU_PCI_DEVICE = {AWS: 0x1E, GCP: 0x03}
_VPC_SECOND_OCTET = {"us-east-1": 12, "us-west-2": 40}
"""AWS private addresses are 10.<this>.x.y, one VPC per region."""

_JOB_DAYS = (3, 10)
_GAP_DAYS = (1, 5)
"""Always-on training nodes: jobs of 3-9 days, with 1-4 idle days between them."""
_DEV_START = 8
"""Office time at which the dev nodes' schedule starts them; the office opens at 9."""
_OFFICE_HOURS = (9, 18)
_LOAD_TROUGH_HOUR = 4
"""Users' local hour of the least inference load; the peak is 12 hours later."""


@dataclass(frozen=True)
class _GpuNodes:
    """Per resource of an estate: how many of its GPUs report, and what the reports call it."""

    gpus: np.ndarray
    """GPUs reporting; 0 for resources that send no GPU metrics."""
    by_nvidia_smi: np.ndarray
    resource_id: list[str | None]
    resource_name: list[str | None]
    hostname: list[str | None]
    uuid_hex: list[str]
    """32 hex digits per (resource, GPU): resource * _MAX_GPUS + gpu."""
    pod_suffix: list[str]
    deployment_hash: dict[str, str]
    """Per cluster: the hash of its serving deployment's current ReplicaSet."""


def _gpu_use(fleet: _Fleet) -> _GpuUse:
    """Its GPU cluster's use; a dev host's for GPUs outside clusters (and, unused, for CPUs)."""
    if fleet.cluster and _OFFERINGS[fleet.offering].gpus:
        return _GPU_CLUSTERS[fleet.cluster]
    return _DEV_HOST


def _gpu_model(fleet: _Fleet) -> _GpuModel:
    return _GPU_MODELS.get(_OFFERINGS[fleet.offering].gpu_model or "", _NO_GPU)


def _gpu_nodes(estate: _Estate, rng: np.random.Generator) -> _GpuNodes:
    resources = estate.resources
    names = resources.columns["ResourceName"].to_pylist()
    count = len(names)
    gpus = np.zeros(count, dtype=np.int64)
    by_nvidia_smi = np.zeros(count, dtype=bool)
    for node, (fleet_index, name) in enumerate(zip(resources.fleet, names, strict=True)):
        fleet = estate.fleets[fleet_index]
        offering = _OFFERINGS[fleet.offering]
        if name in _NVIDIA_SMI_HOSTS:
            gpus[node], by_nvidia_smi[node] = offering.gpus, True
        elif fleet.cluster and offering.gpus:
            gpus[node] = min(offering.gpus, _DCGM_GPUS_PER_NODE)
    # GCE names a host after its instance; EC2 after its private address.
    address = rng.choice(256 * 256, count, replace=False)
    hostnames: list[str | None] = list(names)
    if estate.provider == AWS:
        hostnames = []
        for node, fleet_index in enumerate(resources.fleet):
            region = estate.fleets[fleet_index].region
            domain = "ec2.internal" if region == "us-east-1" else f"{region}.compute.internal"
            octets = (_VPC_SECOND_OCTET[region], *divmod(int(address[node]), 256))
            hostnames.append(f"ip-10-{'-'.join(map(str, octets))}.{domain}")
    clusters = list(_GPU_CLUSTERS)
    return _GpuNodes(
        gpus=gpus,
        by_nvidia_smi=by_nvidia_smi,
        resource_id=resources.columns["ResourceId"].to_pylist(),
        resource_name=names,
        hostname=hostnames,
        uuid_hex=_hex_ids(rng, count * _MAX_GPUS, 32).to_pylist(),
        pod_suffix=_hex_ids(rng, count, 5).to_pylist(),
        deployment_hash=dict(
            zip(clusters, _hex_ids(rng, len(clusters), 10).to_pylist(), strict=True)
        ),
    )


def _gpu_uuid(nodes: _GpuNodes, node: int, gpu: int) -> str:
    digits = nodes.uuid_hex[node * _MAX_GPUS + gpu]
    return f"GPU-{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def _utc_offsets(zone: str, calendar: _Calendar) -> np.ndarray:
    """The zone's UTC offset in whole hours at each hour of the calendar, summer time included."""
    tz = ZoneInfo(zone)
    first = datetime.fromtimestamp(int(calendar.days[0]) * 86_400, UTC)
    return np.array(
        [
            (first + timedelta(hours=h)).astimezone(tz).utcoffset() // timedelta(hours=1)
            for h in range(len(calendar.days) * 24)
        ]
    )


@dataclass(frozen=True)
class _GpuSamples:
    """One reading per reporting GPU per hour its node is billed, as numbers."""

    node: np.ndarray
    """Index into the estate's resources."""
    gpu: np.ndarray
    hour: np.ndarray
    """Hours since the calendar's first midnight, UTC."""
    uptime: np.ndarray
    """Hours the node had been up that day: 0 in the hour it started (or midnight)."""
    util_pct: np.ndarray
    gr_engine_active: np.ndarray
    mem_used_mib: np.ndarray
    power_w: np.ndarray
    pod: np.ndarray
    """Index into `pods`; -1 where no pod holds the GPU."""
    pods: tuple[tuple[str, str], ...]
    """(namespace, pod name) pairs."""


def _gpu_samples(
    estate: _Estate, usage: _Usage, nodes: _GpuNodes, rng: np.random.Generator
) -> _GpuSamples:
    calendar, resources, fleets = estate.calendar, estate.resources, estate.fleets
    n_days, n_resources = len(calendar.days), len(resources.fleet)
    zones = sorted({_gpu_use(f).users_zone for f in fleets} | {_OFFICE_TIME_ZONE})
    offsets = np.stack([_utc_offsets(zone, calendar) for zone in zones])

    # The billed hours of every reporting node: dev nodes from the office's start, always-on
    # nodes that lost hours to maintenance were down from midnight, training runs all day.
    rows = np.flatnonzero(nodes.gpus[usage.resource] > 0)
    node, day, hours = usage.resource[rows], usage.day[rows], usage.quantity[rows] // 100
    office_start = _DEV_START - offsets[zones.index(_OFFICE_TIME_ZONE), day * 24 + _DEV_START]
    weekdays_only = np.array([f.schedule == WEEKDAYS for f in fleets])[resources.fleet[node]]
    start = np.where(weekdays_only, office_start, 24 - hours)
    row = np.repeat(np.arange(len(rows)), hours)
    uptime = np.arange(len(row)) - np.repeat(np.cumsum(hours) - hours, hours)
    hour = day[row] * 24 + start[row] + uptime
    gpus = nodes.gpus[node[row]]
    reading = np.repeat(np.arange(len(row)), gpus)
    gpu = np.arange(len(reading)) - np.repeat(np.cumsum(gpus) - gpus, gpus)
    node, hour, uptime = node[row][reading], hour[reading], uptime[reading]
    count = len(node)

    def per_fleet(values: list[object]) -> np.ndarray:
        return np.array(values)[resources.fleet[node]]

    uses = [_gpu_use(f) for f in fleets]
    pattern = per_fleet([u.pattern for u in uses])
    day = hour // 24
    local_hour = (hour + offsets[per_fleet([zones.index(u.users_zone) for u in uses]), hour]) % 24
    weekday = calendar.weekday[day] < 5

    # Each training cluster alternates jobs and gaps; a job runs in one team's namespace.
    job_periods: dict[str, np.ndarray] = {}
    job_teams: dict[str, np.ndarray] = {}
    for fleet, use in zip(fleets, uses, strict=True):
        if use.pattern != TRAINING or fleet.cluster is None or fleet.cluster in job_periods:
            continue
        jobs, gaps = rng.integers(*_JOB_DAYS, n_days), rng.integers(*_GAP_DAYS, n_days)
        lengths = np.column_stack([jobs, gaps]).ravel()
        ends = np.cumsum(lengths) - rng.integers(0, jobs[0])
        job_periods[fleet.cluster] = np.searchsorted(ends, np.arange(n_days), side="right")
        if use.namespaces:
            others = len(use.namespaces) - 1
            share = [1.0] if not others else [0.4] + [0.6 / others] * others
            job_teams[fleet.cluster] = rng.choice(len(share), len(lengths), p=share)
    no_jobs = np.zeros(n_days, dtype=np.int64)
    periods = np.stack([job_periods.get(f.cluster or "", no_jobs) for f in fleets])
    period = periods[resources.fleet[node], day]

    # Nodes brought up for a run (RUNS) train while billed; always-on ones only during jobs.
    left_idle = per_fleet([f.cluster in IDLE_CLUSTERS for f in fleets]) & (
        day >= n_days - IDLE_DAYS
    )
    in_office = weekday & (local_hour >= _OFFICE_HOURS[0]) & (local_hour < _OFFICE_HOURS[1])
    active = np.select(
        [left_idle, pattern == TRAINING, pattern == DEV],
        [
            False,
            per_fleet([f.schedule == RUNS for f in fleets]) | (period % 2 == 0),
            in_office & (rng.random(count) < 0.65),
        ],
        True,
    )
    load = 0.5 - 0.5 * np.cos(2 * np.pi * (local_hour - _LOAD_TROUGH_HOUR) / 24)
    serving = (8 + 70 * load * np.where(weekday, 1.0, 0.75)) * rng.lognormal(0.0, 0.12, count)
    # A training job runs near full load, dipping now and then for a checkpoint or an eval.
    training = np.where(
        rng.random(count) < 0.04, rng.uniform(10, 45, count), rng.uniform(90, 100, count)
    )
    busy = np.select(
        [pattern == TRAINING, pattern == INFERENCE], [training, serving], rng.uniform(15, 95, count)
    )
    util = np.clip(np.rint(np.where(active, busy, rng.uniform(0, 1.2, count))), 0, 100)
    gr_engine = np.where(
        active, util / 100 * rng.uniform(0.75, 0.95, count), rng.uniform(0, 0.003, count)
    ).round(4)

    # Memory: a training job fills it, a serving model stays loaded even without traffic,
    # notebooks keep what their kernels allocated.
    held = np.select(
        [pattern == TRAINING, pattern == INFERENCE],
        [
            np.where(active, rng.uniform(0.85, 0.97, count), rng.uniform(0, 0.002, count)),
            0.45 + 0.35 * util / 100 + rng.uniform(0, 0.03, count),
        ],
        np.where(active, rng.uniform(0.2, 0.8, count), rng.uniform(0, 0.3, count)),
    )
    models = [_gpu_model(f) for f in fleets]
    memory = per_fleet([m.memory_mib for m in models])
    idle_w, max_w = per_fleet([m.idle_w for m in models]), per_fleet([m.max_w for m in models])
    power = idle_w + (max_w - idle_w) * util / 100 * rng.uniform(0.8, 1.0, count)
    power += rng.uniform(0, 4, count)

    # Serving pods stay deployed; a training job's pods hold the GPUs while the job is on.
    shared = per_fleet([u.pattern == TRAINING and len(u.namespaces) > 0 for u in uses])
    has_pod = (shared & active) | per_fleet([u.deployment is not None for u in uses])
    keys, pod = np.unique(
        (np.where(shared, period, 0) * n_resources + node)[has_pod], return_inverse=True
    )
    pods: list[tuple[str, str]] = []
    for key in keys.tolist():
        period_of_pod, pod_node = divmod(key, n_resources)
        fleet = fleets[resources.fleet[pod_node]]
        use = _gpu_use(fleet)
        suffix = nodes.pod_suffix[pod_node]
        if use.deployment:
            rs_hash = nodes.deployment_hash[fleet.cluster or ""]
            pods.append((use.namespaces[0], f"{use.deployment}-{rs_hash}-{suffix}"))
        else:
            team = use.namespaces[job_teams[fleet.cluster or ""][period_of_pod]]
            pods.append((team, f"{team}-job-{period_of_pod:03d}-worker-{suffix}"))
    pod_of_sample = np.full(count, -1)
    pod_of_sample[has_pod] = pod
    return _GpuSamples(
        node=node,
        gpu=gpu,
        hour=hour,
        uptime=uptime,
        util_pct=util.astype(np.int64),
        gr_engine_active=gr_engine,
        mem_used_mib=np.minimum(np.rint(held * memory), memory).astype(np.int64),
        power_w=power.round(3),
        pod=pod_of_sample,
        pods=tuple(pods),
    )


def _joined(lines: pa.Array) -> memoryview:
    """The strings of `lines` back to back: the stretch of its data buffer they fill."""
    offsets = np.frombuffer(
        lines.buffers()[1], dtype=np.int32, count=len(lines) + 1, offset=lines.offset * 4
    )
    return memoryview(lines.buffers()[2])[offsets[0] : offsets[-1]]


def _text(values: np.ndarray) -> pa.Array:
    """Numbers as text, the shortest that reads back the same (0.25, 87, 1e-07)."""
    return pa.array(values).cast(pa.string())


def _write_openmetrics(
    folder: Path, estate: _Estate, nodes: _GpuNodes, samples: _GpuSamples
) -> None:
    """One OpenMetrics file per cluster and month, as a DCGM exporter's history would export."""
    calendar, fleets = estate.calendar, estate.fleets
    fleet = estate.resources.fleet[samples.node]
    clusters = sorted({f.cluster for f in fleets if f.cluster})
    cluster = np.array([clusters.index(f.cluster) if f.cluster else -1 for f in fleets])[fleet]
    month = calendar.month_of_day[samples.hour // 24]
    # A series is one GPU under one pod (or none). OpenMetrics wants each series' samples
    # together and in time order, within one block per metric.
    n_pods = len(samples.pods) + 1
    series_keys, series = np.unique(
        (samples.node * _MAX_GPUS + samples.gpu) * n_pods + samples.pod + 1, return_inverse=True
    )
    order = np.lexsort((samples.hour, series, month, cluster))
    order = order[~nodes.by_nvidia_smi[samples.node[order]]]
    if len(order) == 0:
        return

    series_labels = []
    for key in series_keys.tolist():
        gpu_key, pod = divmod(key, n_pods)
        node, gpu = divmod(gpu_key, _MAX_GPUS)
        node_fleet = fleets[estate.resources.fleet[node]]
        labels = (
            f'gpu="{gpu}",UUID="{_gpu_uuid(nodes, node, gpu)}",'
            f'modelName="{_gpu_model(node_fleet).name}",Hostname="{nodes.hostname[node]}",'
            f'instance_id="{nodes.resource_id[node]}",cluster="{node_fleet.cluster}"'
        )
        if pod:
            namespace, pod_name = samples.pods[pod - 1]
            labels += f',namespace="{namespace}",pod="{pod_name}"'
        series_labels.append(labels)
    labels = pa.array(series_labels).take(pa.array(series[order]))
    seconds = _text((int(calendar.days[0]) * 24 + samples.hour[order]) * 3600)
    memory = np.array([_gpu_model(f).memory_mib for f in fleets])[fleet[order]]
    profiled = np.array([_gpu_model(f).profiling for f in fleets])[fleet[order]]
    values = {
        "DCGM_FI_DEV_GPU_UTIL": _text(samples.util_pct[order]),
        "DCGM_FI_PROF_GR_ENGINE_ACTIVE": _text(samples.gr_engine_active[order]),
        "DCGM_FI_DEV_FB_FREE": _text(memory - samples.mem_used_mib[order]),
        "DCGM_FI_DEV_FB_USED": _text(samples.mem_used_mib[order]),
        "DCGM_FI_DEV_POWER_USAGE": _text(samples.power_w[order]),
    }

    file_of = cluster[order] * len(calendar.months) + month[order]
    starts = np.flatnonzero(np.diff(file_of, prepend=-1))
    for first, end in zip(starts, [*starts[1:], len(order)], strict=True):
        which = slice(int(first), int(end))
        path = _month_folder(folder, calendar.months[month[order[first]]])
        with open(path / f"{clusters[cluster[order[first]]]}.om", "wb") as out:
            for name, help_text in _DCGM_METRICS.items():
                columns = [labels[which], values[name][which], seconds[which]]
                if name == "DCGM_FI_PROF_GR_ENGINE_ACTIVE":
                    keep = pa.array(profiled[which])
                    columns = [column.filter(keep) for column in columns]
                    if len(columns[0]) == 0:
                        continue
                label_sets, readings, stamps = columns
                lines = pc.binary_join_element_wise(
                    name + "{", label_sets, "} ", readings, " ", stamps, "\n", ""
                )
                out.write(f"# HELP {name} {help_text}\n# TYPE {name} gauge\n".encode())
                out.write(_joined(lines))
            out.write(b"# EOF\n")


def _write_nvidia_smi(
    folder: Path, estate: _Estate, nodes: _GpuNodes, samples: _GpuSamples, rng: np.random.Generator
) -> None:
    """One log per dev host, as `nvidia-smi --query-gpu=... --format=csv -l 3600` appends it."""
    calendar = estate.calendar
    office = _utc_offsets(_OFFICE_TIME_ZONE, calendar)
    for node in np.flatnonzero(nodes.by_nvidia_smi).tolist():
        mine = np.flatnonzero(samples.node == node)
        mine = mine[np.lexsort((samples.gpu[mine], samples.hour[mine]))]
        hour, gpu, uptime = samples.hour[mine], samples.gpu[mine], samples.uptime[mine]
        fleet = estate.fleets[estate.resources.fleet[node]]
        model = _gpu_model(fleet)
        # The log starts at boot, a few minutes after the hour; each later query comes an
        # hour and the few milliseconds the previous one took after it.
        boot_ms = rng.integers(60_000, 400_000, len(calendar.days))[hour // 24]
        local_hour = int(calendar.days[0]) * 24 + hour + office[hour]
        local_ms = local_hour * 3_600_000 + boot_ms + uptime * 37
        stamps = pc.strftime(pa.array(local_ms, pa.timestamp("ms")), format="%Y/%m/%d %H:%M:%S")
        gpus = range(int(nodes.gpus[node]))
        first_device = _FIRST_GPU_PCI_DEVICE[estate.provider]
        uuids = pa.array([_gpu_uuid(nodes, node, g) for g in gpus]).take(pa.array(gpu))
        buses = pa.array([f"00000000:00:{first_device + g:02X}.0" for g in gpus]).take(
            pa.array(gpu)
        )
        util = samples.util_pct[mine]
        memory_util = np.rint(util * rng.uniform(0.1, 0.5, len(mine))).astype(np.int64)
        centiwatts = np.rint(samples.power_w[mine] * 100).astype(np.int64)
        watts = pc.binary_join_element_wise(
            _text(centiwatts // 100), pc.utf8_lpad(_text(centiwatts % 100), 2, "0"), "."
        )
        # Every boot starts nvidia-smi again, which writes its header again into the log.
        header = pc.if_else(pa.array((uptime == 0) & (gpu == 0)), _NVIDIA_SMI_HEADER + "\n", "")
        lines = pc.binary_join_element_wise(
            header,
            stamps,
            f", {model.name}, ",
            uuids,
            ", ",
            buses,
            ", ",
            _text(util),
            " %, ",
            _text(memory_util),
            f" %, {model.memory_mib} MiB, ",
            _text(samples.mem_used_mib[mine]),
            " MiB, ",
            watts,
            " W\n",
            "",
        )
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{nodes.resource_name[node]}.csv").write_bytes(_joined(lines))


def _write_gpu_metrics(
    estate: _Estate,
    usage: _Usage,
    rng: np.random.Generator,
    openmetrics_dir: Path,
    nvidia_smi_dir: Path,
) -> None:
    nodes = _gpu_nodes(estate, rng)
    samples = _gpu_samples(estate, usage, nodes, rng)
    _write_openmetrics(openmetrics_dir, estate, nodes, samples)
    _write_nvidia_smi(nvidia_smi_dir, estate, nodes, samples, rng)


# --- files -------------------------------------------------------------------------------


def _month_of(rows: pa.Table, month: date) -> pa.Table:
    start = pa.scalar(datetime(month.year, month.month, 1, tzinfo=UTC), _TIMESTAMP)
    return rows.filter(pc.equal(rows["BillingPeriodStart"], start))


def _parquet_table(rows: pa.Table) -> pa.Table:
    """Rows as the AWS files carry them: Tags as a map, no GCP-only column."""
    columns = {name: rows[name] for name in _PARQUET_SCHEMA.names}
    columns["Tags"] = _tag_maps(rows["Tags"])
    return pa.table(columns, schema=_PARQUET_SCHEMA)


def _tag_maps(tags: pa.ChunkedArray) -> pa.ChunkedArray:
    """JSON tag sets as maps, a chunk at a time (each chunk has its own dictionary)."""
    chunks = []
    for chunk in tags.chunks:
        tag_sets = [list(json.loads(text).items()) for text in chunk.dictionary.to_pylist()]
        chunks.append(pa.array(tag_sets, type=_TAG_MAP).take(chunk.indices))
    return pa.chunked_array(chunks, type=_TAG_MAP)


def _lines_of(lines: pa.Table, month: date) -> pa.Table:
    start = pa.scalar(datetime(month.year, month.month, 1), pa.timestamp("us"))
    return lines.filter(pc.equal(lines["bill_billing_period_start_date"], start))


def _records_of(records: pa.Table, month: date) -> pa.Table:
    return records.filter(pc.equal(pc.struct_field(records["invoice"], "month"), f"{month:%Y%m}"))


_CUR_EXPORT = "northwind-cur"
_CUR_BUCKET_PREFIX = "s3://northwind-billing/cur"


def _execution_id(month: date, seed: int, delivery: int) -> str:
    """A delivery's id, the same for the same demo (AWS's are random UUIDs)."""
    digest = hashlib.sha256(f"{seed}/{month:%Y-%m}/{delivery}".encode()).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


def _write_cur_delivery(
    export_root: Path,
    month: date,
    lines: pa.Table,
    seed: int,
    *,
    delivery: int,
    manifest_dir: Path | None = None,
) -> Path:
    """One billing period's CUR 2.0 delivery: its Parquet data and its manifest.

    The manifest goes where the export keeps it (`metadata/BILLING_PERIOD=YYYY-MM/`),
    or into `manifest_dir` for a delivery that has not arrived yet.
    """
    period = f"BILLING_PERIOD={month:%Y-%m}"
    execution = _execution_id(month, seed, delivery)
    name = f"{_CUR_EXPORT}-00001.snappy.parquet"
    data_dir = export_root / _CUR_EXPORT / "data" / period / execution
    data_dir.mkdir(parents=True, exist_ok=True)
    pq.write_table(lines, data_dir / name, compression="snappy")
    manifest = {
        "executionId": execution,
        "exportName": _CUR_EXPORT,
        "billingPeriod": f"{month:%Y-%m}",
        "dataFiles": [f"{_CUR_BUCKET_PREFIX}/{_CUR_EXPORT}/data/{period}/{execution}/{name}"],
    }
    folder = manifest_dir or export_root / _CUR_EXPORT / "metadata" / period
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{_CUR_EXPORT}-Manifest.json"
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def deliver_restatement(files: DemoFiles) -> Path:
    """AWS re-delivers the restated month: its new manifest replaces the period's current one."""
    target = (
        files.aws_dir / _CUR_EXPORT / "metadata" / f"BILLING_PERIOD={files.restated_month:%Y-%m}"
    )
    return Path(shutil.copy2(files.restated_manifest, target / files.restated_manifest.name))


def _month_folder(root: Path, month: date) -> Path:
    folder = root / f"{month:%Y-%m}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# --- the public API ----------------------------------------------------------------------


def generate(
    out_dir: Path, *, seed: int = 7, months: int = 8, end_month: date | None = None
) -> DemoFiles:
    """Write the demo organisation's AWS CUR and GCP billing export and its GPU metrics for
    `months` months.

    The last month is `end_month` (default: the last complete calendar month, UTC). The
    folders this writes are emptied first, so a shorter rerun leaves no stale months.
    """
    if months < 1:
        raise ValueError(f"months must be at least 1, got {months}")
    last = (end_month or _last_complete_month()).replace(day=1)
    calendar = _calendar(_add_months(last, 1 - months), months)
    rng = np.random.default_rng(seed)
    once_in = min(1, months - 1)
    restated = months // 2

    aws = _estate(AWS, calendar, rng, scale=1)
    aws_usage = _usage(aws, rng)
    aws_rows = _charges(aws, _overmetered(aws, aws_usage, restated), once_in)
    gcp = _estate(GCP, calendar, rng, scale=1)
    gcp_usage = _usage(gcp, rng)
    gcp_rows = _charges(gcp, gcp_usage, once_in)

    restated_month = calendar.months[restated]
    corrected = _month_of(_charges(aws, aws_usage, once_in), restated_month)
    late_credit = _one_off_rows(aws, (_LATE_CREDIT,), restated)
    restated_rows = pa.concat_tables([corrected, late_credit])

    root = Path(out_dir)
    aws_dir, gcp_dir = root / "aws-cur", root / "gcp-billing-export"
    restatement_dir = root / "aws-cur-restatement"
    openmetrics_dir, nvidia_smi_dir = root / "gpu-openmetrics", root / "nvidia-smi"
    for folder in (aws_dir, gcp_dir, restatement_dir, openmetrics_dir, nvidia_smi_dir):
        if folder.exists():
            shutil.rmtree(folder)
    aws_lines = demo_exports.aws_cur(aws_rows)
    gcp_records = demo_exports.gcp_export(gcp_rows)
    for month in calendar.months:
        _write_cur_delivery(aws_dir, month, _lines_of(aws_lines, month), seed, delivery=1)
        pq.write_table(
            _records_of(gcp_records, month),
            _month_folder(gcp_dir, month) / "billing_export-000000000000.parquet",
        )
    restated_lines = demo_exports.aws_cur(restated_rows)
    restated_manifest = _write_cur_delivery(
        aws_dir, restated_month, restated_lines, seed, delivery=2, manifest_dir=restatement_dir
    )
    restated_dir = aws_dir / _CUR_EXPORT / "data" / f"BILLING_PERIOD={restated_month:%Y-%m}"
    restated_dir /= _execution_id(restated_month, seed, 2)
    # The GPUs draw from their own stream, so the billing files stay as they were without them.
    gpu_rng = np.random.default_rng([seed, 1])
    for estate, usage in ((aws, aws_usage), (gcp, gcp_usage)):
        _write_gpu_metrics(estate, usage, gpu_rng, openmetrics_dir, nvidia_smi_dir)
    return DemoFiles(
        root=root,
        months=calendar.months,
        aws_dir=aws_dir,
        gcp_dir=gcp_dir,
        restated_month=restated_month,
        restated_dir=restated_dir,
        restated_manifest=restated_manifest,
        rows=aws_lines.num_rows + gcp_records.num_rows,
        gpu_openmetrics_dir=openmetrics_dir,
        nvidia_smi_dir=nvidia_smi_dir,
    )


def focus_table(
    n_rows: int, *, seed: int = 7, start: date = date(2026, 1, 1), months: int = 3
) -> pa.Table:
    """`n_rows` FOCUS 1.2 rows of the demo organisation grown to size, typed as the AWS files.

    Every fleet gets `scale` times its resources and every commitment `scale` times its
    capacity, for the smallest scale with enough rows; the usage rows are then thinned
    evenly to make exactly `n_rows` (so the commitments look a little less used than in
    `generate`'s files). Text columns are dictionary-encoded to keep 10 M rows in a few GB.
    """
    if n_rows < 0 or months < 1:
        raise ValueError(f"need n_rows >= 0 and months >= 1, got {n_rows} and {months}")
    calendar = _calendar(start.replace(day=1), months)
    once_in = min(1, months - 1)
    scale = 1
    while True:
        rng = np.random.default_rng(seed)
        estates = [_estate(provider, calendar, rng, scale) for provider in (AWS, GCP)]
        usages = [_usage(estate, rng) for estate in estates]
        others = [_other_charges(e, u, once_in) for e, u in zip(estates, usages, strict=True)]
        n_usage = sum(len(u.day) for u in usages)
        n_other = sum(t.num_rows for t in others)
        if n_usage + n_other >= n_rows:
            break
        # Rows grow in proportion to scale: jump straight to (about) the size needed.
        scale = max(scale + 1, math.ceil(scale * n_rows * 1.02 / max(n_usage + n_other, 1)))

    wanted = max(n_rows - n_other, 0)
    first = wanted * len(usages[0].day) // n_usage
    usages = [_thinned(usages[0], first), _thinned(usages[1], wanted - first)]
    blocks = [_usage_rows(e, u) for e, u in zip(estates, usages, strict=True)]
    del usages  # the numbers are in the blocks now; free them before the tags grow
    return _parquet_table(pa.concat_tables([*blocks, *others]).slice(0, n_rows))


def _thinned(usage: _Usage, count: int) -> _Usage:
    """`count` of the usage rows, spread evenly over them."""
    keep = np.arange(count, dtype=np.int64) * len(usage.day) // max(count, 1)
    return _Usage(*(getattr(usage, f.name)[keep] for f in fields(_Usage)))
