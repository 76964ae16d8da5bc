"""The app's pages and the links between them.

The table below is every page: its key (what pages link by), title, icon and address. `explorer/ui/shell.py`
registers the page functions (`pages.PAGES`) with `register` and hands them to `st.navigation`; pages link to each
other through `link` and `switch` by key, so no page imports another page or the shell.

A page's own address (``/Lab?run=...``, from a shared link or a reload) is answered by the app's HTTP routes with a
redirect to ``/?page=Lab&run=...`` (`explorer.ui.live.api.page_link`); `follow_link` then opens that page with the
rest of the query, so every session starts at ``/``: no "Page not found" on a fresh server, no 404s in the console.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import streamlit as st

PAGE_PARAM = "page"


@dataclass(frozen=True)
class PageInfo:
    title: str
    icon: str
    path: str  # the page's address, /<path>
    default: bool = False


PAGE_INFO: dict[str, PageInfo] = {
    "learn": PageInfo("Learn", ":material/school:", "Learn", default=True),
    "lab": PageInfo("Lab", ":material/science:", "Lab"),
    "architecture": PageInfo("Architecture", ":material/account_tree:", "Architecture"),
    "compare": PageInfo("Compare", ":material/compare_arrows:", "Compare"),
    "gradients": PageInfo("Gradients", ":material/gradient:", "Gradients"),
    "classroom": PageInfo("Classroom", ":material/how_to_vote:", "Classroom"),
}
PATHS: tuple[str, ...] = tuple(info.path for info in PAGE_INFO.values())
_PAGES: dict[str, st.Page] = {}


def register(functions: dict[str, Callable[[], None]]) -> list[st.Page]:
    """The pages as st.Page objects, one per key of `PAGE_INFO` (kept for `link` and `switch`)."""
    missing = set(PAGE_INFO) ^ set(functions)
    if missing:
        raise KeyError(f"pages and PAGE_INFO disagree on {sorted(missing)}")
    _PAGES.update({key: st.Page(functions[key], title=info.title, icon=info.icon, url_path=info.path,
                                default=info.default) for key, info in PAGE_INFO.items()})
    return list(_PAGES.values())


def link(page: str, label: str, icon: str | None = None) -> None:
    """A link to one of the app's pages by its key (``lab``, ``compare``, ...)."""
    st.page_link(_PAGES[page], label=label, icon=icon)


def switch(page: str, query: dict[str, str] | None = None) -> None:
    st.switch_page(_PAGES[page], query_params=query)


def follow_link() -> None:
    """Open the page a redirected link named (``?page=Lab&run=...``), keeping the rest of its query."""
    wanted = st.query_params.get(PAGE_PARAM)
    if wanted is None:
        return
    rest = {key: value for key, value in st.query_params.to_dict().items() if key != PAGE_PARAM}
    key = next((key for key, info in PAGE_INFO.items() if info.path == wanted), "learn")
    if PAGE_INFO[key].default:
        st.query_params.from_dict(rest)
    else:
        switch(key, rest)
