"""`adkit cost ENV`: a monthly estimate from the config and the rendered templates, offline.

Two columns: the idle floor (nothing in use: what bills by the hour or the month anyway) and a stated busy
month (`busy_profile` in prices.json). Each line is (component, item, price key, idle quantity, busy quantity);
prices come from generator/ops/prices.json, per region, each with its AWS pricing page and the day it was
recorded. Not covered: data transfer out to the internet, CloudWatch metrics and Logs storage beyond the first
month, Performance Insights beyond the free 7 days, the account-level bootstrap and pipeline stacks, taxes.
A new platform (ECS Fargate for workers or the backend) adds its lines in `usage` and its prices in the file.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

from generator.deploy.errors import UsageError
from generator.deploy.templates import Loaded

PRICES_FILE = Path(__file__).with_name("prices.json")


@cache
def price_book() -> dict:
    """prices.json, parsed once."""
    return json.loads(PRICES_FILE.read_text())


@dataclass(frozen=True)
class Item:
    component: str      # Component tag value: network, backend, data, ...
    item: str           # what is billed, in AWS's words
    price_key: str      # key in prices.json
    idle: float         # quantity in the idle month (unit of the price)
    busy: float         # quantity in the busy month
    basis: str          # how the quantity was computed


@dataclass(frozen=True)
class Priced:
    component: str
    item: str
    basis: str
    unit_price: float
    unit: str
    idle_usd: float
    busy_usd: float
    source: str
    read: str
    checked: bool


@dataclass(frozen=True)
class Estimate:
    env: str
    region: str
    region_note: str
    lines: list[Priced]
    budget_usd: float

    @property
    def idle_usd(self) -> float:
        return round(sum(line.idle_usd for line in self.lines), 2)

    @property
    def busy_usd(self) -> float:
        return round(sum(line.busy_usd for line in self.lines), 2)

    def by_component(self) -> dict[str, tuple[float, float]]:
        totals: dict[str, tuple[float, float]] = {}
        for line in self.lines:
            idle, busy = totals.get(line.component, (0.0, 0.0))
            totals[line.component] = (round(idle + line.idle_usd, 2), round(busy + line.busy_usd, 2))
        return totals

    @property
    def warning(self) -> str | None:
        if self.idle_usd > self.budget_usd:
            return (f"the idle floor alone ({self.idle_usd:.2f} USD) exceeds budget.monthly_usd "
                    f"({self.budget_usd:.2f} USD): the budget alerts every month even when nobody uses {self.env}")
        if self.busy_usd > self.budget_usd:
            return (f"the busy month ({self.busy_usd:.2f} USD) exceeds budget.monthly_usd ({self.budget_usd:.2f} USD)")
        return None

    def as_json(self) -> dict:
        return {"environment": self.env, "region": self.region, "region_note": self.region_note,
                "currency": "USD", "idle_usd": self.idle_usd, "busy_usd": self.busy_usd,
                "budget_usd": self.budget_usd, "warning": self.warning,
                "components": {k: {"idle_usd": v[0], "busy_usd": v[1]} for k, v in self.by_component().items()},
                "busy_profile": price_book()["busy_profile"], "lines": [asdict(line) for line in self.lines]}


def _resources(loaded: Loaded) -> list[dict]:
    return [res for _, item in loaded.walk() for res in item.body.get("Resources", {}).values()]


def _gb(text: str) -> float:
    return float(text.split()[0])


def usage(config, loaded: Loaded) -> list[Item]:
    """What the environment bills for, in the prices' units, idle and busy. Pure: config and templates in."""
    book = price_book()
    hours, busy, idle = book["hours_per_month"], book["busy_profile"], book["idle_profile"]
    resources = _resources(loaded)
    count = Counter(res.get("Type", "") for res in resources)
    items: list[Item] = []

    def add(component, item, key, idle_q, busy_q, basis):
        items.append(Item(component, item, key, round(idle_q, 4), round(busy_q, 4), basis))

    # network
    nat, eips = count["AWS::EC2::NatGateway"], count["AWS::EC2::EIP"]
    if nat:
        add("network", f"NAT gateway hours ({nat})", "nat.hour", nat * hours, nat * hours, f"{nat} x {hours} h")
        add("network", "NAT data processed", "nat.gb", 0, busy["nat_gb"], f"busy: {busy['nat_gb']} GB")
    if eips:
        add("network", f"public IPv4 addresses ({eips})", "ipv4.hour", eips * hours, eips * hours,
            f"{eips} x {hours} h")
    # backend: App Runner (provisioned memory always, vCPU only while active)
    if count["AWS::AppRunner::Service"]:
        b = config.backend
        n, mem, cpu = b.min_instances, _gb(b.memory), _gb(b.cpu)
        add("backend", f"App Runner memory ({n} x {b.memory})", "apprunner.memory_gb_hour", n * mem * hours,
            n * mem * hours, f"min_instances {n} x {mem:g} GB x {hours} h")
        add("backend", f"App Runner active vCPU ({n} x {b.cpu})", "apprunner.vcpu_hour", 0,
            n * cpu * busy["backend_active_hours"], f"busy: {n} x {cpu:g} vCPU x {busy['backend_active_hours']} h")
    items += _fargate(loaded, hours, busy["worker_active_hours"])
    acls = [r for r in resources if r.get("Type") == "AWS::WAFv2::WebACL"]
    if acls:
        rules = sum(len((r.get("Properties") or {}).get("Rules") or []) for r in acls)
        add("backend", f"WAF web ACL ({len(acls)})", "waf.web_acl_month", len(acls), len(acls), "per month")
        add("backend", f"WAF rules and managed rule groups ({rules})", "waf.rule_month", rules, rules, "per month")
        add("backend", "WAF requests inspected", "waf.requests_million", 0, busy["requests_million"],
            f"busy: {busy['requests_million']} M requests")
    # data
    instances = count["AWS::RDS::DBInstance"]
    if count["AWS::RDS::DBCluster"]:
        d = config.database
        busy_acu = max(d.min_acu, min(d.max_acu, busy["db_busy_acu"]))
        quiet = hours - busy["db_busy_hours"]
        paused = " (0 = auto-paused)" if d.min_acu == 0 else ""
        add("data", f"Aurora Serverless v2 capacity ({instances} instance(s))", "aurora.acu_hour",
            instances * d.min_acu * hours, instances * (d.min_acu * quiet + busy_acu * busy["db_busy_hours"]),
            f"idle: {instances} x min_acu {d.min_acu:g}{paused} x {hours} h; busy: {busy_acu:g} ACU for "
            f"{busy['db_busy_hours']} h")
        add("data", "Aurora storage", "aurora.storage_gb_month", idle["db_storage_gb"], busy["db_storage_gb"],
            f"{idle['db_storage_gb']} / {busy['db_storage_gb']} GB")
        add("data", "Aurora I/O requests", "aurora.io_million", 0, busy["db_io_million"],
            f"busy: {busy['db_io_million']} M")
    if count["AWS::Backup::BackupVault"]:
        add("data", "AWS Backup storage (Aurora)", "backup.aurora_gb_month", idle["db_storage_gb"],
            busy["db_storage_gb"], "about one full copy of the database")
    if count["AWS::S3::Bucket"]:
        add("data", f"S3 Standard storage ({count['AWS::S3::Bucket']} buckets)", "s3.standard_gb_month", 0,
            busy["s3_gb"], f"busy: {busy['s3_gb']} GB of content")
    # security
    if count["AWS::KMS::Key"]:
        keys = count["AWS::KMS::Key"]
        add("security", f"KMS customer managed keys ({keys})", "kms.key_month", keys, keys, "per month")
    if count["AWS::CloudTrail::Trail"]:
        add("security", "CloudTrail management events (additional trail)", "cloudtrail.events_100k",
            idle["trail_events_100k"], busy["trail_events_100k"], "x 100,000 events; free if it is the first copy")
    # secrets: the application's secrets plus Aurora's managed master secret
    managed = sum(1 for r in resources if r.get("Type") == "AWS::RDS::DBCluster"
                  and (r.get("Properties") or {}).get("ManageMasterUserPassword"))
    secrets = count["AWS::SecretsManager::Secret"] + managed
    if secrets:
        add("secrets", f"Secrets Manager secrets ({secrets})", "secrets.secret_month", secrets, secrets,
            "per month, including Aurora's managed master secret" if managed else "per month")
        add("secrets", "Secrets Manager API calls", "secrets.api_10k", 0, busy["secret_api_calls_10k"],
            "x 10,000 calls")
    # frontend
    if count["AWS::Amplify::App"]:
        add("frontend", "Amplify build minutes", "amplify.build_minute", 0, busy["amplify_build_minutes"],
            f"busy: {busy['amplify_build_minutes']} min")
        add("frontend", "Amplify SSR requests", "amplify.ssr_requests_million", 0, busy["ssr_requests_million"],
            f"busy: {busy['ssr_requests_million']} M")
        add("frontend", "Amplify SSR duration", "amplify.ssr_gb_hour", 0, busy["ssr_gb_hours"],
            f"busy: {busy['ssr_gb_hours']} GB-h")
    # monitoring
    for rtype, key, what in (("AWS::CloudWatch::Alarm", "cloudwatch.alarm_month", "CloudWatch alarms"),
                             ("AWS::CloudWatch::Dashboard", "cloudwatch.dashboard_month", "CloudWatch dashboards"),
                             ("AWS::Budgets::Budget", "budgets.budget_month", "AWS Budgets budgets")):
        if count[rtype]:
            add("monitoring", f"{what} ({count[rtype]})", key, count[rtype], count[rtype], "per month")
    if count["AWS::Logs::LogGroup"]:
        add("monitoring", "CloudWatch Logs ingestion", "cloudwatch.logs_ingest_gb", idle["logs_gb"], busy["logs_gb"],
            f"{idle['logs_gb']} / {busy['logs_gb']} GB (application, flow, WAF, database logs)")
    return items


