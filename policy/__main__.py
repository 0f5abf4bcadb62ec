"""The CrossGuard pack: `pulumi preview --policy-pack policy`. Never import this module:
constructing `PolicyPack` starts the analyzer's gRPC server and blocks. The policies live in
`policies.py`, which the offline check (`policy/offline.py`) imports instead."""

from policies import PACK_ENFORCEMENT, PACK_NAME, POLICIES
from pulumi_policy import PolicyPack

PolicyPack(PACK_NAME, policies=POLICIES, enforcement_level=PACK_ENFORCEMENT)
