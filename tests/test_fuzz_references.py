"""Property-based test of ``load_reference(name)``: a shipped schedule's name loads it; anything else (a path
such as ``../x``, an empty or unicode name, another type) raises ScheduleError naming the name and the
choices."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from fuzzing import check_message, fuzz
from smoothcache import Schedule, ScheduleError
from smoothcache.references import REFERENCE_DIR, load_reference, reference_names

NAMES = reference_names()
TRAVERSALS = [
    f"../{REFERENCE_DIR.name}/{NAMES[0]}",
    f"./{NAMES[0]}",
    f"{REFERENCE_DIR}/{NAMES[0]}",
    f"{NAMES[0]}/",
    f"{NAMES[0]}.json",
    "../zoo/digits/config",
    "..",
    ".",
    "/",
    "",
    "\x00",
    f"{NAMES[0]}\x00",
    f"{NAMES[0]}\n",
    "NOTICE",
    NAMES[0].upper(),
    "\u00e9t\u00e9",
    "x" * 5000,
]


@fuzz()
@given(
    name=st.sampled_from(NAMES + TRAVERSALS)
    | st.text(max_size=30)
    | st.none()
    | st.integers()
    | st.builds(
        lambda a, b: f"{a}/{b}", st.sampled_from(["..", "../..", ".", "/etc", ""]), st.sampled_from(NAMES)
    )
)
@example(name=f"../{REFERENCE_DIR.name}/{NAMES[0]}")
@example(name=f"{REFERENCE_DIR}/{NAMES[0]}")
def test_only_shipped_names_load(name):
    try:
        schedule = load_reference(name)
    except ScheduleError as err:
        message = check_message(err, repr(name)[:200], NAMES[0])
        assert "no shipped schedule named" in message
        assert name not in NAMES
        return
    assert name in NAMES
    assert isinstance(schedule, Schedule) and schedule.num_steps >= 1
    assert all(row[0] == 1 and set(row) <= {0, 1} for row in schedule.entries.values())
