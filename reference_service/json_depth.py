"""How deeply a JSON body may nest, checked without recursion before anything parses it.

`json.loads` recurses once per level: `"[" * 1000 + "]" * 1000` (a few KiB, far below the
body size limit) ends in RecursionError, which is no ValueError and so was a 500. No body of
this API nests deeper than a handful of levels; 64 leaves Razorpay room to grow.
"""

from __future__ import annotations

import re

MAX_JSON_DEPTH = 64

# A string (its brackets are text, not structure) or one bracket.
_TOKENS_BYTES = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)
_TOKENS_STR = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)
_OPEN_BYTES = (b"[", b"{")
_OPEN_STR = ("[", "{")


def json_depth_exceeds(body: bytes | str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether `body`, read as JSON, opens more than `limit` arrays or objects at once.

    Iterative and linear in the size of the body; malformed JSON is the parser's to refuse.
    """
    if isinstance(body, bytes):
        tokens, opens = _TOKENS_BYTES, _OPEN_BYTES
    else:
        tokens, opens = _TOKENS_STR, _OPEN_STR  # type: ignore[assignment]
    if body.count(opens[0]) + body.count(opens[1]) <= limit:  # type: ignore[arg-type]
        return False  # every body of this API: no scan needed
    depth = 0
    for match in tokens.finditer(body):  # type: ignore[arg-type]
        token = match.group()
        if token in opens:
            depth += 1
            if depth > limit:
                return True
        elif len(token) == 1:
            depth -= 1
    return False
