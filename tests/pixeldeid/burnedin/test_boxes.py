"""TextBox geometry, merging and JSON round trip."""

from __future__ import annotations

import json

import pytest

from pixeldeid.burnedin.boxes import TextBox, boxes_from_json, boxes_to_json, merge_boxes


def test_geometry_and_padding():
    b = TextBox(10, 20, 30, 25, "MI 0.6")
    assert (b.width, b.height, b.area) == (20, 5, 100)
    assert b.padded(3) == b.with_(x0=7, y0=17, x1=33, y1=28)
    # clipped to the frame on every side
    assert b.padded(50, rows=40, cols=35) == b.with_(x0=0, y0=0, x1=35, y1=40)
    assert TextBox(-5, -5, 500, 500).clipped(100, 200) == TextBox(0, 0, 200, 100)
    assert TextBox(5, 5, 5, 9).area == 0


def test_intersects_is_exclusive_and_per_frame():
    a = TextBox(0, 0, 10, 10, frame=1)
    assert a.intersects(TextBox(9, 9, 12, 12, frame=1))
    assert not a.intersects(TextBox(10, 0, 12, 10, frame=1))  # touching: x1 is exclusive
    assert a.intersects(TextBox(10, 0, 12, 10, frame=1), gap=1)
    assert a.intersects(TextBox(12, 0, 14, 10, frame=1), gap=2)  # 2 empty columns
    assert not a.intersects(TextBox(13, 0, 14, 10, frame=1), gap=2)
    assert not a.intersects(TextBox(0, 0, 10, 10, frame=2))
    assert a.intersects(TextBox(0, 0, 10, 10, frame=None))  # None: every frame


def test_merge_unions_near_boxes_of_a_frame():
    boxes = [
        TextBox(10, 10, 50, 20, "TEST,", 0.9, 0, "identity"),
        TextBox(52, 10, 80, 20, "ADL", 0.8, 0, "unknown"),   # 2 px away: merged
        TextBox(200, 10, 240, 20, "MI", 1.0, 0, "safe"),      # far: separate
        TextBox(10, 10, 50, 20, "TEST,", 0.9, 1, "safe"),     # other frame: separate
        TextBox(60, 60, 60, 70, "", 1.0, 0),                  # empty area: dropped
    ]
    merged = merge_boxes(boxes, gap=2)
    assert len(merged) == 3
    first = next(b for b in merged if b.frame == 0 and b.x0 == 10)
    assert (first.x0, first.y0, first.x1, first.y1) == (10, 10, 80, 20)
    assert first.label == "identity" and first.text == "TEST, ADL" and first.confidence == 0.8
    assert merge_boxes(boxes, gap=1)[0].x1 == 50  # 2 px apart with gap 1: not merged


def test_merge_chains_transitively():
    row = [TextBox(i * 10, 0, i * 10 + 9, 8, label="safe") for i in range(5)]  # 1 px gaps
    (one,) = merge_boxes(row, gap=1)
    assert (one.x0, one.x1, one.label) == (0, 49, "safe")


def test_json_round_trip_and_text_withheld():
    boxes = [TextBox(1, 2, 3, 4, "SMITH", 0.5, 3, "identity", "ocr"),
             TextBox(5, 6, 7, 8, "MI 0.6", 1.0, None, "safe", "template")]
    rows = json.loads(json.dumps(boxes_to_json(boxes)))
    assert boxes_from_json(rows) == boxes
    safe_rows = boxes_to_json(boxes, with_text=False)
    assert [r["text"] for r in safe_rows] == ["", "MI 0.6"]
    with pytest.raises(TypeError):
        boxes_from_json([{**rows[0], "colour": "red"}])


def test_repr_never_shows_text():
    assert "SMITH" not in repr(TextBox(0, 0, 1, 1, "SMITH"))
    assert "SMITH" not in str([TextBox(0, 0, 1, 1, "SMITH")])
