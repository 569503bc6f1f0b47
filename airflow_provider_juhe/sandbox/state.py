"""The sandbox's account: templates, accepted sends, injected faults, and the four API calls."""

from __future__ import annotations

import itertools
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
FAULT_KINDS = ("error", "latency", "html_502", "drop")


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
    seed: int | None = None
    clock: Callable[[], float] = time.monotonic
    templates: dict[int, Template] = field(default_factory=dict)
    sent: list[dict[str, Any]] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    ported: dict[str, str] = field(default_factory=dict)  # number -> carrier, after 携号转网

    def __post_init__(self) -> None:
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
        delay = self.latency + sum(f.seconds for f in faults if f.kind == "latency")
        for fault in faults:
            if fault.kind == "error":
                return Reply(_error(fault.error_code, "sandbox: injected error"), delay=delay)
            if fault.kind == "html_502":
                return Reply(
                    status=502, html="<html><body><h1>502 Bad Gateway</h1></body></html>", delay=delay
                )
        handler = _ROUTES.get(path)
        if handler is None:
            return Reply(status=404, html="<html><body><h1>404 Not Found</h1></body></html>", delay=delay)
        if params.get("key") != self.appkey:
            return Reply(_error(10001, "错误的请求KEY"), delay=delay)
        with self._lock:
            body = handler(self, params)
        return Reply(body, delay=delay, drop=any(f.kind == "drop" for f in faults))

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


def messages_for(sent: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Deep-enough copies of the accepted sends, so callers cannot change the sandbox's record."""
    return [{**message, "mobiles": list(message["mobiles"])} for message in sent]
