"""What the terminal chat draws, measured in screen rows: no terminal, no event loop.

The full-screen chat (:mod:`p2pchat.tui`) asks this module for the rows to show.
Everything here is a plain function of its arguments, so the layout rules are
tested without a terminal:

- A message is one or more *rows*: its first row starts with the time and the
  author's name; lines of a multi-line message and wrapped parts of long lines
  are indented under the text, so nothing a sender writes can look like a line
  from someone else. Lines wrap at word boundaries (a word wider than the
  screen is cut).
- Control characters in other people's text are shown escaped (``\\x1b``), never
  sent to the terminal.
- A separator row marks each change of date.
- Display names are not unique: when two senders share one, both are shown with a
  short fingerprint of their key (``ivy#3fa2``).
- The view is anchored on a message: following the newest line, or scrolled up, in
  which case new lines arriving below are counted, not shown.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime

from prompt_toolkit.utils import get_cwidth

from .membership import MemberState
from .message import MAX_NAME_BYTES

__all__ = [
    "Entry",
    "Row",
    "ScrollView",
    "dial_failure_text",
    "display_names",
    "fingerprint",
    "fit_status",
    "message_rows",
    "name_problem",
    "not_left_text",
    "printable",
    "wrap",
]

Row = list[tuple[str, str]]
"""One screen row: (style, text) fragments, as prompt_toolkit draws them."""

FINGERPRINT_HEX = 4
MAX_INDENT_FRACTION = 3
"""Continuation rows are indented under the text, but by at most a third of the width."""


# Names -----------------------------------------------------------------------------------


def fingerprint(sender_id: bytes) -> str:
    """A short rendering of a key, to tell apart people with the same name."""
    return sender_id.hex()[:FINGERPRINT_HEX]


def display_names(
    names: Mapping[bytes, str], members: frozenset[bytes] | set[bytes] = frozenset()
) -> dict[bytes, str]:
    """The name to show for each sender: its display name, plus ``#fingerprint`` when shared.

    ``names`` maps each sender id to the latest name it used; ``members`` are ids of
    the room whose name is not known yet: they are shown by fingerprint alone. Two
    senders whose names differ only in case or look-alike forms (NFKC) count as the
    same name, so ``Ivy`` and ``ivy`` are told apart too; a name with a "#" in it is
    always shown with its fingerprint, which comes last.
    """
    shown = {sender: printable(name) or "?" for sender, name in names.items()}
    groups: dict[str, list[bytes]] = defaultdict(list)
    for sender, name in shown.items():
        groups[_fold(name)].append(sender)
    result: dict[bytes, str] = {}
    for senders in groups.values():
        if len(senders) == 1 and "#" not in shown[senders[0]]:
            result[senders[0]] = shown[senders[0]]
            continue
        # Keys are cheap to grind for a 4-digit prefix: lengthen it until the prefixes differ.
        digits = _distinct_prefix(senders)
        for sender in senders:
            result[sender] = f"{shown[sender]}#{sender.hex()[:digits]}"
    for member in members:
        result.setdefault(member, f"#{fingerprint(member)}")
    return result


def _distinct_prefix(senders: list[bytes]) -> int:
    digits = FINGERPRINT_HEX
    while len({sender.hex()[:digits] for sender in senders}) < len(senders) and digits < 64:
        digits += 2
    return digits


def name_problem(name: str) -> str | None:
    """Why ``name`` can't be a display name, or None (the rules of ``chat --name``)."""
    if not name.strip():
        return "a name can't be empty"
    if printable(name) != name or "\n" in name or "\t" in name:
        return "a name can't contain control characters"
    if "#" in name:
        return "a name can't contain # (it marks key fingerprints, as in ivy#3fa2)"
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        return f"a name can be at most {MAX_NAME_BYTES} bytes"
    return None


def _fold(name: str) -> str:
    """What makes two names look the same: case, compatibility forms, and anything after
    a "#" (a name like "ivy#3fa2" must not pass for the fingerprinted ivy)."""
    return unicodedata.normalize("NFKC", name).casefold().partition("#")[0].strip()


