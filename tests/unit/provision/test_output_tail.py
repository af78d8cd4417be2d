"""What is kept of a step's output: its end, in whole lines, within a byte limit."""

from __future__ import annotations

from backend.provision.runs import OutputTail


def test_the_tail_keeps_the_last_whole_lines_within_the_limit_and_counts_the_rest():
    tail = OutputTail(limit=21)
    for i in range(10):
        tail.add(f"line {i}")  # 7 bytes with its newline
    assert tail.lines() == ("line 7", "line 8", "line 9")
    assert tail.text == "line 7\nline 8\nline 9\n"
    assert tail.dropped_bytes == 7 * 7
    assert tail.lines(last=2) == ("line 8", "line 9")


def test_sizes_are_counted_in_bytes_not_characters():
    tail = OutputTail(limit=10)
    tail.add("é" * 4)  # 8 bytes and a newline
    tail.add("x")
    assert tail.lines() == ("x",) and tail.dropped_bytes == 9


def test_a_line_longer_than_the_limit_is_not_kept():
    tail = OutputTail(limit=5)
    tail.add("far too long")
    assert tail.lines() == () and tail.dropped_bytes == 13
