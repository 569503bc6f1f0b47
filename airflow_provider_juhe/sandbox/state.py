"""The sandbox's account: templates, accepted sends, injected faults, and the four API calls."""

from __future__ import annotations

import itertools
import json
import math
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_juhe.juhe_api import (
    MOBILE_GROUP_LIMIT,
    MOBILE_GROUP_PATH,
    SEND_LIMIT,
    SEND_PATH,
    STATE_APPROVED,
    STATE_REJECTED,
    STATE_REVIEWING,
    SUBMIT_TEMPLATE_PATH,
    TEMPLATES_PATH,
)
from airflow_provider_juhe.mobiles import MOBILE, TELECOM, UNICOM, carrier_of, is_valid_mobile
from airflow_provider_juhe.sms_content import VARIABLE, decode_tpl_value, render_text, sms_parts

CONTENT_LIMIT = 500
FAULT_KINDS = (
    "error",
    "latency",
    "html_502",
    "drop",
    "trickle",
    "oversized",
    "malformed",
    "unknown_code",
    "reset",
)
#: What ``unknown_code`` answers unless told otherwise: no table of the vendor doc lists it.
UNDOCUMENTED_CODE = 229999
#: ``malformed`` answers: each mangles the real answer of a call that was carried out.
MALFORMED_SHAPES = (
    "not_json",
    "truncated",
    "array",
    "error_code_string",
    "error_code_missing",
    "error_code_float",
    "result_list",
    "result_string",
    "result_null",
    "no_sid",
    "fee_text",
    "members_not_list",
    "template_without_id",
)


@dataclass
class Fault:
    """
    A fault the sandbox applies to matching calls: ``times`` calls, or a ``fraction`` of calls, after
    letting the first ``after`` matching calls through.
    """

    kind: str
    times: int | None = 1
    fraction: float | None = None
    error_code: int = 228807
    seconds: float = 0.0
    path: str | None = None
    after: int = 0
    size: int = 0
    shape: str = "not_json"
    status: int = 200
    sigma: float = 0.0  # a latency fault's lognormal spread around ``seconds``

    def matches(self, path: str, rng: random.Random) -> bool:
        if self.path is not None and not path.endswith(self.path):
            return False
        if self.after > 0:
            self.after -= 1
            return False
        if self.fraction is not None:
            return rng.random() < self.fraction
        if self.times is None:
            return True
        if self.times > 0:
            self.times -= 1
            return True
        return False


@dataclass
class Template:
    tpl_id: int
    content: str
    signature: str
    state: int
    operation: int
    submitted_at: float

    def as_juhe(self) -> dict[str, Any]:
        return {
            "tplId": self.tpl_id,
            "tpl": self.content,
            "tpl_signature": self.signature,
            "tpl_state": self.state,
            "operation": self.operation,
        }


@dataclass
class Reply:
    """What the server does with one request."""

    body: dict[str, Any] | None = None
    status: int = 200
    html: str | None = None
    drop: bool = False
    delay: float = 0.0
    raw: bytes | None = None  # a body sent as it is (a mangled answer)
    content_type: str = "application/json"
    trickle: float = 0.0  # seconds between two bytes of the answer
    filler: int = 0  # bytes of padding streamed after the body, with no Content-Length
    reset: bool = False  # close with a TCP reset after reading the request


def _error(code: int, reason: str) -> dict[str, Any]:
    return {"reason": reason, "result": None, "error_code": code}


def _ok(result: Any, reason: str = "success") -> dict[str, Any]:
    return {"reason": reason, "result": result, "error_code": 0}