# Text ------------------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` with control characters (escape codes, bell, bidi overrides) made visible.

    Newlines and tabs are kept (the caller lays them out); everything else that could
    move the cursor, ring the bell or reorder the line is shown as a Python-style escape.
    """
    return _CONTROL.sub(lambda m: m.group(0).encode("unicode_escape").decode("ascii"), text)


def text_width(text: str) -> int:
    return sum(get_cwidth(char) for char in text)


def wrap(text: str, width: int, first_width: int | None = None) -> list[str]:
    """Split one line of ``text`` into pieces that fit ``width`` cells, at spaces if possible.

    The first piece may have a different room (``first_width``). A word longer than
    a whole row is cut. The result has at least one piece (maybe empty).
    """
    width = max(1, width)
    room = max(1, first_width if first_width is not None else width)
    pieces: list[str] = []
    current, used = "", 0
    for word in re.split(r"(\s+)", text.expandtabs(4)):
        if not word:
            continue
        size = text_width(word)
        if used + size <= room:
            current, used = current + word, used + size
            continue
        if word.isspace():  # a break point: the space itself is dropped
            pieces.append(current.rstrip())
            current, used, room = "", 0, width
            continue
        if current.strip():
            pieces.append(current.rstrip())
            current, used, room = "", 0, width
        while text_width(word) > room:  # a word longer than a row: cut it
            cut = _fitting_prefix(word, room)
            pieces.append(word[:cut])
            word, room = word[cut:], width
        current, used = word, text_width(word)
    pieces.append(current.rstrip() if pieces else current)
    return pieces


def _fitting_prefix(word: str, room: int) -> int:
    used = 0
    for position, char in enumerate(word):
        used += get_cwidth(char)
        if used > room:
            return max(1, position)
    return len(word)


# Messages as rows --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    """One message as the screen shows it."""

    when: datetime
    """The author's clock, in local time (for display only)."""
    name: str
    text: str
    own: bool = False
    tentative: bool = False
    concurrent: bool = False
    disputed: bool = False
    """Its author is proven to have lied (two versions of a line, or a false clock): other
    peers may show another version of it, or none."""


