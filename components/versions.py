"""The EKS Kubernetes versions this program accepts, and their support windows. Pure data.

Source: the EKS release calendar (https://docs.aws.amazon.com/eks/latest/userguide/kubernetes-versions.html):
a minor version has 14 months of standard support from its EKS release, then 12 months of extended
support (extra cost per cluster hour). With `upgrade_policy.support_type = STANDARD` EKS upgrades a
cluster by itself when standard support ends; with EXTENDED it stays, at the extended price, until
extended support ends and EKS upgrades it anyway. Either way the upgrade happens outside Pulumi, so the
program warns before it does (`components.rules.stack_warnings`).

Add a row when EKS releases a version (and move `DEFAULT_KUBERNETES_VERSION` once the add-ons have been
tried on it); drop a row once its extended support has ended.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Literal, get_args


@dataclass(frozen=True)
class EksVersion:
    released: datetime.date
    end_of_standard_support: datetime.date
    end_of_extended_support: datetime.date


KubernetesVersion = Literal["1.32", "1.33", "1.34", "1.35"]

EKS_VERSIONS: dict[str, EksVersion] = {
    "1.32": EksVersion(datetime.date(2025, 1, 23), datetime.date(2026, 3, 23), datetime.date(2027, 3, 23)),
    "1.33": EksVersion(datetime.date(2025, 5, 29), datetime.date(2026, 7, 29), datetime.date(2027, 7, 29)),
    "1.34": EksVersion(datetime.date(2025, 10, 2), datetime.date(2026, 12, 2), datetime.date(2027, 12, 2)),
    "1.35": EksVersion(datetime.date(2026, 1, 27), datetime.date(2027, 3, 27), datetime.date(2028, 3, 27)),
}

DEFAULT_KUBERNETES_VERSION: KubernetesVersion = "1.35"

SupportType = Literal["STANDARD", "EXTENDED"]


def kubernetes_versions() -> tuple[str, ...]:
    return get_args(KubernetesVersion)


def support_phase(version: str, today: datetime.date) -> Literal["standard", "extended", "ended"]:
    """Where `version` stands on `today` in EKS's calendar."""
    window = EKS_VERSIONS[version]
    if today <= window.end_of_standard_support:
        return "standard"
    if today <= window.end_of_extended_support:
        return "extended"
    return "ended"