def _fargate(loaded: Loaded, hours: int, active_hours: int) -> list[Item]:
    """ECS services on Fargate (workers; an ECS Express Mode backend, whose Cpu/Memory and MinTaskCount sit on
    the service, plus its load balancer): vCPU and memory of each task definition with literal Cpu/Memory
    (CPU units and MiB: https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task_definition_parameters.html)
    times the service's literal DesiredCount (else 1), all month. Component: the nested stack's lower-cased name."""
    items: list[Item] = []
    for label, item in loaded.walk():
        resources = item.body.get("Resources", {})
        for lid, res in sorted(resources.items()):
            props = res.get("Properties") or {}
            if res.get("Type") == "AWS::ECS::Service":
                ref = props.get("TaskDefinition")
                task = resources.get(ref.get("Ref")) if isinstance(ref, dict) else None
                sizes = (task or {}).get("Properties") or {}
                count = props.get("DesiredCount", 1)
            elif res.get("Type") == "AWS::ECS::ExpressGatewayService":   # Cpu/Memory on the service itself
                sizes = props
                count = (props.get("ScalingTarget") or {}).get("MinTaskCount", 1)
            else:
                continue
            try:
                vcpu, gb = float(sizes["Cpu"]) / 1024, float(sizes["Memory"]) / 1024
            except (KeyError, TypeError, ValueError):
                continue   # not literal: nothing to price offline
            tasks = count if isinstance(count, int) else 1
            component = (label.split("/")[-1] or "root").lower()
            # a service that scales from zero (workers on an empty queue) runs one task while busy
            busy_hours = tasks * hours if tasks else active_hours
            basis = (f"{tasks} task(s) x {{}} x {hours} h" if tasks
                     else f"idle: 0 tasks; busy: 1 task x {{}} x {active_hours} h")
            items.append(Item(component, f"Fargate vCPU ({lid}: {vcpu:g} vCPU per task)", "fargate.vcpu_hour",
                              tasks * vcpu * hours, vcpu * busy_hours, basis.format(f"{vcpu:g} vCPU")))
            items.append(Item(component, f"Fargate memory ({lid}: {gb:g} GB per task)", "fargate.gb_hour",
                              tasks * gb * hours, gb * busy_hours, basis.format(f"{gb:g} GB")))
            if res.get("Type") == "AWS::ECS::ExpressGatewayService":
                items.append(Item(component, "Application Load Balancer (ECS Express Mode)", "elb.alb_hour", hours,
                                  hours, f"1 x {hours} h; Express Mode can share one ALB between services, LCUs "
                                  "not included"))
    return items


