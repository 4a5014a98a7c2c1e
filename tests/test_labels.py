"""Tests for fractalsync_models.training.labels: every reader on realistic files, every bad-file
case (error naming file and line, or the documented repair), the mapping tables and their doc,
frames and boundaries, and hypothesis round trips through CSV and MSA text."""

import json
import math
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fractalsync_models.training.labels import (
    IGNORE,
    JOIN_TOLERANCE_S,
    LABEL_TABLES,
    SECTION_LABELS,
    SOURCES,
    LabelError,
    Segment,
    UnknownLabelWarning,
    boundaries,
    detect_source,
    normalize_label,
    read_allinone,
    read_csv,
    read_harmonix,
    read_labels,
    read_salami,
    read_songformer_json,
    read_songformer_msa,
    render_label_tables,
    segments_to_frames,
)

REPO = Path(__file__).resolve().parents[1]


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _triples(segments):
    return [(s.start, s.end, s.label) for s in segments]


# --- realistic samples, one per format ---------------------------------------------------------

# SongFormer's infer.py: json.dump(indent=4) of {"label", "start", "end"} floats.
SONGFORMER_JSON = """[
    {
        "label": "intro",
        "start": 0.0,
        "end": 12.48
    },
    {
        "label": "verse",
        "start": 12.48,
        "end": 41.28
    },
    {
        "label": "pre-chorus",
        "start": 41.28,
        "end": 55.68
    },
    {
        "label": "chorus",
        "start": 55.68,
        "end": 84.48
    },
    {
        "label": "outro",
        "start": 84.48,
        "end": 101.04
    }
]
"""

# SongFormer's app: the same list with the times written as strings.
SONGFORMER_APP_JSON = json.dumps([
    {"label": "silence", "start": "0.00", "end": "0.96"},
    {"label": "intro", "start": "0.96", "end": "12.48"},
    {"label": "inst", "start": "12.48", "end": "30.24"},
    {"label": "bridge", "start": "30.24", "end": "44.64"},
], indent=2)

SONGFORMER_MSA = """0.00 intro
12.48 verse
41.28 pre-chorus
55.68 chorus
84.48 outro
101.04 end
"""

# all-in-one's result JSON (README shape): path, bpm, beats, downbeats, beat_positions, segments.
ALLINONE_JSON = json.dumps({
    "path": "/music/track.wav",
    "bpm": 100,
    "beats": [0.33, 0.75, 1.14, 1.55],
    "downbeats": [0.33, 1.94],
    "beat_positions": [1, 2, 3, 4],
    "segments": [
        {"start": 0.0, "end": 0.33, "label": "start"},
        {"start": 0.33, "end": 13.13, "label": "intro"},
        {"start": 13.13, "end": 37.53, "label": "chorus"},
        {"start": 37.53, "end": 51.53, "label": "verse"},
        {"start": 51.53, "end": 64.34, "label": "solo"},
        {"start": 64.34, "end": 89.93, "label": "break"},
        {"start": 89.93, "end": 105.93, "label": "bridge"},
        {"start": 105.93, "end": 153.95, "label": "outro"},
        {"start": 153.95, "end": 154.67, "label": "end"},
    ],
}, indent=2)

HARMONIX = """0.0 silence
1.921 intro
17.287 verse
48.019 prechorus
55.702 chorus
86.434 postchorus
94.117 verse2
124.849 chorus
155.581 outro
170.947 end
"""

# SALAMI parsed functions: tabs, mixed case, duplicated times (a zero-length Outro before Solo),
# no_function, and a Silence after End at the same time.
SALAMI = (
    "0.0\tSilence\n"
    "0.046439909\tIntro\n"
    "27.817369614\tVerse\n"
    "43.976689342\tPre-Chorus\n"
    "52.0\tChorus\n"
    "77.357687074\tno_function\n"
    "86.471451247\tInterlude\n"
    "104.840249433\tOutro\n"
    "104.840249433\tSolo\n"
    "135.329954648\tFade-out\n"
    "150.2\tEnd\n"
    "150.2\tSilence\n"
)

CSV = 'start,end,label\n0.0,10.5,intro\n10.5,30.25,"Verse 1"\n30.25,45.0,Chorus (a)\n'


