"""`adkit diagram ENV`: an architecture diagram drawn from the rendered templates (templates/<env>/), offline.

Model first (pure: templates in, `Graph` out; the tests check it against the templates), then Graphviz DOT
text, then `dot` (Graphviz from Debian, `make graphviz`) for SVG or PNG. Nested stacks are groups; the network
stack shows the VPC tiers (public / private app / isolated data subnets); arrows are the data paths:
browser -> Amplify and browser -> WAF -> backend -> Aurora / S3 / Secrets Manager, queue -> workers.

Why DOT directly rather than the `diagrams` package: its SVG output links every AWS icon as a PNG file by
absolute path inside the local site-packages, so a committed SVG shows broken images everywhere else; plain
DOT shapes keep the SVG self-contained and byte-for-byte deterministic. Not imported by `make render`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from generator.deploy.errors import UsageError
from generator.deploy.templates import Loaded, descriptions

# CloudFormation type -> (kind, shape, fill colour). Types not listed are not drawn (roles, policies, ...).
KINDS: dict[str, tuple[str, str, str]] = {
    "AWS::Amplify::App": ("frontend", "box", "#ffd8b1"),
    "AWS::Amplify::Branch": ("frontend", "box", "#ffd8b1"),
    "AWS::WAFv2::WebACL": ("edge", "hexagon", "#f4cccc"),
    "AWS::AppRunner::Service": ("compute", "box3d", "#ffe599"),
    "AWS::ECS::Service": ("compute", "box3d", "#ffe599"),
    "AWS::ECS::ExpressGatewayService": ("compute", "box3d", "#ffe599"),
    "AWS::ECS::Cluster": ("compute", "box", "#fff2cc"),
    "AWS::Lambda::Function": ("compute", "component", "#fff2cc"),
    "AWS::RDS::DBCluster": ("data", "cylinder", "#c9daf8"),
    "AWS::RDS::DBInstance": ("data", "cylinder", "#dfe7f7"),
    "AWS::S3::Bucket": ("data", "folder", "#b6d7a8"),
    "AWS::SecretsManager::Secret": ("data", "note", "#d9d2e9"),
    "AWS::SQS::Queue": ("data", "cds", "#ead1dc"),
    "AWS::DynamoDB::Table": ("data", "cylinder", "#c9daf8"),
    "AWS::Backup::BackupVault": ("data", "cylinder", "#d0e0e3"),
    "AWS::KMS::Key": ("security", "octagon", "#d9d9d9"),
    "AWS::CloudTrail::Trail": ("security", "box", "#d9d9d9"),
    "AWS::SNS::Topic": ("ops", "cds", "#fce5cd"),
    "AWS::CloudWatch::Dashboard": ("ops", "tab", "#fce5cd"),
    "AWS::EC2::VPC": ("network", "box", "#eeeeee"),
    "AWS::EC2::InternetGateway": ("network", "box", "#eeeeee"),
    "AWS::EC2::NatGateway": ("network", "box", "#eeeeee"),
    "AWS::EC2::VPCEndpoint": ("network", "box", "#eeeeee"),
}
# Resources that hold data: every one must appear in the diagram (the tests check it).
DATA_STORES = frozenset({t for t, (kind, _, _) in KINDS.items() if kind == "data"})
# Counted in one node per stack instead of one node each.
COUNTED = {"AWS::CloudWatch::Alarm": "alarms", "AWS::Budgets::Budget": "budgets"}
TIERS = (("Public", "public subnets (NAT, IGW)"), ("App", "private app subnets (VPC connector / tasks)"),
         ("Data", "isolated data subnets (Aurora)"))
BROWSER = "browser"
SERVICES = ("AWS::AppRunner::Service", "AWS::ECS::ExpressGatewayService", "AWS::ECS::Service")


@dataclass(frozen=True)
class Node:
    id: str               # unique in the graph: <stack label>/<logical id>, or a synthetic id
    label: str
    kind: str
    resource_type: str = ""
    shape: str = "box"
    fill: str = "#ffffff"


@dataclass
class Group:
    label: str            # nested stack label ('' for the root)
    title: str
    nodes: list[Node] = field(default_factory=list)
    tiers: list[Node] = field(default_factory=list)   # the network stack's subnet tiers


@dataclass
class Graph:
    groups: list[Group]
    edges: list[tuple[str, str, str]]   # data paths: (from id, to id, label)
    external: list[Node]
    links: list[tuple[str, str, str]] = field(default_factory=list)   # placement (dashed): runs in, encrypts

    def nodes(self) -> list[Node]:
        return [*self.external, *(n for g in self.groups for n in (*g.tiers, *g.nodes))]

    def of_type(self, resource_type: str) -> list[Node]:
        return [n for n in self.nodes() if n.resource_type == resource_type]


def _short(text: str, limit: int = 42) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def build(loaded: Loaded, env: str) -> Graph:
    """The graph of one environment's rendered templates (root and nested children). Pure."""
    root_texts = descriptions(loaded.body)
    groups: list[Group] = []
    for label, item in loaded.walk():
        if not label:
            continue
        group = Group(label, _short(root_texts.get(label.split("/")[-1]) or label, 60))
        resources = item.body.get("Resources", {})
        texts = descriptions(item.body)
        counted: dict[str, int] = {}
        subnets: dict[str, int] = {}
        for lid, res in sorted(resources.items()):
            rtype = res.get("Type", "")
            if rtype == "AWS::EC2::Subnet":
                tier = next((t for t, _ in TIERS if lid.startswith(t)), "Other")
                subnets[tier] = subnets.get(tier, 0) + 1
            if rtype in COUNTED:
                counted[rtype] = counted.get(rtype, 0) + 1
            if rtype not in KINDS:
                continue
            kind, shape, fill = KINDS[rtype]
            text = texts.get(lid) or lid
            group.nodes.append(Node(f"{label}/{lid}", f"{_short(text)}\n{rtype.split('::', 1)[1]}", kind, rtype,
                                    shape, fill))
        for rtype, count in sorted(counted.items()):
            group.nodes.append(Node(f"{label}/{COUNTED[rtype]}", f"{count} {COUNTED[rtype]}", "ops", rtype,
                                    "tab", "#fce5cd"))
        for tier, title in (*TIERS, ("Other", "other subnets")):
            if subnets.get(tier):
                group.tiers.append(Node(f"{label}/tier-{tier.lower()}", f"{title}\n{subnets[tier]} x AWS::EC2::Subnet",
                                        "network", "AWS::EC2::Subnet", "box", "#f3f3f3"))
        groups.append(group)
    browser = Node(BROWSER, f"browser ({env} users)", "external", "", "oval", "#ffffff")
    return Graph(groups, _edges(groups), [browser], _links(groups))


