"""``table.md`` (analysis.tables.to_markdown) rendered by a real CommonMark renderer: user text in group
and action names comes out as text, never as HTML, and cannot break the table."""

import re
from html import unescape

import pandas as pd
import pytest

from analysis.tables import to_markdown

markdown_it = pytest.importorskip("markdown_it", reason="markdown-it-py (a dependency of rich) renders the table")


def render(md: str) -> str:
    # The commonmark preset passes raw HTML through, as GitHub-style renderers of a results folder do.
    return markdown_it.MarkdownIt("commonmark").enable("table").render(md)


def table(**cols):
    base = {"Action": ["nodding"], "Contrast": ["ASD < TDC"], "Type": ["%"], "Effect": ["0.37"], "p": ["<.001"],
            "p_adj": [".004"]}
    return pd.DataFrame({**base, **cols})


@pytest.mark.parametrize("name", ["<img src=x onerror=alert(1)>", "<script>alert(1)</script>", "</td><td>x",
                                  "<!-- hidden -->", "a\\<b>bold</b>", "<https://example.org>"])
def test_html_in_a_group_or_action_name_is_shown_as_text(name):
    md = to_markdown(table(Action=[name], Contrast=[f"{name} < TDC"]), caption=f"groups: {name}")
    html = render(md)
    assert "<img" not in html and "<script" not in html and "<!--" not in html and "<b>" not in html
    assert "<a " not in html  # no autolink either
    # one data row of six cells, whose first shows the name exactly, as text
    assert html.count("<tr>") == 2 and html.count("<td>") == 6
    cells = [unescape(c) for c in re.findall(r"<td>(.*?)</td>", html)]
    assert cells[:2] == [name, f"{name} < TDC"]


def test_plain_comparisons_and_pipes_survive():
    md = to_markdown(table(Action=["a|b"]), caption="cap")
    assert "| ASD < TDC |" in md and "<.001" in md  # nothing that cannot open a tag is escaped
    html = render(md)
    assert "<td>a|b</td>" in html and "<td>ASD &lt; TDC</td>" in html and html.count("<td>") == 6


def test_without_the_escape_the_renderer_would_pass_the_tag_through():
    """The check above is meaningful: the same cell unescaped reaches the page as a tag."""
    assert "<img src=x" in render("| a |\n|---|\n| <img src=x> |\n")