def test_songformer_json(tmp_path):
    path = _write(tmp_path, "song.json", SONGFORMER_JSON)
    expected = [(0.0, 12.48, "intro"), (12.48, 41.28, "verse"), (41.28, 55.68, "pre-chorus"),
                (55.68, 84.48, "chorus"), (84.48, 101.04, "outro")]
    assert _triples(read_songformer_json(path)) == expected
    assert detect_source(path) == "songformer_json"
    assert _triples(read_labels(path)) == expected


def test_songformer_app_json_with_string_times(tmp_path):
    path = _write(tmp_path, "app.json", SONGFORMER_APP_JSON)
    assert _triples(read_labels(path)) == [
        (0.0, 0.96, "silence"), (0.96, 12.48, "intro"), (12.48, 30.24, "inst"),
        (30.24, 44.64, "bridge"),
    ]


def test_songformer_msa_matches_its_json(tmp_path):
    msa = _write(tmp_path, "song.txt", SONGFORMER_MSA)
    js = _write(tmp_path, "song.json", SONGFORMER_JSON)
    assert detect_source(msa) == "songformer_msa"
    assert read_songformer_msa(msa) == read_songformer_json(js)
    assert read_labels(msa) == read_labels(js)


def test_allinone(tmp_path):
    path = _write(tmp_path, "track.json", ALLINONE_JSON)
    assert detect_source(path) == "allinone"
    assert _triples(read_allinone(path)) == [
        (0.0, 0.33, "silence"), (0.33, 13.13, "intro"), (13.13, 37.53, "chorus"),
        (37.53, 51.53, "verse"), (51.53, 64.34, "inst"), (64.34, 89.93, "inst"),
        (89.93, 105.93, "bridge"), (105.93, 153.95, "outro"), (153.95, 154.67, "silence"),
    ]


def test_harmonix(tmp_path):
    path = _write(tmp_path, "0017_song.txt", HARMONIX)
    assert detect_source(path) == "harmonix"  # postchorus is not a SongFormer word
    segments = read_harmonix(path)
    assert _triples(segments) == [
        (0.0, 1.921, "silence"), (1.921, 17.287, "intro"), (17.287, 48.019, "verse"),
        (48.019, 55.702, "pre-chorus"), (55.702, 86.434, "chorus"), (86.434, 94.117, "chorus"),
        (94.117, 124.849, "verse"), (124.849, 155.581, "chorus"), (155.581, 170.947, "outro"),
    ]
    assert read_labels(path) == segments
    tabbed = _write(tmp_path, "tabbed.txt", HARMONIX.replace(" ", "\t"))
    assert read_harmonix(tabbed) == segments


def test_salami(tmp_path):
    path = _write(tmp_path, "textfile1_functions.txt", SALAMI)
    assert detect_source(path) == "salami"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every word is in the table: no warning
        segments = read_labels(path)
    assert _triples(segments) == [
        (0.0, 0.046439909, "silence"), (0.046439909, 27.817369614, "intro"),
        (27.817369614, 43.976689342, "verse"), (43.976689342, 52.0, "pre-chorus"),
        (52.0, 77.357687074, "chorus"), (77.357687074, 86.471451247, IGNORE),
        (86.471451247, 104.840249433, "inst"), (104.840249433, 135.329954648, "inst"),
        (135.329954648, 150.2, "outro"),
    ]
    assert read_salami(path) == segments


def test_csv(tmp_path):
    path = _write(tmp_path, "song.csv", CSV)
    expected = [(0.0, 10.5, "intro"), (10.5, 30.25, "verse"), (30.25, 45.0, "chorus")]
    assert _triples(read_csv(path)) == expected
    assert _triples(read_labels(path)) == expected
    no_header = _write(tmp_path, "plain.csv", CSV.split("\n", 1)[1])
    assert _triples(read_labels(no_header)) == expected
    as_txt = _write(tmp_path, "plain.lab", CSV)
    assert detect_source(as_txt) == "csv"


def test_time_line_detection_picks_the_table_that_knows_the_labels(tmp_path):
    salami_words = _write(tmp_path, "annotation.txt", "0.0\tSilence\n1.0\tHead\n30.0\t"
                                                     "no_function\n40.0\tEnd\n")
    assert detect_source(salami_words) == "salami"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [s.label for s in read_labels(salami_words)] == ["silence", "chorus", IGNORE]
    nobody = _write(tmp_path, "odd.txt", "0.0 kazoo\n5.0 end\n")
    assert detect_source(nobody) == "songformer_msa"


