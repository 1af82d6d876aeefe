"""Which OS versions IMS lists as able to boot in UEFI mode.

Setting ``hw_firmware_type=uefi`` on an image whose OS cannot boot that way
leaves servers created from it unbootable, so imsguard only does it for OS
versions in IMS's "OSs Supporting UEFI Boot Mode" list. The table below is
that list; how each version is spelled in ``__os_version`` is unconfirmed, so
anything not recognised counts as NOT UEFI-capable (the safe side).
"""

from __future__ import annotations

import re
from collections.abc import Collection

_UEFI_CAPABLE = re.compile(
    r"^(?:"
    r"ubuntu (?:22|20|19|18|16|14)\.04\b"
    r"|debian(?: gnu/linux)? (?:12\.0\.0|11\.[0-7]\.0|10\.(?:[1-9]|1[0-3])\.0|8\.8\.0)\b"
    r"|euleros (?:2\.(?:12|11|10|8|7|5|3|2))\b"
    r"|openeuler (?:22|20)\.03\b"
    r"|centos (?:8\.[1-5]|7\.[0456]|6\.[69])\b"
    r"|red ?hat(?: enterprise linux| linux)? (?:9\.[01]|8\.[1-7]|7\.[0134]|6\.[569])\b"
    r"|oracle linux(?: server release)? (?:7\.4|6\.9)\b"
    r"|opensuse(?: leap)? (?:15\.[2-5]|42\.1)\b"
    r"|(?:suse linux enterprise server|sles|suse) (?:15 sp[2-5]|12 sp[15]|11 sp3)\b"
    r"|fedora (?:3[1-9]|29|24)\b"
    r"|windows server (?:2022|2019|2016|2012 r2|2012)\b"
    r"|windows 10\b"
    r")"
)


_UEFI_32BIT = re.compile(r"^red ?hat(?: enterprise linux| linux)? 6\.6\b")


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
    if re.search(r"\b32 ?bit\b", text) and not _UEFI_32BIT.match(text):
        return False  # the table's entries are 64-bit, but for Red Hat 6.6
    return _UEFI_CAPABLE.match(text) is not None