def price(items: list[Item], region: str) -> list[Priced]:
    """Each item at the region's price. Raises UsageError for a region prices.json does not carry."""
    book = price_book()
    if region not in book["regions"]:
        raise UsageError(f"no prices for region {region}", f"generator/ops/prices.json carries "
                         f"{', '.join(book['regions'])}", "add the region's figures to every row of prices.json "
                         "(with the pricing page and the date you read it), or pass --region with a carried one")
    result = []
    for item in items:
        entry = book["prices"][item.price_key]
        unit = entry[region]
        result.append(Priced(item.component, item.item, item.basis, unit, entry["unit"],
                             round(item.idle * unit, 2), round(item.busy * unit, 2), entry["source"],
                             entry["read"], bool(entry["checked"])))
    return result


def estimate(config, loaded: Loaded, region: str | None = None) -> Estimate:
    """The estimate for one environment: `region` overrides the config's; unset in both: us-east-1, said so."""
    chosen = region or config.region
    note = "the environment's region" if chosen == config.region and chosen else \
        "given with --region" if region else "config sets no region: priced as us-east-1"
    chosen = chosen or "us-east-1"
    return Estimate(config.name, chosen, note, price(usage(config, loaded), chosen), config.budget.monthly_usd)


def table(estimate_: Estimate) -> list[str]:
    """The estimate as text lines: one per item, component subtotals, totals, budget."""
    e = estimate_
    width = max((len(line.item) for line in e.lines), default=10)
    out = [f"{e.env}: monthly estimate in {e.region} ({e.region_note}), USD",
           f"  {'component':<11} {'item':<{width}} {'idle':>9} {'busy':>9}  basis"]
    for component, (idle, busy) in e.by_component().items():
        for line in (x for x in e.lines if x.component == component):
            mark = "" if line.checked else " *"
            out.append(f"  {component:<11} {line.item:<{width}} {line.idle_usd:>9.2f} {line.busy_usd:>9.2f}  "
                       f"{line.basis}{mark}")
        out.append(f"  {'':<11} {'subtotal ' + component:>{width}} {idle:>9.2f} {busy:>9.2f}")
    out.append(f"  {'TOTAL':<11} {'':<{width}} {e.idle_usd:>9.2f} {e.busy_usd:>9.2f}  budget.monthly_usd "
               f"{e.budget_usd:.2f}")
    out.append("  busy = " + ", ".join(f"{k} {v}" for k, v in price_book()["busy_profile"].items() if k != "about"))
    out.append("  * price recorded from the AWS pricing page without re-reading it that day "
               "(generator/ops/prices.json: source, read, checked)")
    return out


