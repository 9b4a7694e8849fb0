"""The terminal chat's layout rules, without a terminal: rows, wrapping, names, scrolling."""

from __future__ import annotations

from datetime import date, datetime
from types import SimpleNamespace

from hypothesis import given
from hypothesis import strategies as st
from roomkit import Room

from p2pchat.chatview import (
    Entry,
    Row,
    ScrollView,
    day_row,
    display_names,
    fit_status,
    message_rows,
    printable,
    text_width,
    visible_rows,
    wrap,
)
from p2pchat.identity import Identity
from p2pchat.tui import ChatScreen

WHEN = datetime(2026, 11, 27, 9, 30, 5)


def texts(rows: list[Row]) -> list[str]:
    return ["".join(text for _, text in row) for row in rows]


# Wrapping -----------------------------------------------------------------------------------


def test_wrap_breaks_at_spaces_not_inside_words() -> None:
    assert wrap("the quick brown fox jumps", 10) == ["the quick", "brown fox", "jumps"]


def test_wrap_cuts_a_word_longer_than_a_row() -> None:
    assert wrap("a " + "x" * 12, 5) == ["a", "xxxxx", "xxxxx", "xx"]


def test_wrap_respects_a_narrower_first_row() -> None:
    assert wrap("one two three four", 12, first_width=4) == ["one", "two three", "four"]


def test_wrap_counts_wide_characters_as_two_cells() -> None:
    pieces = wrap("日本語のテキスト", 6)
    assert all(text_width(piece) <= 6 for piece in pieces)
    assert "".join(pieces) == "日本語のテキスト"


@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), max_size=200),
       st.integers(min_value=1, max_value=60))  # fmt: skip
def test_wrapped_pieces_fit_and_keep_every_non_space_character(text: str, width: int) -> None:
    pieces = wrap(text, width)
    assert pieces
    for piece in pieces:
        # A single character wider than the row is the only thing allowed to overflow.
        assert text_width(piece) <= width or len(piece) == 1
    assert "".join("".join(pieces).split()) == "".join(text.expandtabs(4).split())


# Control characters -----------------------------------------------------------------------------


def test_printable_shows_escape_codes_and_bell_instead_of_sending_them() -> None:
    shown = printable("red \x1b[31m alarm\x07 \u202eevil")
    assert "\x1b" not in shown and "\x07" not in shown and "\u202e" not in shown
    assert "\\x1b[31m" in shown and "\\x07" in shown and "\\u202e" in shown


def test_printable_keeps_newlines_tabs_and_ordinary_text() -> None:
    assert printable("a\nb\tc ∥ é 日本") == "a\nb\tc ∥ é 日本"


# Messages as rows ---------------------------------------------------------------------------------


def test_a_multi_line_message_indents_its_continuation_lines_under_the_text() -> None:
    rows = texts(message_rows(Entry(WHEN, "bob", "first\n09:00:00 alice: fake\nthird"), 80))
    assert rows == [
        "09:30:05 bob: first",
        "              09:00:00 alice: fake",
        "              third",
    ]


def test_a_long_line_wraps_at_words_with_a_hanging_indent() -> None:
    rows = texts(message_rows(Entry(WHEN, "ivy", "word " * 20), 40))
    assert rows[0].startswith("09:30:05 ivy: word")
    assert all(len(row) <= 40 for row in rows)
    indent = 40 // 3  # continuation rows are indented at most a third of the width
    assert all(row.startswith(" " * indent + "word") for row in rows[1:])
    assert " ".join(" ".join(rows).split()[2:]).split().count("word") == 20


def test_marks_for_concurrent_and_tentative_follow_the_text() -> None:
    (row,) = texts(message_rows(Entry(WHEN, "bob", "hi", concurrent=True, tentative=True), 80))
    assert row == "09:30:05 bob: hi ∥  ·"
    (row,) = texts(message_rows(Entry(WHEN, "bob", "hi", disputed=True, tentative=True), 80))
    assert row == "09:30:05 bob: hi ≠  ·"  # (its author was caught lying)


def test_a_narrow_screen_puts_the_text_below_the_name() -> None:
    rows = texts(message_rows(Entry(WHEN, "a-very-long-display-name", "hello there"), 30))
    assert rows[0].startswith("09:30:05 a-very-long-disp") and rows[0].endswith("…")
    assert rows[1].strip() == "hello there"
    assert all(len(row) <= 30 for row in rows)


def test_day_separator_names_the_date() -> None:
    (row,) = texts([day_row(date(2026, 11, 27), 40)])
    assert "Fri 27 Nov 2026" in row and len(row) <= 40


# Names ------------------------------------------------------------------------------------------