@dataclass
class SandboxState:
    """Everything the sandbox remembers. All methods are thread-safe."""

    appkey: str
    approve_after: float = 0.0
    forbidden_words: tuple[str, ...] = ("赌博", "贷款秒批")
    latency: float = 0.0
    latency_sigma: float = 0.0
    seed: int | None = None
    clock: Callable[[], float] = time.monotonic
    templates: dict[int, Template] = field(default_factory=dict)
    sent: list[dict[str, Any]] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    ported: dict[str, str] = field(default_factory=dict)  # number -> carrier, after 携号转网

    def __post_init__(self) -> None:
        if self.latency < 0 or self.latency_sigma < 0:
            raise ValueError("latency and latency_sigma: expected seconds >= 0 and a spread >= 0")
        self._lock = threading.Lock()
        self._rng = random.Random(self.seed)
        self._tpl_ids = itertools.count(1000)
        self._sids = itertools.count(1)

    # -- set-up used by tests -----------------------------------------------------------------------

    def add_template(
        self, content: str, signature: str = "沙箱", state: int = STATE_APPROVED, operation: int = 0
    ) -> int:
        with self._lock:
            tpl_id = next(self._tpl_ids)
            self.templates[tpl_id] = Template(tpl_id, content, signature, state, operation, self.clock())
            return tpl_id

    def set_template_state(self, tpl_id: int, state: int) -> None:
        with self._lock:
            template = self.templates[int(tpl_id)]
            template.state = state
            template.submitted_at = self.clock()  # back in review: decided approve_after from now

    def inject(self, fault: Fault) -> None:
        if fault.kind not in FAULT_KINDS:
            raise ValueError(f"kind: expected one of {FAULT_KINDS}, got {fault.kind!r}")
        if fault.kind == "malformed" and fault.shape not in MALFORMED_SHAPES:
            raise ValueError(f"shape: expected one of {MALFORMED_SHAPES}, got {fault.shape!r}")
        with self._lock:
            self.faults.append(fault)

    def port_number(self, number: str, carrier: str) -> None:
        if carrier not in (MOBILE, UNICOM, TELECOM):
            raise ValueError(f"carrier: expected mobile, unicom or telecom, got {carrier!r}")
        with self._lock:
            self.ported[number] = carrier

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    # -- serving --------------------------------------------------------------------------------------

    def handle(self, path: str, method: str, params: Mapping[str, str], query: str) -> Reply:
        """Answer one API call as Juhe would, with any injected fault applied."""
        with self._lock:
            self.calls.append(
                {
                    "path": path,
                    "method": method,
                    "query": query,
                    "params": {k: v for k, v in params.items() if k != "key"},
                }
            )
            faults = [f for f in self.faults if f.matches(path, self._rng)]
            delay = self._spread(self.latency, self.latency_sigma) + sum(
                self._spread(f.seconds, f.sigma) for f in faults if f.kind == "latency"
            )
        for fault in faults:
            if fault.kind == "error":
                return Reply(_error(fault.error_code, "sandbox: injected error"), delay=delay)
            if fault.kind == "html_502":
                page = "<html><body><h1>502 Bad Gateway</h1></body></html>"
                return Reply(status=502, html=page, delay=delay, filler=fault.size)
        handler = _ROUTES.get(path)
        if handler is None:
            return Reply(status=404, html="<html><body><h1>404 Not Found</h1></body></html>", delay=delay)
        if params.get("key") != self.appkey:
            return Reply(_error(10001, "错误的请求KEY"), delay=delay)
        with self._lock:
            body = handler(self, params)  # carried out: the faults below only spoil the answer
        reply = Reply(body, delay=delay, drop=any(f.kind == "drop" for f in faults))
        for fault in faults:
            _spoil(reply, fault)
        return reply

    def _spread(self, mean: float, sigma: float) -> float:
        """A lognormal draw whose mean is ``mean`` (``sigma``: its log's standard deviation); held lock."""
        if not sigma or mean <= 0:
            return mean
        return self._rng.lognormvariate(math.log(mean) - sigma * sigma / 2, sigma)

    # -- the four calls (called with the lock held) ------------------------------------------------------

    def _review(self) -> None:
        now = self.clock()
        for template in self.templates.values():
            if template.state == STATE_REVIEWING and now - template.submitted_at >= self.approve_after:
                forbidden = any(word in template.content for word in self.forbidden_words)
                template.state = STATE_REJECTED if forbidden else STATE_APPROVED

    def _submit_template(self, params: Mapping[str, str]) -> dict[str, Any]:
        signature, content = params.get("signature", "").strip(), params.get("content", "").strip()
        if not signature or not content:
            return _error(228802, f"参数错误: 缺少{'signature' if not signature else 'content'}")
        if len(content) > CONTENT_LIMIT:
            return _error(228804, "发送内容过长")
        now = self.clock()
        batch = []
        for operation, letter in enumerate("abcd"):
            tpl_id = next(self._tpl_ids)
            self.templates[tpl_id] = Template(tpl_id, content, signature, STATE_REVIEWING, operation, now)
            batch.append({letter: tpl_id})
        if self.approve_after <= 0:
            self._review()
        return _ok(
            {"sendContent": f"【{signature}】{content}", "tplId": batch[0]["a"], "tplBatchInfo": batch}
        )

    def _send(self, params: Mapping[str, str]) -> dict[str, Any]:
        mobiles = [m for m in params.get("mobile", "").split(",") if m]
        tpl_id = params.get("tplId", "").strip()
        if not mobiles or not tpl_id:
            return _error(228802, f"参数错误: 缺少{'mobile' if not mobiles else 'tplId'}")
        if len(mobiles) > SEND_LIMIT:
            return _error(228802, f"参数错误: 号码数量超过{SEND_LIMIT}")
        if not all(is_valid_mobile(m) for m in mobiles):
            return _error(228802, "参数错误: 手机号码格式错误")
        self._review()
        template = self.templates.get(int(tpl_id)) if tpl_id.isdigit() else None
        if template is None:
            return _error(228801, "模板不存在")
        if template.state != STATE_APPROVED:
            return _error(228801, "模板未审核通过")
        values = decode_tpl_value(params.get("tplValue"))
        text = f"【{template.signature}】" + render_text(template.content, values)
        if VARIABLE.search(text):  # a variable left unfilled
            return _error(228802, "参数错误: 模板变量未赋值")
        fee = sms_parts(text) * len(mobiles)
        sid = time.strftime("%Y%m%d%H%M%S") + f"{next(self._sids):010d}"
        self.sent.append(
            {
                "sid": sid,
                "mobiles": mobiles,
                "tpl_id": template.tpl_id,
                "text": text,
                "fee": fee,
                "at": time.time(),
            }
        )
        return _ok({"sid": sid, "fee": fee}, reason="操作成功")

    def _group(self, params: Mapping[str, str]) -> dict[str, Any]:
        mobiles = [m for m in params.get("mobiles", "").split(",") if m]
        if not mobiles:
            return _error(228802, "参数错误: 缺少mobiles")
        if len(mobiles) > MOBILE_GROUP_LIMIT:
            return _error(228802, f"参数错误: 号码数量超过{MOBILE_GROUP_LIMIT}")
        letters = {MOBILE: "a", UNICOM: "b", TELECOM: "c"}
        groups: dict[str, list[str] | None] = {"a": [], "b": [], "c": []}
        unknown: list[str] = []
        for mobile in mobiles:
            carrier = self.ported.get(mobile) or carrier_of(mobile)
            letter = letters.get(carrier) if is_valid_mobile(mobile) else None
            (groups[letter] if letter else unknown).append(mobile)  # type: ignore[union-attr]
        groups["unknown"] = unknown or None
        return _ok(groups)

    def _templates(self, params: Mapping[str, str]) -> dict[str, Any]:
        self._review()
        return _ok({"templates": [t.as_juhe() for t in self.templates.values()]})