def message_rows(entry: Entry, width: int) -> list[Row]:
    """The rows of one message: time and name on the first, continuations indented."""
    body = "class:tentative" if entry.tentative else ""
    name_style = f"{'class:own' if entry.own else 'class:name'} {body}".strip()
    head = f"{entry.when:%H:%M:%S} "
    prefix = f"{entry.name}: "
    indent = min(text_width(head) + text_width(prefix), max(2, width // MAX_INDENT_FRACTION))
    lines = printable(entry.text).split("\n")
    rows: list[Row] = []
    lead = text_width(head) + text_width(prefix)
    first_room = width - lead if width - lead >= max(8, width // 4) else None
    if first_room is None:  # a narrow screen or a long name: the text starts below
        rows.append([("class:time", head), (name_style, _truncate(prefix.rstrip(), width - len(head)))])
    for number, line in enumerate(lines):
        starts_message = number == 0 and first_room is not None
        pieces = wrap(line, width - indent, first_room if starts_message else None)
        for piece_number, piece in enumerate(pieces):
            if starts_message and piece_number == 0:
                rows.append([("class:time", head), (name_style, prefix), (body, piece)])
            else:
                rows.append([("", " " * indent), (body, piece)])
    marks: Row = []
    if entry.concurrent:
        marks.append(("class:concurrent", " ∥"))
    if entry.disputed:
        marks.append(("class:disputed", " ≠"))
    if entry.tentative:
        marks.append(("class:tentative", "  ·"))
    if marks:
        last = rows[-1]
        if _row_width(last) + _row_width(marks) <= width:
            last.extend(marks)
        else:
            rows.append([("", " " * indent), *marks])
    return rows


def _truncate(text: str, width: int) -> str:
    if text_width(text) <= width:
        return text
    cut = _fitting_prefix(text, max(1, width - 1))
    return text[:cut] + "…"


def day_row(day: date, width: int) -> Row:
    label = f" {day:%a %d %b %Y} "
    side = max(0, width - text_width(label)) // 2
    return [("class:day", f"{'─' * side}{label}{'─' * side}")]


def _row_width(row: Row) -> int:
    return sum(text_width(text) for _, text in row)


# Scrolling ---------------------------------------------------------------------------------


@dataclass
class ScrollView:
    """Which rows of the conversation are on screen.

    ``bottom`` is the index of the message whose rows end the view (``None``:
    follow the newest) and ``hidden`` how many of that message's rows are below the
    view. Scrolling is by rows; the anchor is a message index, which the caller moves
    when a message is inserted above it (:meth:`inserted`).
    """

    bottom: int | None = None
    hidden: int = 0
    new_below: int = 0

    @property
    def following(self) -> bool:
        return self.bottom is None

    def inserted(self, index: int, count: int) -> bool:
        """A message entered the log at ``index`` (``count`` now held). True if it is below
        the view, i.e. the user has not seen it."""
        if self.bottom is None:
            return False
        if index <= self.bottom:
            self.bottom += 1
            return False
        self.new_below += 1
        return True

    def follow(self) -> None:
        self.bottom, self.hidden, self.new_below = None, 0, 0

    def scroll(self, rows: int, count: int, rows_of: Callable[[int], int], height: int) -> None:
        """Move the view ``rows`` up (negative: down), never past the ends.

        ``rows_of(i)`` is how many rows message ``i`` takes; ``count`` messages are held.
        """
        if count == 0:
            return self.follow()
        bottom = count - 1 if self.bottom is None else min(self.bottom, count - 1)
        hidden = self.hidden + rows
        while hidden >= rows_of(bottom) and bottom > 0:
            hidden -= rows_of(bottom)
            bottom -= 1
        while hidden < 0 and bottom < count - 1:
            bottom += 1
            hidden += rows_of(bottom)
        hidden = max(0, min(hidden, rows_of(bottom) - 1))
        if bottom == count - 1 and hidden == 0:
            return self.follow()
        # Never scroll so far up that the screen is no longer full.
        above = sum(rows_of(i) for i in range(max(0, bottom - height), bottom)) + rows_of(bottom) - hidden
        if above < height and count:
            self._top_of_screen(count, rows_of, height)
            return None
        self.bottom, self.hidden = bottom, hidden
        return None

    def _top_of_screen(self, count: int, rows_of: Callable[[int], int], height: int) -> None:
        """Anchor so that the first row of the first message is the first row on screen."""
        total = 0
        for index in range(count):
            total += rows_of(index)
            if total >= height:
                self.bottom, self.hidden = index, total - height
                if index == count - 1 and self.hidden == 0:
                    self.follow()
                return
        self.follow()  # everything fits on one screen


def visible_rows(
    count: int, view: ScrollView, rows_of: Callable[[int], list[Row]], height: int
) -> tuple[int, list[Row]]:
    """The rows on screen (at most ``height``), from the view's anchor upwards.

    Returns the index of the first message with a row on screen, and the rows. Only
    the messages on screen are laid out, so a long history costs nothing here.
    """
    if count == 0 or height <= 0:
        return 0, []
    index = count - 1 if view.bottom is None else min(view.bottom, count - 1)
    rows = rows_of(index)
    if view.bottom is not None and view.hidden:
        rows = rows[: len(rows) - view.hidden]
    collected = [rows]
    size = len(rows)
    while size < height and index > 0:
        index -= 1
        rows = rows_of(index)
        collected.append(rows)
        size += len(rows)
    flat = [row for rows in reversed(collected) for row in rows]
    return index, flat[-height:]


# Notices -----------------------------------------------------------------------------------


def dial_failure_text(url: str, reason: str, retry_in: float | None) -> str:
    """ "can't reach ws://...: connection refused; retrying in 8 s" (chat screen and plain chat)."""
    then = "giving up on it" if retry_in is None else f"retrying in {max(1, round(retry_in))} s"
    return f"can't reach {url}: {reason}; {then}"


def not_left_text(why_not: str, state: MemberState | None) -> str:
    """What /leave says when it could write no LEAVE (see Peer.leave): why, how the peer
    stopped instead (``state``: ours in the room, None if never a member), and what to
    do (chat screen and plain chat)."""
    if state is None or state is MemberState.REMOVED:
        return f"not left: {why_not}"
    stopped = "away" if state is MemberState.AWAY else "still a member"
    return f"not left: {why_not}; you stopped {stopped}: run the chat again and /leave once that is over"


# Status bar --------------------------------------------------------------------------------


def fit_status(parts: list[tuple[str, str]], width: int) -> str:
    """Join status parts (long form, short form) with separators to fit ``width`` cells.

    Parts are shortened from the last to the first, then dropped from the last,
    so the most important (first) part stays longest.
    """
    chosen = [long for long, _ in parts]
    separator = " │ "

    def size() -> int:
        return text_width(" " + separator.join(chosen) + " ")

    for index in reversed(range(len(parts))):
        if size() <= width:
            break
        chosen[index] = parts[index][1]
    while size() > width and len(chosen) > 1:
        chosen.pop()
    line = " " + separator.join(chosen) + " "
    if text_width(line) > width:
        line = line[: max(0, width - 1)] + "…"
    return line