def test_a_shared_name_gets_a_key_fingerprint_on_both_senders() -> None:
    ivy1, ivy2, bob = bytes.fromhex("3fa2" + "00" * 30), bytes.fromhex("91c0" + "11" * 30), b"\x05" * 32
    shown = display_names({ivy1: "ivy", ivy2: "Ivy", bob: "bob"})
    assert shown == {ivy1: "ivy#3fa2", ivy2: "Ivy#91c0", bob: "bob"}


def test_a_fingerprint_grows_until_two_keys_with_one_name_differ() -> None:
    # Grinding a key whose first four hex digits match someone's costs little.
    real, forged = bytes.fromhex("3fa2c1" + "00" * 29), bytes.fromhex("3fa2d7" + "00" * 29)
    shown = display_names({real: "ivy", forged: "ivy"})
    assert shown == {real: "ivy#3fa2c1", forged: "ivy#3fa2d7"}


def test_a_name_that_imitates_a_fingerprint_gets_its_own() -> None:
    real, impostor = bytes.fromhex("3fa2" + "00" * 30), bytes.fromhex("9c1b" + "00" * 30)
    shown = display_names({real: "ivy", impostor: "ivy#3fa2"})
    assert shown == {real: "ivy#3fa2", impostor: "ivy#3fa2#9c1b"}
    assert display_names({impostor: "x#1"}) == {impostor: "x#1#9c1b"}


def test_members_without_a_known_name_are_shown_by_fingerprint_not_hex() -> None:
    silent = bytes.fromhex("abcd" + "00" * 30)
    shown = display_names({b"\x01" * 32: "ann"}, {silent})
    assert shown[silent] == "#abcd"


def test_names_with_control_characters_are_escaped() -> None:
    assert display_names({b"\x01" * 32: "ev\x1b[2Jil"})[b"\x01" * 32] == "ev\\x1b[2Jil"


# Scrolling ------------------------------------------------------------------------------------


def rows_for(sizes: list[int]) -> list[list[Row]]:
    return [[[("", f"m{i}.{r}")] for r in range(size)] for i, size in enumerate(sizes)]


def test_following_view_always_ends_with_the_newest_row_however_messages_wrap() -> None:
    sizes = [3, 1, 5, 1, 1, 2, 4, 1]
    laid_out = rows_for(sizes)
    for height in range(1, 20):
        _, rows = visible_rows(len(sizes), ScrollView(), lambda i: laid_out[i], height)
        assert texts(rows)[-1] == "m7.0"
        assert len(rows) == min(height, sum(sizes))


def test_scrolling_up_and_down_by_rows_returns_to_following() -> None:
    sizes = [2] * 20
    laid_out = rows_for(sizes)
    view = ScrollView()
    view.scroll(5, len(sizes), lambda i: sizes[i], 6)
    _, rows = visible_rows(len(sizes), view, lambda i: laid_out[i], 6)
    assert texts(rows)[-1] == "m17.0"  # five rows up from m19.1
    view.scroll(-5, len(sizes), lambda i: sizes[i], 6)
    assert view.following


def test_scrolling_stops_at_the_top_with_a_full_screen() -> None:
    sizes = [1] * 10
    laid_out = rows_for(sizes)
    view = ScrollView()
    view.scroll(1000, len(sizes), lambda i: sizes[i], 4)
    _, rows = visible_rows(len(sizes), view, lambda i: laid_out[i], 4)
    assert texts(rows) == ["m0.0", "m1.0", "m2.0", "m3.0"]


def test_while_scrolled_up_new_messages_below_are_counted_and_inserts_above_keep_the_view() -> None:
    view = ScrollView()
    view.scroll(3, 10, lambda i: 1, 4)
    bottom = view.bottom
    assert bottom is not None
    assert view.inserted(10, 11) is True and view.new_below == 1  # the newest: below the view
    assert view.inserted(0, 12) is False and view.bottom == bottom + 1  # above: the view stays put
    view.follow()
    assert view.new_below == 0 and view.following


# Status bar -----------------------------------------------------------------------------------


def test_status_bar_shortens_parts_before_dropping_them() -> None:
    parts = [("alice @ ws://127.0.0.1:9001", "alice"), ("peers 2", "p 2"), ("messages 15", "m 15")]
    assert fit_status(parts, 80) == " alice @ ws://127.0.0.1:9001 │ peers 2 │ messages 15 "
    narrow = fit_status(parts, 40)
    assert len(narrow) <= 40 and narrow.startswith(" alice") and "m 15" in narrow
    tiny = fit_status(parts, 10)
    assert len(tiny) <= 10 and tiny.startswith(" alice")


# The chat screen's rows, from a real log --------------------------------------------------------