# What a resource left behind by `adkit destroy` keeps costing: CloudFormation type -> (price key, what is billed).
KEEPING = {
    "AWS::S3::Bucket": ("s3.standard_gb_month", "per GB stored, until emptied and deleted"),
    "AWS::KMS::Key": ("kms.key_month", "per month, until its deletion is scheduled"),
    "AWS::Logs::LogGroup": ("cloudwatch.logs_storage_gb_month", "per GB stored, until it expires or is deleted"),
    "AWS::Backup::BackupVault": ("backup.aurora_gb_month", "per GB of recovery points, until they expire"),
    "AWS::RDS::DBCluster": ("backup.aurora_gb_month", "per GB of the final snapshot, until deleted"),
    "AWS::RDS::DBInstance": ("backup.aurora_gb_month", "per GB of the final snapshot, until deleted"),
    "AWS::SecretsManager::Secret": ("secrets.secret_month", "per month, until deleted"),
}


def keeping_cost(resource_type: str, region: str) -> str:
    """What a retained resource of `resource_type` costs to keep in `region`, as text (from prices.json)."""
    known = KEEPING.get(resource_type)
    if known is None:
        return "not in the price list (see the AWS pricing page of the service)"
    entry = price_book()["prices"][known[0]]
    value = entry.get(region)
    if value is None:
        return f"no price for {region} in generator/ops/prices.json ({entry['source']})"
    return f"{value:g} USD {known[1]} ({entry['source']})"