def test_explicit_source_overrides_detection(tmp_path):
    path = _write(tmp_path, "labels.dat", SONGFORMER_MSA)
    assert read_labels(path, "harmonix") == read_labels(path, "songformer_msa")
    with pytest.raises(ValueError, match="unknown label source 'nope'"):
        read_labels(path, "nope")


# --- bad files -------------------------------------------------------------------------------

def _error(path, source=None, **kw) -> LabelError:
    with pytest.raises(LabelError) as info:
        read_labels(path, source, **kw)
    err = info.value
    assert str(err).startswith(str(path))
    return err


@pytest.mark.parametrize("name,source", [
    ("a.json", "songformer_json"), ("a.txt", "songformer_msa"), ("a.json", "allinone"),
    ("a.txt", "harmonix"), ("a_functions.txt", "salami"), ("a.csv", "csv"),
])
@pytest.mark.parametrize("text", ["", "\n  \n"])
def test_empty_files(tmp_path, name, source, text):
    path = _write(tmp_path, name, text)
    err = _error(path, source)
    assert "empty" in err.problem
    err = _error(path)
    assert "empty" in err.problem


def test_empty_lists(tmp_path):
    assert "empty" in _error(_write(tmp_path, "a.json", "[]")).problem
    assert "empty" in _error(_write(tmp_path, "b.json", '{"segments": []}')).problem
    assert "empty" in _error(_write(tmp_path, "c.csv", "start,end,label\n")).problem
    only_end = _write(tmp_path, "d.txt", "12.0 end\n")
    assert "empty" in _error(only_end, "harmonix").problem


def test_only_zero_length_segments(tmp_path):
    path = _write(tmp_path, "z.csv", "1.0,1.0,verse\n2.0,2.0,chorus\n")
    assert "positive length" in _error(path).problem


def test_not_utf8(tmp_path):
    path = tmp_path / "bin.csv"
    path.write_bytes(b"0.0,1.0,\xff\xfe\n")
    assert "not UTF-8" in _error(path).problem


@pytest.mark.parametrize("name,text,line,fragment", [
    ("g.txt", "0.0 intro\n12.5\n20.0 end\n", 2, "expected 'time label'"),
    ("g.txt", "0.0 intro\n1:23 verse\n20.0 end\n", 2, "not a number"),
    ("g.csv", "0,1,intro\n1,2\n", 2, "expected 3 fields"),
    ("g.csv", "0,1,intro\n1,two,verse\n", 2, "end is not a number"),
    ("g.csv", "0,1,intro\n1,2,verse,chorus\n", 2, "expected 3 fields"),
    ("g.csv", "0,1,intro\n1,2,  \n", 2, "missing label"),
    ("g.json", '[{"label": "intro", "start": 0, "end": 1},\n {"label": "verse", "start": 1}]',
     2, "has no 'end'"),
    ("g.json", '[\n{"label": "intro", "start": 0, "end": 1},\n "verse"\n]', 3, "must be an object"),
    ("g.json", '[\n{"label": 3, "start": 0, "end": 1}\n]', 2, "label must be a string"),
    ("g.json", '[\n{"label": "intro", "start": true, "end": 1}\n]', 2, "must be a number"),
    ("g.json", '[\n{"label": "intro", "start": 0, "end": 1},\n{"label": "verse", "start": 1,\n',
     4, "not valid JSON"),
    ("g.json", '{"bpm": 120,\n "segments": [\n  {"start": 0, "end": 1, "label": "intro"},\n'
     '  {"start": 1, "end": "x", "label": "verse"}]}', 4, "not a number"),
])
def test_garbage_names_the_line(tmp_path, name, text, line, fragment):
    path = _write(tmp_path, name, text)
    err = _error(path)
    assert err.line == line
    assert fragment in err.problem
    assert str(err).startswith(f"{path}:{line}: ")


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "1e999"])
def test_non_finite_times(tmp_path, value):
    csv_path = _write(tmp_path, "n.csv", f"0,1,intro\n1,{value},verse\n")
    err = _error(csv_path)
    assert (err.line, "not finite" in err.problem or "negative" in err.problem) == (2, True)
    txt = _write(tmp_path, "n.txt", f"0.0 intro\n{value} verse\n30.0 end\n")
    err = _error(txt, "harmonix")
    assert err.line == 2
    js = _write(tmp_path, "n.json", f'[\n{{"label": "intro", "start": 0, "end": "{value}"}}\n]')
    assert _error(js).line == 2