_ROUTES: dict[str, Callable[[SandboxState, Mapping[str, str]], dict[str, Any]]] = {
    SUBMIT_TEMPLATE_PATH: SandboxState._submit_template,
    SEND_PATH: SandboxState._send,
    MOBILE_GROUP_PATH: SandboxState._group,
    TEMPLATES_PATH: SandboxState._templates,
}


def _spoil(reply: Reply, fault: Fault) -> None:
    """Apply an answer-side fault to the answer of a call that was carried out."""
    body = reply.body or {}
    if fault.kind == "trickle":
        reply.trickle = fault.seconds or 1.0
    elif fault.kind == "oversized":
        reply.status, reply.filler = fault.status, fault.size or 100 * 1024 * 1024
    elif fault.kind == "reset":
        reply.reset = True
    elif fault.kind == "unknown_code":
        code = UNDOCUMENTED_CODE if fault.error_code == Fault.error_code else fault.error_code
        reply.body = _error(code, "sandbox: 未知错误")
    elif fault.kind == "malformed":
        reply.raw = _mangled(body, fault.shape)


def _mangled(body: dict[str, Any], shape: str) -> bytes:
    result = body.get("result")
    mangled: Any = dict(body)
    if shape == "not_json":
        return b"<html><body>OK</body></html>"
    if shape == "truncated":
        text = json.dumps(body, ensure_ascii=False).encode()
        return text[: len(text) // 2]
    if shape == "array":
        mangled = [body]
    elif shape == "error_code_string":
        mangled["error_code"] = str(body.get("error_code", 0))
    elif shape == "error_code_missing":
        mangled.pop("error_code", None)
    elif shape == "error_code_float":
        mangled["error_code"] = float(body.get("error_code", 0)) + 0.5
    elif shape == "result_list":
        mangled["result"] = [result]
    elif shape == "result_string":
        mangled["result"] = "ok"
    elif shape == "result_null":
        mangled["result"] = None
    elif isinstance(result, dict):
        result = dict(result)
        if shape == "no_sid":
            result.pop("sid", None)
            result.pop("tplId", None)
        elif shape == "fee_text":
            result["fee"] = "一条"
        elif shape == "members_not_list":
            result = {key: 7 for key in result} if "sid" not in result else {**result, "fee": -1}
        elif shape == "template_without_id":
            for key in ("templates", "tplBatchInfo"):
                if isinstance(result.get(key), list):
                    result[key] = [
                        {k: v for k, v in entry.items() if k != "tplId"} or {"a": "x"}
                        for entry in result[key]
                    ] or [{}]
            if "sid" in result:
                result["sid"] = {"id": result["sid"]}
        mangled["result"] = result
    return json.dumps(mangled, ensure_ascii=False).encode()


def messages_for(sent: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Deep-enough copies of the accepted sends, so callers cannot change the sandbox's record."""
    return [{**message, "mobiles": list(message["mobiles"])} for message in sent]