def _edges(groups: list[Group]) -> list[tuple[str, str, str]]:
    def first(*types: str, kind_hint: str = "") -> list[Node]:
        return [n for g in groups for n in g.nodes if n.resource_type in types
                and (not kind_hint or kind_hint in n.id.lower())]

    amplify = first("AWS::Amplify::Branch") or first("AWS::Amplify::App")
    waf = first("AWS::WAFv2::WebACL")
    services = first(*SERVICES)
    workers = [n for n in services if "worker" in (n.id.rsplit("/", 1)[-1] + n.label).lower()]
    backends = [n for n in services if n not in workers]
    aurora = first("AWS::RDS::DBCluster")
    buckets = [n for n in first("AWS::S3::Bucket") if "content" in n.id.lower()]
    secrets = first("AWS::SecretsManager::Secret")
    queues = [q for q in first("AWS::SQS::Queue") if "dead" not in (q.id + q.label).lower()]   # not the DLQ
    vaults = first("AWS::Backup::BackupVault")
    edges: list[tuple[str, str, str]] = []
    edges += [(BROWSER, a.id, "HTTPS (pages)") for a in amplify[:1]]
    front_door = waf[:1] or backends[:1]
    edges += [(BROWSER, w.id, "HTTPS (API, SSE)") for w in front_door]
    edges += [(w.id, b.id, "allowed requests") for w in waf[:1] for b in backends]
    for service in backends + workers:
        edges += [(service.id, a.id, "SQL over TLS") for a in aurora]
        edges += [(service.id, b.id, "objects") for b in buckets]
        edges += [(service.id, s.id, "secret values") for s in secrets]
    edges += [(b.id, q.id, "jobs") for b in backends for q in queues]
    edges += [(q.id, w.id, "jobs") for q in queues for w in workers]
    edges += [(a.id, v.id, "daily backup") for a in aurora for v in vaults]
    return edges


