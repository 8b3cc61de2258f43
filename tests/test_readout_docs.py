"""Every worked example of docs/readout.md runs as a test (each ```python block under an example heading)."""

import doctest
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "readout.md"


def _blocks() -> list[tuple[str, str]]:
    """(heading, code) of every ```python block, in page order."""
    text = DOC.read_text()
    out, heading = [], "intro"
    for m in re.finditer(r"^(#{2,3} [^\n]+)$|^```python\n(.*?)^```", text, flags=re.M | re.S):
        if m.group(1):
            heading = m.group(1).lstrip("# ").strip()
        else:
            out.append((heading, m.group(2)))
    return out


BLOCKS = _blocks()
SETUP = BLOCKS[0][1]  # the shared imports and helper
EXAMPLES = [(h, code) for h, code in BLOCKS[1:]]


def test_page_has_the_worked_examples():
    headings = {h for h, _ in EXAMPLES}
    assert sum(h.startswith("Example") for h in headings) >= 5


@pytest.mark.parametrize("heading,code", EXAMPLES, ids=[f"{i}-{h.split(':')[0]}" for i, (h, _) in enumerate(EXAMPLES)])
def test_worked_example(heading, code):
    parser = doctest.DocTestParser()
    globs: dict = {}
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    for name, src in (("setup", SETUP), (heading, code)):
        test = parser.get_doctest(src, globs, name, str(DOC), 0)
        runner.run(test, clear_globs=False)
        globs = test.globs
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"docs/readout.md '{heading}': {result.failed} of {result.attempted} lines failed"