def test_json_nan_literal(tmp_path):
    path = _write(tmp_path, "n.json", '[\n{"label": "intro", "start": 0, "end": NaN}\n]')
    err = _error(path)
    assert (err.line, "not finite" in err.problem) == (2, True)


def test_negative_times(tmp_path):
    err = _error(_write(tmp_path, "neg.csv", "-0.5,1,intro\n"))
    assert (err.line, "negative" in err.problem) == (1, True)
    err = _error(_write(tmp_path, "neg.txt", "-1.0 intro\n5.0 end\n"), "songformer_msa")
    assert (err.line, "negative" in err.problem) == (1, True)


def test_unsorted(tmp_path):
    err = _error(_write(tmp_path, "u.csv", "0,10,intro\n20,30,verse\n10,20,chorus\n"))
    assert (err.line, "unsorted" in err.problem) == (3, True)
    err = _error(_write(tmp_path, "u.txt", "0.0 intro\n20.0 verse\n10.0 chorus\n30.0 end\n"),
                 "harmonix")
    assert (err.line, "unsorted" in err.problem) == (3, True)
    err = _error(_write(tmp_path, "u_functions.txt", "0.0\tIntro\n9.0\tVerse\n8.0\tEnd\n"))
    assert (err.line, "unsorted" in err.problem) == (3, True)


def test_end_before_start(tmp_path):
    err = _error(_write(tmp_path, "e.csv", "0,10,intro\n10,5,verse\n"))
    assert (err.line, "before it starts" in err.problem) == (2, True)


def test_overlap_is_an_error_beyond_the_tolerance(tmp_path):
    err = _error(_write(tmp_path, "o.csv", "0,10,intro\n9.5,20,verse\n"))
    assert err.line == 2
    assert "overlaps the previous one" in err.problem and "(line 1)" in err.problem
    js = _write(tmp_path, "o.json", json.dumps(
        [{"label": "intro", "start": 0, "end": 10}, {"label": "verse", "start": 9, "end": 20}],
        indent=4))
    err = _error(js)
    assert err.line == 7 and "overlaps" in err.problem


def test_round_off_overlap_and_gap_are_joined(tmp_path):
    overlap = 0.5 * JOIN_TOLERANCE_S
    text = f"0,{10 + overlap},intro\n10,20,verse\n{20 + overlap},30,chorus\n"
    assert _triples(read_labels(_write(tmp_path, "r.csv", text))) == [
        (0.0, 10.0, "intro"), (10.0, 20 + overlap, "verse"), (20 + overlap, 30.0, "chorus"),
    ]


def test_gap_is_filled_with_ignore(tmp_path):
    segments = read_labels(_write(tmp_path, "g.csv", "0,10,intro\n12,20,verse\n"))
    assert _triples(segments) == [(0.0, 10.0, "intro"), (10.0, 12.0, IGNORE), (12.0, 20.0, "verse")]
    np.testing.assert_array_equal(boundaries(segments), [10.0, 12.0])


def test_zero_length_segments_are_dropped(tmp_path):
    segments = read_labels(_write(tmp_path, "z.csv", "0,10,intro\n10,10,bridge\n10,20,verse\n"))
    assert _triples(segments) == [(0.0, 10.0, "intro"), (10.0, 20.0, "verse")]
    txt = _write(tmp_path, "z.txt", "0.0 intro\n10.0 bridge\n10.0 verse\n20.0 end\n")
    assert _triples(read_labels(txt)) == [(0.0, 10.0, "intro"), (10.0, 20.0, "verse")]


@pytest.mark.parametrize("source", ["songformer_msa", "harmonix"])
def test_missing_end_line(tmp_path, source):
    err = _error(_write(tmp_path, "m.txt", "0.0 intro\n10.0 verse\n20.0 outro\n"), source)
    assert (err.line, "missing the final 'end' line" in err.problem) == (3, True)


def test_salami_missing_end_and_lines_after_end(tmp_path):
    err = _error(_write(tmp_path, "m_functions.txt", "0.0\tIntro\n10.0\tVerse\n"))
    assert (err.line, "'end'" in err.problem) == (2, True)
    err = _error(_write(tmp_path, "l_functions.txt", "0.0\tIntro\n10.0\tEnd\n12.0\tSilence\n"))
    assert (err.line, "starts later" in err.problem) == (3, True)


