"""Which OS versions IMS lists as able to boot in UEFI mode.

Setting ``hw_firmware_type=uefi`` on an image whose OS cannot boot that way
leaves servers created from it unbootable, so imsguard only does it for OS
versions in IMS's "OSs Supporting UEFI Boot Mode" list. The built-in table is
that list (the Huawei-authored English edition; IMS's own answer to
``GET /v1/cloudimages/os_version?tag=uefi`` replaces it with
``IMSGUARD_UEFI_FROM_IMS=true``). IMS's documents spell one OS several ways
("Redhat Linux Enterprise", "Red Hat Linux Enterprise", "Red Hat Enterprise
Linux"; "server" and "Server"; "SUSE Linux Enterprise Server" and "SUSE
Enterprise Linux Server"), so each family accepts every documented spelling
of its name; anything else, or a version not listed, is NOT UEFI-capable.
"""

from __future__ import annotations

import re
from collections.abc import Collection

# (the spellings of a family's name, the versions IMS lists as UEFI-capable), lower case.
_FAMILIES = (
    (r"ubuntu", r"(?:22|20|19|18|16|14)\.04(?:\.\d+)?(?: server)?"),
    (r"debian(?: gnu/linux)?", r"(?:12\.0\.0|11\.[0-7]\.0|10\.(?:[1-9]|1[0-3])\.0|8\.8\.0)"),
    (r"euleros", r"2\.(?:12|11|10|8|7|5|3|2)"),
    (r"openeuler", r"(?:22\.03(?: sp1)?|20\.03(?: sp[1-3])?)"),
    (r"centos", r"(?:8\.[1-5]|7\.[0456]|6\.[69])"),
    (
        r"(?:red ?hat(?: linux enterprise| enterprise linux| linux)?|rhel)",
        r"(?:9\.[01]|8\.[1-7]|7\.[0134]|6\.[59])",
    ),  # and 6.6 32bit only, below
    (r"oracle linux(?: server)?(?: release)?", r"(?:7\.4|6\.9)"),
    (r"opensuse(?: leap)?", r"(?:15\.[2-5]|42\.1)"),
    (
        r"(?:(?:novell )?suse linux enterprise server|suse enterprise linux server|sles)",
        r"(?:15 sp[2-5]|12 sp[15]|11 sp3)",
    ),
    (r"fedora", r"(?:3[1-9]|29|24)"),
    (
        r"windows server",
        r"(?:(?:2022|2019|2016|2012 r2|2012) (?:standard|datacenter)"
        r"|2012 essentials r2|2012 r2 essentials)",
    ),
    (r"windows", r"10"),
)
# Compiled on first use (re caches it): only images a UEFI rule would change need it.
_UEFI_CAPABLE = (
    "(?:" + "|".join(f"{name} {versions}" for name, versions in _FAMILIES) + r") 64 ?bit"
)
# The list's only 32-bit entry.
_UEFI_32BIT = r"red ?hat(?: linux enterprise| enterprise linux| linux)? 6\.6 32 ?bit"


def normalize_os_version(text: str) -> str:
    return " ".join(text.lower().split())


def is_uefi_capable(os_version: object, listed: Collection[str] | None = None) -> bool:
    """True when IMS lists this ``__os_version`` as UEFI-capable: in ``listed`` (normalized
    OS versions read from IMS's API) when given, else in the built-in table."""
    if not isinstance(os_version, str):
        return False
    text = normalize_os_version(os_version)
    if listed is not None:
        return text in listed
    return bool(re.fullmatch(_UEFI_CAPABLE, text) or re.fullmatch(_UEFI_32BIT, text))
