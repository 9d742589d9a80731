"""The package's HTML pages (the SKU report, the monitor): one Jinja2 environment with
autoescape on over ``templates/``, and the shared stylesheet (``report_base.css``) that each
page completes with its own rules."""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def environment() -> Any:
    """The Jinja2 environment of the package's templates (made on first use, autoescape on)."""
    from importlib.resources import files

    import jinja2

    folder = files("returnrisk.serve").joinpath("templates")
    return jinja2.Environment(
        loader=jinja2.FunctionLoader(lambda name: folder.joinpath(name).read_text("utf-8")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def asset(name: str) -> str:
    """A file of ``templates/`` as text."""
    from importlib.resources import files

    return files("returnrisk.serve").joinpath("templates", name).read_text(encoding="utf-8")


def stylesheet(page_css: str) -> Any:
    """The shared stylesheet followed by a page's own (``page_css``, a file of ``templates/``),
    as trusted markup for the template's ``<style>``."""
    from markupsafe import Markup

    return Markup(asset("report_base.css") + asset(page_css))


def render(template: str, context: dict[str, Any]) -> str:
    """``template`` rendered with ``context`` (plain values: the template escapes them)."""
    return environment().get_template(template).render(context)
