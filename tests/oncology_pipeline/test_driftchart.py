"""The drift chart: a well-formed SVG of one panel per feature, bars true to the shares, drift highlighted."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from oncology_model.datamodel import FEATURES
from oncology_pipeline.driftchart import DRIFT_COLOUR, PANEL_H, PANEL_W, PLOT_H, FeatureCounts, axis_top, drift_svg

NS = {"svg": "http://www.w3.org/2000/svg"}
BARE_NUCLEI = (402, 30, 28, 19, 30, 4, 8, 21, 9, 132)
SHIFTED = (280, 26, 102, 44, 51, 4, 7, 18, 8, 60)  # 600 rows: mass moved from 1 (and 10) to 3..5


def features(drifting: str = "bare_nuclei") -> list[FeatureCounts]:
    """Nine features; the drifting one has the shifted current window."""
    return [
        FeatureCounts(
            name,
            BARE_NUCLEI,
            SHIFTED if name == drifting else BARE_NUCLEI,
            drifts=name == drifting,
            note="adj. p 0.0001, PSI 0.31 > 0.05" if name == drifting else "",
        )
        for name in FEATURES
    ]


def panels(root: ET.Element) -> dict[str, ET.Element]:
    found = [g for g in root.iter("{http://www.w3.org/2000/svg}g") if "panel" in g.get("class", "").split()]
    return {g.get("data-feature", ""): g for g in found}


def bars(panel: ET.Element, side: str = "") -> list[ET.Element]:
    wanted = {"bar", side} - {""}
    return [r for r in panel.iter("{http://www.w3.org/2000/svg}rect") if wanted <= set(r.get("class", "").split())]


def one(element: ET.Element, path: str) -> ET.Element:
    found = element.find(path, NS)
    assert found is not None, path
    return found


def text_of(element: ET.Element) -> str:
    return "".join(element.itertext())


def test_the_document_is_a_standalone_svg_with_its_size() -> None:
    root = ET.fromstring(drift_svg(features(), title="Model m1 · window w · 600 rows"))

    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    width, height = int(root.get("width", "0")), int(root.get("height", "0"))
    assert root.get("viewBox") == f"0 0 {width} {height}"
    assert text_of(one(root, "svg:title")) == "Model m1 · window w · 600 rows"


def test_one_panel_per_feature_in_a_three_by_three_grid_inside_the_picture() -> None:
    root = ET.fromstring(drift_svg(features(), title="t"))
    found = panels(root)

    assert list(found) == list(FEATURES)
    corners = [tuple(map(float, re.findall(r"[\d.]+", g.get("transform", "")))) for g in found.values()]
    assert len({x for x, _ in corners}) == 3 and len({y for _, y in corners}) == 3
    assert max(x for x, _ in corners) + PANEL_W <= int(root.get("width", "0"))
    assert max(y for _, y in corners) + PANEL_H <= int(root.get("height", "0"))


def test_each_panel_has_ten_reference_and_ten_current_bars() -> None:
    for panel in panels(ET.fromstring(drift_svg(features(), title="t"))).values():
        assert len(bars(panel, "reference")) == 10
        assert len(bars(panel, "current")) == 10


@pytest.mark.parametrize(
    ("largest", "top", "step"),
    [(0.589, 0.6, 0.2), (0.83, 1.0, 0.2), (0.21, 0.25, 0.05), (1.0, 1.0, 0.2), (0.04, 0.04, 0.01), (0.0, 0.01, 0.01)],
)
def test_the_share_axis_ends_at_a_round_value_above_the_largest_share(largest: float, top: float, step: float) -> None:
    got_top, got_step = axis_top(largest)

    assert got_top == pytest.approx(top)
    assert got_step == step


def test_bar_heights_are_proportional_to_the_shares() -> None:
    panel = panels(ET.fromstring(drift_svg(features(), title="t")))["bare_nuclei"]
    reference, current = bars(panel, "reference"), bars(panel, "current")
    top, _ = axis_top(402 / 683)  # the largest share in the panel: reference at 1

    assert float(reference[0].get("height", "")) == pytest.approx(402 / 683 / top * PLOT_H, abs=0.01)
    assert float(current[2].get("height", "")) == pytest.approx(102 / 600 / top * PLOT_H, abs=0.01)
    assert float(current[2].get("data-share", "")) == pytest.approx(0.17)


def test_a_share_at_the_axis_top_fills_the_plot_and_half_of_it_fills_half() -> None:
    counts = (2, 1, 1, 0, 0, 0, 0, 0, 0, 0)  # shares 0.5 and 0.25: the axis ends at 50 %
    svg = drift_svg([FeatureCounts("f", counts, counts, drifts=False)], title="t")
    heights = [float(r.get("height", "")) for r in bars(panels(ET.fromstring(svg))["f"], "reference")]

    assert heights[:4] == [pytest.approx(PLOT_H), pytest.approx(PLOT_H / 2), pytest.approx(PLOT_H / 2), 0.0]


def test_a_drifting_feature_has_a_highlighted_panel_and_says_drift() -> None:
    found = panels(ET.fromstring(drift_svg(features(), title="t")))
    drifting, steady = found["bare_nuclei"], found["mitoses"]

    assert "drift" in drifting.get("class", "").split()
    assert one(drifting, "svg:rect[@class='frame']").get("stroke") == DRIFT_COLOUR
    assert text_of(one(drifting, "svg:text[@class='heading']")) == "bare_nuclei — drift"
    assert text_of(one(drifting, "svg:text[@class='note']")) == "adj. p 0.0001, PSI 0.31 > 0.05"
    assert "drift" not in steady.get("class", "").split()
    assert one(steady, "svg:rect[@class='frame']").get("stroke") != DRIFT_COLOUR
    assert text_of(one(steady, "svg:text[@class='heading']")) == "mitoses — no drift"


def test_each_score_has_hover_text_with_both_shares() -> None:
    panel = panels(ET.fromstring(drift_svg(features(), title="t")))["bare_nuclei"]
    hover = [text_of(t) for t in panel.iter("{http://www.w3.org/2000/svg}title")]

    assert len(hover) == 10
    assert hover[2] == "bare_nuclei = 3: reference 4.1 % (28 of 683), current 17.0 % (102 of 600)"


def test_names_notes_and_titles_are_escaped() -> None:
    name, note, title = "a<&>\"b'", "p < 0.05 & PSI > 0.2", "<script>alert('x')</script> & more"
    svg = drift_svg([FeatureCounts(name, BARE_NUCLEI, SHIFTED, drifts=True, note=note)], title=title)
    root = ET.fromstring(svg)
    panel = panels(root)[name]

    assert "<script>" not in svg
    assert text_of(one(root, "svg:text[@class='title']")) == title
    assert text_of(one(panel, "svg:text[@class='heading']")) == f"{name} — drift"
    assert text_of(one(panel, "svg:text[@class='note']")) == note


def test_a_long_title_is_wrapped_onto_several_lines_without_losing_words() -> None:
    title = " · ".join(f"part {i}" for i in range(40))
    lines = ET.fromstring(drift_svg(features(), title=title)).findall("svg:text[@class='title']/svg:tspan", NS)

    assert len(lines) > 1
    assert " ".join(text_of(t) for t in lines) == title


def test_a_window_without_rows_draws_no_bars_and_says_so() -> None:
    zero = (0,) * 10
    svg = drift_svg(
        [
            FeatureCounts("empty", zero, zero, drifts=False),
            FeatureCounts("no current", BARE_NUCLEI, zero, drifts=False),
        ],
        title="t",
    )
    found = panels(ET.fromstring(svg))

    assert bars(found["empty"]) == []
    assert text_of(one(found["empty"], ".//svg:text[@class='empty']")) == "no rows"
    assert len(bars(found["no current"], "reference")) == 10 and bars(found["no current"], "current") == []
    assert text_of(one(found["no current"], "svg:text[@class='note']")) == "no current rows"


def test_the_same_input_gives_the_same_bytes() -> None:
    as_tuples = drift_svg(features(), title="t")
    as_lists = drift_svg(
        [FeatureCounts(f.name, list(f.reference), list(f.current), f.drifts, f.note) for f in features()], title="t"
    )

    assert as_tuples == as_lists == drift_svg(features(), title="t")


@pytest.mark.parametrize(("reference", "current"), [((1,) * 9, (1,) * 10), ((1,) * 10, (-1,) + (1,) * 9)])
def test_counts_must_be_ten_non_negative_numbers(reference: tuple[int, ...], current: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="needs 10 counts >= 0"):
        FeatureCounts("f", reference, current, drifts=False)