def _links(groups: list[Group]) -> list[tuple[str, str, str]]:
    """Where things run (subnet tiers) and what alerts go where: drawn dashed, they are not data paths."""
    tiers = {n.id.rsplit("-", 1)[-1]: n for g in groups for n in g.tiers}
    nodes = [n for g in groups for n in g.nodes]
    links: list[tuple[str, str, str]] = []
    for node in nodes:
        if node.resource_type in SERVICES and "app" in tiers:
            links.append((node.id, tiers["app"].id, "VPC egress"))
        elif node.resource_type in ("AWS::RDS::DBCluster",) and "data" in tiers:
            links.append((node.id, tiers["data"].id, "runs in"))
        elif node.resource_type == "AWS::EC2::NatGateway" and "public" in tiers:
            links.append((tiers["app"].id if "app" in tiers else node.id, node.id, "outbound"))
    apps = [n for n in nodes if n.resource_type == "AWS::Amplify::App"]
    links += [(a.id, b.id, "branch") for a in apps for b in nodes if b.resource_type == "AWS::Amplify::Branch"]
    topics = [n for n in nodes if n.resource_type == "AWS::SNS::Topic"]
    links += [(n.id, t.id, "notify") for n in nodes if n.resource_type == "AWS::CloudWatch::Alarm" for t in topics]
    return links


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(graph: Graph, title: str) -> str:
    """Graphviz DOT text of the graph; the same graph gives the same bytes."""
    out = ["digraph architecture {", f"  label={_quote(title)}; labelloc=t; fontsize=20; fontname=Helvetica;",
           "  rankdir=LR; compound=true; nodesep=0.2; ranksep=0.5;",
           '  node [fontname=Helvetica, fontsize=10, style="filled,rounded"];',
           "  edge [fontname=Helvetica, fontsize=9, color=\"#444444\"];"]
    for node in graph.external:
        out.append(f"  {_quote(node.id)} [label={_quote(node.label)}, shape={node.shape}, fillcolor=\"{node.fill}\"];")
    for index, group in enumerate(graph.groups):
        out.append(f"  subgraph cluster_{index} {{")
        out.append(f"    label={_quote(group.label + ': ' + group.title)}; style=\"rounded,dashed\";"
                   ' color="#888888";')
        if group.tiers:
            out.append(f"    subgraph cluster_{index}_vpc {{ label=\"VPC tiers\"; style=rounded; color=\"#bbbbbb\";")
            for node in group.tiers:
                out.append(f"      {_quote(node.id)} [label={_quote(node.label)}, shape={node.shape}, "
                           f"fillcolor=\"{node.fill}\"];")
            out.append("    }")
        for node in group.nodes:
            out.append(f"    {_quote(node.id)} [label={_quote(node.label)}, shape={node.shape}, "
                       f"fillcolor=\"{node.fill}\"];")
        out.append("  }")
    for source, target, label in graph.edges:
        out.append(f"  {_quote(source)} -> {_quote(target)} [label={_quote(label)}];")
    for source, target, label in graph.links:
        out.append(f"  {_quote(source)} -> {_quote(target)} [label={_quote(label)}, style=dashed, color=\"#999999\"];")
    out.append("}")
    return "\n".join(out) + "\n"


def render_file(dot_text: str, output: Path) -> None:
    """Run Graphviz `dot` to write `output` (.svg or .png; .dot writes the DOT text itself).

    Raises UsageError for another suffix or when Graphviz is not installed."""
    suffix = output.suffix.lower()
    if suffix == ".dot":
        output.write_text(dot_text)
        return
    if suffix not in (".svg", ".png"):
        raise UsageError(f"--output {output}: unknown format {suffix or '(none)'}", "allowed: .svg, .png, .dot",
                         "e.g. --output docs/architecture-dev.svg")
    dot = shutil.which("dot")
    if dot is None:
        raise UsageError("Graphviz `dot` not found", "the diagram is drawn by Graphviz",
                         "install it: `make graphviz` (apt-get install graphviz), or write --output FILE.dot")
    result = subprocess.run([dot, f"-T{suffix[1:]}", "-o", str(output)], input=dot_text.encode(),
                            capture_output=True, check=False)
    if result.returncode != 0:
        raise UsageError(f"Graphviz could not draw {output}", result.stderr.decode(errors="replace").strip()[:500],
                         "report it with the DOT text (--output FILE.dot)")
    if suffix == ".svg":   # drop the Graphviz version comment so the bytes do not depend on the installed version
        text = output.read_text()
        output.write_text(re.sub(r"<!-- Generated by graphviz[^>]*-->\n", "", text))
