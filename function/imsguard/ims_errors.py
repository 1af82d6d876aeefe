"""IMS's error codes and what each means for imsguard: retry, give up, or the image is gone.

Every code of IMS's published error-code table is listed once, so a new code is a
decision, not an accident. Codes not listed (the API gateway's, or new ones) go by
their HTTP status in the gateway.
"""

from __future__ import annotations

from typing import Literal

ErrorKind = Literal["transient", "permanent", "gone", "out_of_time"]

# IMS answers every error in its table with HTTP 400 (IMG.0026 with 403 in one edition), so
# the code, not the status, says what to do. Sources: IMS API reference "Error Codes"
# (huaweicloudDocs/ims cn.zh-cn/API参考/错误码.md and the English edition's error_codes.rst);
# tests/recorded/ims_error_codes.json holds the table and a test checks every code is here.

# Retry after a backoff, like a 429: flow control ("the number of tasks exceeds the flow
# control limit", replication and KMS flow control) and IMS's unknown system error.
TRANSIENT = frozenset({"IMG.0060", "IMG.0061", "IMG.0149", "IMG.0187"})
# The image does not exist (any more): not_applicable, never retried.
GONE = frozenset({"IMG.0027", "IMG.0144"})
# The request, the image or the account is wrong: retrying cannot help.
PERMANENT = frozenset({
    "IMG.0001", "IMG.0002", "IMG.0003", "IMG.0004", "IMG.0005", "IMG.0006", "IMG.0007",
    "IMG.0008", "IMG.0009", "IMG.0010", "IMG.0011", "IMG.0012", "IMG.0013", "IMG.0014",
    "IMG.0015", "IMG.0016", "IMG.0017", "IMG.0018", "IMG.0019", "IMG.0020", "IMG.0021",
    "IMG.0022", "IMG.0023", "IMG.0024", "IMG.0025", "IMG.0026", "IMG.0028", "IMG.0029",
    "IMG.0030", "IMG.0031", "IMG.0032", "IMG.0033", "IMG.0034", "IMG.0035", "IMG.0036",
    "IMG.0037", "IMG.0038", "IMG.0039", "IMG.0040", "IMG.0041", "IMG.0042", "IMG.0043",
    "IMG.0044", "IMG.0045", "IMG.0046", "IMG.0047", "IMG.0048", "IMG.0049", "IMG.0050",
    "IMG.0051", "IMG.0052", "IMG.0053", "IMG.0054", "IMG.0055", "IMG.0056", "IMG.0057",
    "IMG.0058", "IMG.0059", "IMG.0062", "IMG.0063", "IMG.0064", "IMG.0065", "IMG.0066",
    "IMG.0067", "IMG.0068", "IMG.0069", "IMG.0070", "IMG.0071", "IMG.0072", "IMG.0073",
    "IMG.0074", "IMG.0075", "IMG.0076", "IMG.0077", "IMG.0078", "IMG.0079", "IMG.0080",
    "IMG.0081", "IMG.0082", "IMG.0083", "IMG.0084", "IMG.0085", "IMG.0086", "IMG.0087",
    "IMG.0088", "IMG.0089", "IMG.0090", "IMG.0091", "IMG.0092", "IMG.0093", "IMG.0094",
    "IMG.0095", "IMG.0096", "IMG.0097", "IMG.0098", "IMG.0099", "IMG.0100", "IMG.0101",
    "IMG.0102", "IMG.0103", "IMG.0104", "IMG.0105", "IMG.0106", "IMG.0107", "IMG.0108",
    "IMG.0109", "IMG.0110", "IMG.0111", "IMG.0112", "IMG.0113", "IMG.0114", "IMG.0115",
    "IMG.0116", "IMG.0117", "IMG.0118", "IMG.0119", "IMG.0120", "IMG.0121", "IMG.0122",
    "IMG.0123", "IMG.0124", "IMG.0125", "IMG.0126", "IMG.0127", "IMG.0128", "IMG.0129",
    "IMG.0130", "IMG.0131", "IMG.0132", "IMG.0133", "IMG.0134", "IMG.0135", "IMG.0136",
    "IMG.0137", "IMG.0138", "IMG.0139", "IMG.0140", "IMG.0141", "IMG.0142", "IMG.0143",
    "IMG.0145", "IMG.0146", "IMG.0147", "IMG.0148", "IMG.0150", "IMG.0151", "IMG.0152",
    "IMG.0153", "IMG.0154", "IMG.0155", "IMG.0156", "IMG.0157", "IMG.0158", "IMG.0159",
    "IMG.0160", "IMG.0161", "IMG.0162", "IMG.0163", "IMG.0164", "IMG.0165", "IMG.0166",
    "IMG.0167", "IMG.0168", "IMG.0169", "IMG.0170", "IMG.0171", "IMG.0172", "IMG.0173",
    "IMG.0174", "IMG.0175", "IMG.0176", "IMG.0177", "IMG.0178", "IMG.0179", "IMG.0180",
    "IMG.0181", "IMG.0182", "IMG.0183", "IMG.0184", "IMG.0185", "IMG.0186", "IMG.0188",
    "IMG.0189", "IMG.0190", "IMG.0191", "IMG.0192", "IMG.0193", "IMG.0194", "IMG.0195",
    "IMG.0196", "IMG.0197", "IMG.0198", "IMG.0212", "IMG.0238", "IMG.0239", "IMG.0241",
    "IMG.0242", "IMG.1075",
})


def error_kind(code: object) -> ErrorKind | None:
    """The kind of an IMS error code, or None when IMS's table does not list it."""
    if code in TRANSIENT:
        return "transient"
    if code in GONE:
        return "gone"
    if code in PERMANENT:
        return "permanent"
    return None