def test_unknown_labels_warn_count_and_strict(tmp_path):
    path = _write(tmp_path, "u.csv", "0,10,intro\n10,20,kazoo solo\n20,30,Kazoo solo\n"
                                     "30,40,glitch\n")
    with pytest.warns(UnknownLabelWarning) as record:
        segments = read_labels(path)
    assert [s.label for s in segments] == ["intro", IGNORE, IGNORE, IGNORE]
    (warning,) = record
    assert (warning.message.count, warning.message.source) == (3, "csv")
    assert warning.message.labels == {"kazoo solo": [2], "Kazoo solo": [3], "glitch": [4]}
    message = str(warning.message)
    assert message.startswith(f"{path}: 3 segment(s)")
    assert "'kazoo solo' (line 2)" in message and "'glitch' (line 4)" in message
    err = _error(path, strict=True)
    assert (err.line, "unknown csv label 'kazoo solo'" in err.problem) == (2, True)


def test_known_ignore_words_do_not_warn(tmp_path):
    path = _write(tmp_path, "k_functions.txt", "0.0\tno_function\n5.0\tTransition\n9.0\tEnd\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [s.label for s in read_labels(path, strict=True)] == [IGNORE, IGNORE]


def test_word_of_another_source_is_unknown_to_a_narrow_table(tmp_path):
    path = _write(tmp_path, "h.txt", "0.0 head\n10.0 end\n")
    with pytest.warns(UnknownLabelWarning):
        assert read_labels(path, "harmonix")[0].label == IGNORE
    assert read_labels(path, "salami")[0].label == "chorus"


def test_undetectable_formats_say_so(tmp_path):
    err = _error(_write(tmp_path, "x.json", '{"beats": [1, 2]}'))
    assert "cannot detect" in err.problem and "source=" in err.problem
    err = _error(_write(tmp_path, "x.lab", "hello world\nthis is prose\n"))
    assert "cannot detect" in err.problem and "source=" in err.problem
    err = _error(_write(tmp_path, "x.json", "42"))
    assert "cannot detect" in err.problem


def test_missing_file_raises_oserror(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_labels(tmp_path / "none.csv")


# --- mapping tables --------------------------------------------------------------------------

@pytest.mark.parametrize("raw,key", [
    ("Pre-Chorus", "prechorus"), ("prechorus", "prechorus"), ("pre chorus", "prechorus"),
    ("verse2", "verse"), ("Chorus_B", "chorus"), ("chorus (a)", "chorus"), ("verse 1a", "verse"),
    ("verse a'", "verse"), ("Verse [2]", "verse"), ("intro-2", "intro"), ("no_function",
    "nofunction"), ("Fade-out", "fadeout"), ("Z", "z"), ("&pause", "&pause"), ("  OUTRO ",
    "outro"), ("2", "2"), ("b", "b"), ("inst.", "inst"),
])
def test_normalize_label(raw, key):
    assert normalize_label(raw) == key


@pytest.mark.parametrize("source,raw,label", [
    ("harmonix", "prechorus", "pre-chorus"), ("salami", "Pre-Chorus", "pre-chorus"),
    ("songformer_json", "pre-chorus", "pre-chorus"),
    ("harmonix", "solo", "inst"), ("harmonix", "break", "inst"),
    ("salami", "Instrumental", "inst"), ("salami", "Interlude", "inst"),
    ("allinone", "solo", "inst"), ("allinone", "break", "inst"),
    ("allinone", "start", "silence"), ("allinone", "end", "silence"),
    ("salami", "Silence", "silence"), ("salami", "silence", "silence"), ("salami", "Z", "silence"),
    ("salami", "&pause", "silence"),
    ("harmonix", "postchorus", "chorus"), ("salami", "Post-Chorus", "chorus"),
    ("harmonix", "verse2", "verse"), ("harmonix", "Chorus_B", "chorus"),
    ("csv", "chorus (a)", "chorus"), ("salami", "no_function", IGNORE),
    ("csv", "Pre-Chorus", "pre-chorus"), ("csv", "instrumental", "inst"),
])
def test_required_mappings(source, raw, label):
    assert LABEL_TABLES[source][normalize_label(raw)] == label


def test_tables_are_valid_and_agree():
    assert set(LABEL_TABLES) == set(SOURCES)
    merged: dict[str, str] = {}
    for source, table in LABEL_TABLES.items():
        for key, label in table.items():
            assert key == normalize_label(key), (source, key)
            assert label in SECTION_LABELS or label == IGNORE, (source, key, label)
            assert merged.setdefault(key, label) == label, (source, key)
    assert set(LABEL_TABLES["csv"]) == set(merged)
    for label in SECTION_LABELS:  # the contract's own words map to themselves everywhere
        assert LABEL_TABLES["csv"][normalize_label(label)] == label
        assert LABEL_TABLES["songformer_json"][normalize_label(label)] == label


def test_section_labels_follow_the_contract():
    contract = json.loads((REPO / "contracts" / "v1.json").read_text())
    assert list(SECTION_LABELS) == contract["sections"]["labels"]


def test_doc_tables_match_the_code():
    doc = (REPO / "docs" / "labels.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- tables:start -->\n(.*)<!-- tables:end -->", doc, re.S)
    assert match is not None, "docs/labels.md lost its table markers"
    assert match.group(1) == render_label_tables()
    for source, table in LABEL_TABLES.items():
        assert len(table) > 0, source


def test_import_needs_no_torch():
    code = ("import sys; import fractalsync_models.training.labels, "
            "fractalsync_models.training.targets; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- Segment, frames, boundaries --------------------------------------------------------------

@pytest.mark.parametrize("args", [
    (1.0, 1.0, "verse"), (2.0, 1.0, "verse"), (-1.0, 1.0, "verse"), (0.0, math.nan, "verse"),
    (0.0, math.inf, "verse"), (0.0, 1.0, "Verse"), (0.0, 1.0, "refrain"),
])
def test_segment_rejects_invalid(args):
    with pytest.raises(ValueError):
        Segment(*args)


def test_segments_to_frames_hand_case():
    segments = [Segment(0.0, 2.0, "intro"), Segment(2.0, 3.0, IGNORE), Segment(3.0, 5.0, "verse"),
                Segment(6.0, 7.0, "pre-chorus")]
    times = [-0.5, 0.0, 1.99, 2.0, 2.5, 3.0, 4.999, 5.0, 5.5, 6.0, 7.0, 9.0]
    np.testing.assert_array_equal(segments_to_frames(segments, times),
                                  [-1, 1, 1, -1, -1, 2, 2, -1, -1, 3, -1, -1])
    assert segments_to_frames([], [0.0, 1.0]).tolist() == [-1, -1]
    assert segments_to_frames(segments, []).shape == (0,)


def test_segments_to_frames_rejects_bad_input():
    with pytest.raises(ValueError, match="sorted and non-overlapping"):
        segments_to_frames([Segment(0, 2, "verse"), Segment(1, 3, "chorus")], [0.5])
    with pytest.raises(ValueError, match="NaN"):
        segments_to_frames([Segment(0, 2, "verse")], [np.nan])
    with pytest.raises(ValueError, match="1-D"):
        segments_to_frames([Segment(0, 2, "verse")], [[0.5]])
    with pytest.raises(TypeError, match="Segment"):
        segments_to_frames([(0, 2, "verse")], [0.5])


def test_boundaries_hand_case():
    segments = [Segment(0, 2, "silence"), Segment(2, 10, "intro"), Segment(10, 20, "chorus"),
                Segment(20, 30, "chorus"), Segment(30, 34, IGNORE), Segment(34, 40, "outro")]
    np.testing.assert_array_equal(boundaries(segments), [2, 10, 30, 34])
    np.testing.assert_array_equal(boundaries(segments, repeats=True), [2, 10, 20, 30, 34])
    assert boundaries(segments[:1]).shape == (0,)
    assert boundaries([]).shape == (0,)
    # a start after a gap (possible in lists built by hand) is a boundary even with equal labels
    np.testing.assert_array_equal(boundaries([Segment(0, 1, "verse"), Segment(2, 3, "verse")]),
                                  [2.0])


# --- hypothesis: round trips and references ------------------------------------------------------

_LABEL_WORDS = list(SECTION_LABELS)


@st.composite
def segment_lists(draw, gaps: bool):
    """Sorted segments with durations >= 10 ms; with ``gaps``, some followed by gaps >= 10 ms."""
    n = draw(st.integers(1, 12))
    t = draw(st.floats(0.0, 100.0, allow_nan=False))
    out = []
    for _ in range(n):
        duration = draw(st.floats(0.01, 60.0, allow_nan=False))
        out.append(Segment(t, t + duration, draw(st.sampled_from(_LABEL_WORDS))))
        t = t + duration
        if gaps and draw(st.booleans()):
            t += draw(st.floats(0.01, 10.0, allow_nan=False))
    return out


def _filled(segments):
    """The segments with the documented gap repair applied."""
    out = []
    for seg in segments:
        if out and seg.start > out[-1].end:
            out.append(Segment(out[-1].end, seg.start, IGNORE))
        out.append(seg)
    return out


@settings(max_examples=60, deadline=None)
@given(segments=segment_lists(gaps=True), header=st.booleans())
@example(segments=[Segment(0.0, 0.01, "pre-chorus")], header=True)
def test_csv_round_trip(tmp_path_factory, segments, header):
    path = tmp_path_factory.mktemp("csv") / "song.csv"
    rows = [f"{s.start!r},{s.end!r},{s.label}" for s in segments]
    path.write_text(("start,end,label\n" if header else "") + "\n".join(rows) + "\n")
    assert read_labels(path) == _filled(segments)


@settings(max_examples=60, deadline=None)
@given(segments=segment_lists(gaps=False))
def test_msa_round_trip(tmp_path_factory, segments):
    path = tmp_path_factory.mktemp("msa") / "song.txt"
    lines = [f"{s.start!r} {s.label}" for s in segments] + [f"{segments[-1].end!r} end"]
    path.write_text("\n".join(lines) + "\n")
    assert detect_source(path) == "songformer_msa"
    assert read_labels(path) == segments


@settings(max_examples=60, deadline=None)
@given(segments=segment_lists(gaps=False), as_strings=st.booleans())
def test_songformer_json_round_trip(tmp_path_factory, segments, as_strings):
    path = tmp_path_factory.mktemp("json") / "song.json"
    conv = repr if as_strings else float
    items = [{"label": s.label, "start": conv(s.start), "end": conv(s.end)} for s in segments]
    path.write_text(json.dumps(items, indent=4))
    assert read_labels(path) == segments


def _frames_reference(segments, times):
    out = []
    for t in times:
        label = -1
        for seg in segments:
            if seg.start <= t < seg.end:
                label = SECTION_LABELS.index(seg.label) if seg.label != IGNORE else -1
        out.append(label)
    return out


@settings(max_examples=80, deadline=None)
@given(segments=segment_lists(gaps=True),
       times=st.lists(st.floats(-10.0, 800.0, allow_nan=False), max_size=50))
def test_segments_to_frames_matches_reference(segments, times):
    segments = _filled(segments)
    times = times + [s.start for s in segments] + [s.end for s in segments]
    assert segments_to_frames(segments, times).tolist() == _frames_reference(segments, times)


@settings(max_examples=80, deadline=None)
@given(segments=segment_lists(gaps=True))
def test_boundaries_match_reference(segments):
    segments = _filled(segments)
    expected = [b.start for a, b in zip(segments, segments[1:], strict=False) if a.label != b.label]
    assert boundaries(segments).tolist() == expected
    assert boundaries(segments, repeats=True).tolist() == [s.start for s in segments[1:]]


_NOISE = st.text(alphabet=st.sampled_from(list("0123456789.,-+eE \t\n\r[]{}\":nailNf_endEnd"
                                               "verschou;#'()\x00é")), max_size=200)


@settings(max_examples=150, deadline=None)
@given(text=st.one_of(_NOISE, st.text(max_size=100)),
       name=st.sampled_from(["x.csv", "x.json", "x.txt", "x_functions.txt", "x.lab"]),
       source=st.sampled_from([None, *SOURCES]))
@example(text='{"segments": {"a": 1}}', name="x.json", source=None)
@example(text='[{"label": "verse", "start": "1e400", "end": 2}]', name="x.json", source=None)
def test_any_text_gives_segments_or_a_label_error(tmp_path_factory, text, name, source):
    path = tmp_path_factory.mktemp("fuzz") / name
    path.write_text(text, encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnknownLabelWarning)
        try:
            segments = read_labels(path, source)
        except LabelError as exc:
            assert str(exc).startswith(str(path))
            return
    assert segments and all(isinstance(s, Segment) for s in segments)
    assert all(a.end == b.start for a, b in zip(segments, segments[1:], strict=False))
