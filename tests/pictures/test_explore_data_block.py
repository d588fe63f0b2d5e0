"""The explorer page's embedded data cannot end its <script> element, whatever text it holds.

The title, the data's source and the label names reach the page inside
``<script type="application/json">``; a browser ends that element at the first ``</script``
that its HTML tokenizer sees in "script data" -- and text holding ``<!--`` and ``<script`` can
move the tokenizer into the escaped states, where the element's own ``</script>`` no longer
ends it. ``script_element_end`` below follows the tokenizer of the HTML standard (WHATWG,
section 13.2.5, "script data" states) to find where the browser ends the element, and the
tests check that it ends exactly where the page's template ends it, with the data intact.
No browser needed: this runs in every test run.
"""
import json
import re

import numpy as np
import pytest

from scratchvae import VAE
from scratchvae.pictures.explore import TEMPLATE, explorer_html

ALPHA = re.compile(r"[A-Za-z]")
ENDS_TAG_NAME = "\t\n\f /> "


def script_element_end(page, start):
    """Index of the "<" of the end tag that closes the script element whose content starts at
    ``start``, as the HTML tokenizer finds it; None if the page never closes it.

    The states of the standard (13.2.5.4 - 13.2.5.26), with the appropriate end tag "script".
    """
    state, i, buffer, tag_start = "data", start, "", None
    while i < len(page):
        c = page[i]
        if state == "data":
            state = "lt" if c == "<" else "data"
        elif state == "lt":
            if c == "/":
                state, buffer, tag_start = "end_open", "", i - 1
            elif c == "!":
                state = "escape_start"
            else:
                state = "data"
                continue                                        # reconsume
        elif state == "end_open":
            if ALPHA.match(c):
                state = "end_name"
                continue
            state = "data"
            continue
        elif state in ("end_name", "escaped_end_name"):
            if c in ENDS_TAG_NAME and buffer == "script":
                return tag_start
            if ALPHA.match(c):
                buffer += c.lower()
            else:
                state = "data" if state == "end_name" else "escaped"
                continue
        elif state == "escape_start":
            if c == "-":
                state = "escape_start_dash"
            else:
                state = "data"
                continue
        elif state == "escape_start_dash":
            if c == "-":
                state = "escaped_dash_dash"
            else:
                state = "data"
                continue
        elif state == "escaped":
            state = {"-": "escaped_dash", "<": "escaped_lt"}.get(c, "escaped")
        elif state == "escaped_dash":
            state = {"-": "escaped_dash_dash", "<": "escaped_lt"}.get(c, "escaped")
        elif state == "escaped_dash_dash":
            state = {"-": "escaped_dash_dash", "<": "escaped_lt", ">": "data"}.get(c, "escaped")
        elif state == "escaped_lt":
            if c == "/":
                state, buffer, tag_start = "escaped_end_open", "", i - 1
            elif ALPHA.match(c):
                state, buffer = "double_escape_start", ""
                continue
            else:
                state = "escaped"
                continue
        elif state == "escaped_end_open":
            state = "escaped_end_name" if ALPHA.match(c) else "escaped"
            continue
        elif state in ("double_escape_start", "double_escape_end"):
            inside, outside = (("double_escaped", "escaped") if state == "double_escape_start"
                               else ("escaped", "double_escaped"))
            if c in ENDS_TAG_NAME:
                state = inside if buffer == "script" else outside
            elif ALPHA.match(c):
                buffer += c.lower()
            else:
                state = outside
                continue
        elif state == "double_escaped":
            state = {"-": "double_escaped_dash", "<": "double_escaped_lt"}.get(c, "double_escaped")
        elif state == "double_escaped_dash":
            state = {"-": "double_escaped_dash_dash", "<": "double_escaped_lt"}.get(c, "double_escaped")
        elif state == "double_escaped_dash_dash":
            state = {"-": "double_escaped_dash_dash", "<": "double_escaped_lt",
                     ">": "data"}.get(c, "double_escaped")
        elif state == "double_escaped_lt":
            if c == "/":
                state, buffer = "double_escape_end", ""
            else:
                state = "double_escaped"
                continue
        i += 1
    return None


OPEN = '<script type="application/json" id="scratchvae-data">'


def the_data_block(page):
    """(the JSON text of the data block as the browser delimits it, the page after it)."""
    start = page.index(OPEN) + len(OPEN)
    end = script_element_end(page, start)
    assert end is not None, "the data's <script> element never ends"
    return page[start:end], page[end:]


def test_the_tokenizer_model_ends_script_elements_where_browsers_do():
    """The scanner against cases the standard spells out (and a page that is wrong on purpose)."""
    cases = {"x = 1</script>": 5, "a</SCRIPT >": 1, "a</scriptx></script>": 11, "a<\\/script></script>": 11,
             "<!-- a --></script>": 10, "<!--<script>--></script>": 15,
             "<!--<script></script></script>": 21, "<!--<script>": None}
    for text, end in cases.items():
        assert script_element_end(text, 0) == end, text


HOSTILE = ["</script><script>alert(1)</script>", "</SCRIPT>", "a</script >b", "<!--<script>",
           "<!--<script>x</script>-->", "--><!--", "<\\/script>", "&lt;/script&gt; & <b>", "\u2028\u2029 </scr",
           "\\", '"', "<script>", "]]>"]


@pytest.mark.parametrize("text", HOSTILE)
def test_no_text_in_the_title_source_or_labels_ends_the_data_block(text):
    model = VAE(784, [4], 2, seed=0)
    images = np.zeros((3, 784), np.float32)
    names = [text] + [f"label {k}" for k in range(1, 10)]
    page = explorer_html(model, images=images, labels=np.array([0, 1, 2]), title=text, source=text,
                         label_names=names)
    data_text, rest = the_data_block(page)
    data = json.loads(data_text)                                        # the whole block is the JSON
    assert data["title"] == text and data["points"]["source"] == text and data["label_names"] == names
    template = TEMPLATE.read_text(encoding="utf-8")
    after = template[template.index("__DATA__") + len("__DATA__"):]
    assert rest == after                                                # what follows is the template's


def test_the_scanner_sees_a_page_whose_data_is_not_escaped_end_early():
    """The check has power: the same data written with json.dumps alone ends the block early."""
    page = OPEN + json.dumps({"title": "</script><script>alert(1)</script>"}) + "</script>"
    data_text, _ = the_data_block(page)
    with pytest.raises(json.JSONDecodeError):
        json.loads(data_text)
    page = OPEN + json.dumps({"title": "<!--<script>"}) + "</script><p>the rest of the page</p>"
    assert script_element_end(page, len(OPEN)) is None                  # it swallows the rest of the page
