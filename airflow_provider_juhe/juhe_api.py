"""Facts of the Juhe financial SMS API (vendor doc): paths, limits, code letters and states."""

from __future__ import annotations

DEFAULT_HOST = "v.juhe.cn"

SUBMIT_TEMPLATE_PATH = "/shortLetter/submitTpl.php"
SEND_PATH = "/shortLetter/send.php"
MOBILE_GROUP_PATH = "/shortLetter/mobileGroup.php"
TEMPLATES_PATH = "/shortLetter/myTemplates.php"

#: mobileGroup.php takes at most this many numbers per call.
MOBILE_GROUP_LIMIT = 10_000
#: The most numbers put in one send.php call. The doc states no limit; see the README for the choice.
SEND_LIMIT = 1_000

#: myTemplates ``tpl_state``.
TEMPLATE_STATES = {0: "unreviewed", 1: "rejected", 2: "reviewing", 3: "approved"}
STATE_REJECTED, STATE_REVIEWING, STATE_APPROVED = 1, 2, 3
#: myTemplates ``operation``.
TEMPLATE_CARRIERS = {0: "all", 1: "mobile", 2: "unicom", 3: "telecom"}
#: submitTpl ``tplBatchInfo`` letters: a = all three networks, b/c/d = one carrier each.
BATCH_INFO_CARRIERS = {"a": "all", "b": "mobile", "c": "unicom", "d": "telecom"}
#: mobileGroup result letters.
MOBILE_GROUP_CARRIERS = {"a": "mobile", "b": "unicom", "c": "telecom", "unknown": "unknown"}