def screen_with(texts_and_days: list[tuple[str, int]], names: tuple[str, ...] = ("ann",)) -> ChatScreen:
    """A chat screen over a log holding ``(text, day of November 2026)`` messages."""
    identities = [Identity(bytes([n + 1]) * 32) for n in range(len(names))]
    log = Room(identities).log()  # founded (on 1 Jan 1970), the identities admitted
    for number, (text, day) in enumerate(texts_and_days):
        who = number % len(names)
        when = int(datetime(2026, 11, day, 12, 0).timestamp() * 1000)
        log.receive(log.compose(identities[who], name=names[who], text=text, sent_at_ms=when))
    peer = SimpleNamespace(log=log, node=SimpleNamespace(identity=identities[0]), url="ws://127.0.0.1:1")
    screen = ChatScreen(peer=peer)  # type: ignore[arg-type]
    for message in log:
        screen.learn_name(message.sender_id, message.name, message.seq)
    return screen


def test_a_day_separator_comes_before_the_first_message_of_each_day() -> None:
    screen = screen_with([("one", 26), ("two", 26), ("three", 27)])
    rows = texts(screen.conversation_rows(60, 20))
    first = next(n for n, row in enumerate(rows) if "Thu 26 Nov 2026" in row)
    assert "Jan 1970" in rows[0] and "* founder founded the room" in rows[1]  # the room's entries
    assert rows[first + 1].endswith("ann: one")
    assert rows[first + 2].endswith("ann: two")
    assert "Fri 27 Nov 2026" in rows[first + 3] and rows[first + 4].endswith("ann: three")


def test_the_screen_names_shared_names_by_fingerprint_and_marks_the_view_when_scrolled() -> None:
    screen = screen_with([(f"line {n}", 27) for n in range(30)], names=("ivy", "ivy"))
    rows = texts(screen.conversation_rows(60, 8))
    assert "ivy#" in rows[-1] and ": line 29" in rows[-1]
    screen.scroll(5)
    rows = texts(screen.conversation_rows(60, 8))
    assert "line 29" not in " ".join(rows) and "more below" in rows[-1]
    screen.view.inserted(30, 31)
    assert "1 new below" in texts(screen.conversation_rows(60, 8))[-1]


def test_a_peer_refusing_us_again_and_again_leaves_the_first_notices_on_screen() -> None:
    screen = ChatScreen()
    screen.note("You are carol. Others can join you with: --join ws://127.0.0.1:2/#c0ffee")
    screen.note("ws://127.0.0.1:1/ names no peer id: trusting whoever answers there (trust on first use)")
    refused = "* alice disconnected: connection closed (1008: this room is invite-only)"
    for _ in range(5):  # redialed with backoff, refused each time
        screen.note_recurring("* connected to alice (ws://127.0.0.1:1/)")
        screen.note_recurring(refused)
    rows = texts(screen.notice_rows(120, 6))
    assert rows == [
        "You are carol. Others can join you with: --join ws://127.0.0.1:2/#c0ffee",
        "ws://127.0.0.1:1/ names no peer id: trusting whoever answers there (trust on first use)",
        "* connected to alice (ws://127.0.0.1:1/) (5 times)",
        f"{refused} (5 times)",
    ]
    screen.note_recurring("* connected to alice (ws://127.0.0.1:1/)")  # and this time it holds
    assert texts(screen.notice_rows(120, 6))[-2:] == [
        f"{refused} (5 times)",
        "* connected to alice (ws://127.0.0.1:1/) (6 times)",
    ]


def test_only_recurring_notices_fold_and_only_into_the_last_ones() -> None:
    screen = ChatScreen()
    screen.note("/who answer")
    screen.note("/who answer")  # a command's answer is shown again in full
    screen.note_recurring("* bob disconnected: gone")
    screen.note("something else")
    screen.note("and more")
    screen.note_recurring("* bob disconnected: gone")  # not among the last two: a new line
    assert texts(screen.notice_rows(120, 10)) == [
        "/who answer",
        "/who answer",
        "* bob disconnected: gone",
        "something else",
        "and more",
        "* bob disconnected: gone",
    ]


def test_a_url_cut_at_the_edge_of_the_notices_stays_whole() -> None:
    screen = ChatScreen()
    url = "ws://127.0.0.1:36235/#" + "9a17b3209453" * 5
    screen.note(f"Others can join you with: --join {url}")
    rows = texts(screen.notice_rows(50, 6))
    assert rows[0] == "Others can join you with: --join"  # (the URL starts a new row, indented)
    assert rows[1].startswith("  ws://") and all(len(row) <= 50 for row in rows)
    assert "".join(row.strip() for row in rows[1:]) == url  # (no space inside: it copies whole)
    assert not rows[2].startswith(" ")  # (the rest of a cut word goes on at the margin)
