"""Rendering for the Juhe operators: customers' data masked once rendered, literal inputs kept out of Jinja."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from airflow_provider_juhe.sending.recipients import is_location, masked_view

if TYPE_CHECKING:
    from collections.abc import Iterable

    import jinja2
    from airflow.sdk import Context

_TEMPLATE_MARKS = ("{{", "{%", "{#")


class PersonalFieldsMixin:
    """
    For an operator whose template fields may hold customers' numbers and values: once rendered, the
    values are kept for ``execute`` (read them with :meth:`_input`) and a masked description takes
    their place, which is what Airflow stores and shows as the task's rendered fields.
    """

    #: Template fields that may hold customers' numbers (and values): masked once rendered.
    personal_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._inputs: dict[str, Any] = {}

    def _do_render_template_fields(
        self,
        parent: Any,
        template_fields: Iterable[str],
        context: Context,
        jinja_env: jinja2.Environment,
        seen_oids: set[int],
    ) -> None:
        # The one rendering step of mapped and unmapped tasks alike.
        super()._do_render_template_fields(parent, template_fields, context, jinja_env, seen_oids)  # type: ignore[misc]
        if parent is self:
            self._mask_personal_fields()

    def _mask_personal_fields(self) -> None:
        for name in self.personal_fields:
            value = getattr(self, name)
            if (
                name not in self._inputs
                and value is not None
                and not (name != "mobiles" and is_location(value))
            ):
                self._inputs[name] = value
                setattr(self, name, masked_view(value, getattr(self, "mobile_field", "mobile")))

    def _input(self, name: str) -> Any:
        """A personal field's rendered value (or the attribute, when nothing was rendered)."""
        return self._inputs.get(name, getattr(self, name))

    def render_template(
        self,
        content: Any,
        context: Context,
        jinja_env: jinja2.Environment | None = None,
        seen_oids: set[int] | None = None,
    ) -> Any:
        # A literal list of 100,000 numbers would otherwise be compiled by Jinja one string at a time.
        if _holds_no_template(content):
            return content
        return super().render_template(content, context, jinja_env, seen_oids)  # type: ignore[misc]


def _holds_no_template(content: Any) -> bool:
    """A string, or a list/tuple of strings, numbers and flat rows of them, without any Jinja syntax."""
    if isinstance(content, str):
        return not any(mark in content for mark in _TEMPLATE_MARKS)
    if type(content) in (list, tuple):
        try:  # a list of strings (100,000 numbers): one look at them joined
            return "{" not in "".join(content)
        except TypeError:
            return all(
                _plain(item) or (type(item) is dict and all(map(_plain, item.values()))) for item in content
            )
    return False


def _plain(item: Any) -> bool:
    return item is None or isinstance(item, (int, float)) or (isinstance(item, str) and "{" not in item)
