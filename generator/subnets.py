"""Subnet CIDRs of an environment, computed at render time and written into the template literally.

Layout of the VPC range (prefix P, /16../20):
  first half   (P+1): private-app tier, 4 slots of P+3  (App Runner connector ENIs need the most room)
  third quarter (P+2): isolated-data tier, 4 slots of P+4
  last quarter  (P+2): public tier, 4 slots of P+4       (only NAT gateways live here)
Each tier has a fixed slot per AZ index (4 slots, at most 3 AZs used), so changing `az_count` adds or
removes subnets without renumbering (and so replacing) the ones that stay.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

SLOTS_PER_TIER = 4


@dataclass(frozen=True)
class Tier:
    supernet: str  # the whole tier's range (all slots)
    subnets: tuple[str, ...]  # one per AZ, in AZ index order


@dataclass(frozen=True)
class SubnetPlan:
    vpc: str
    public: Tier
    app: Tier
    data: Tier


def _tier(supernet: ipaddress.IPv4Network, az_count: int) -> Tier:
    slots = list(supernet.subnets(prefixlen_diff=2))
    return Tier(str(supernet), tuple(str(s) for s in slots[:az_count]))


def plan(vpc_cidr: str, az_count: int) -> SubnetPlan:
    """Subnet CIDRs per tier for `az_count` AZs inside `vpc_cidr`."""
    if not 1 <= az_count <= SLOTS_PER_TIER:
        raise ValueError(f"az_count must be 1..{SLOTS_PER_TIER} (got {az_count})")
    vpc = ipaddress.IPv4Network(vpc_cidr, strict=True)
    app_half, rest = vpc.subnets(prefixlen_diff=1)
    data_quarter, public_quarter = rest.subnets(prefixlen_diff=1)
    return SubnetPlan(
        vpc=str(vpc),
        public=_tier(public_quarter, az_count),
        app=_tier(app_half, az_count),
        data=_tier(data_quarter, az_count),
    )
