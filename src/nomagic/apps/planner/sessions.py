"""Session classes: what kind of day an activity (and a day of activities) was.

The planner recommends one of four classes, so the log has to be read in the same words.
A session is ``easy``, ``long`` or ``hard``; a day is the hardest of its sessions, or ``rest``.

The rule for one session, checked in this order (the first that holds decides):

1. **hard by name** — the name holds a workout word (interval(s), tempo, race/racing,
   threshold, fartlek, repeat(s) (so also "hill repeats"), track, vo2/vo2max), or a
   repetition pattern such as "6x400", "5 x 1km", "3×10min" (digits, ``x`` or ``×``, digits).
2. **hard by effort** — RPE ≥ 7, or the average heart rate ≥ 85 % of ``hr_max``
   (only when both are known).
3. **long** — the name holds the word "long", or, for the sports that have long sessions, the
   minutes (moving time where known, else elapsed) reach ``LONG_MINUTES[sport]`` or the distance
   reaches ``LONG_KM[sport]``: run 90 min / 20 km, ride 150 min / 70 km, swim 60 min / 4 km,
   walk and hike 180 min. Strength and other sessions are never long by duration.
4. **easy** — everything else.

Hard wins over long (a long run with a tempo block is a hard day), and a day with no session
is ``rest``. A day's class is the hardest of its sessions: hard > long > easy.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from nomagic.errors import InvalidInputError

from .records import Activity

#: The classes in the order the planner (and its models) number them.
CLASSES = ("rest", "easy", "long", "hard")

#: RPE from which a session counts as hard (Borg CR-10: 7 is "very hard").
HARD_RPE = 7.0
#: Fraction of the maximum heart rate from which a session's average counts as hard.
HARD_HR_FRACTION = 0.85

#: Minutes from which a session of this sport is long.
LONG_MINUTES = {"run": 90.0, "ride": 150.0, "swim": 60.0, "walk": 180.0, "hike": 180.0}
#: Kilometres from which a session of this sport is long.
LONG_KM = {"run": 20.0, "ride": 70.0, "swim": 4.0}

_HARD_WORDS = re.compile(
    r"\b(intervals?|tempo|race|racing|threshold|fartlek|repeats?|track|vo2\w*)\b"
    r"|\d+\s*[x×]\s*\d+",
    re.IGNORECASE,
)
_LONG_WORD = re.compile(r"\blong\b", re.IGNORECASE)

_RANK = {c: i for i, c in enumerate(CLASSES)}


def session_minutes(activity: Activity) -> float:
    """Minutes of a session: moving time where the source gives it, else elapsed duration."""
    seconds = activity.moving_s if activity.moving_s is not None else activity.duration_s
    return float(seconds) / 60.0


def session_class(activity: Activity, hr_max: float | None = None) -> str:
    """``"easy"``, ``"long"`` or ``"hard"`` for one session, by the rule in the module docstring."""
    name = activity.name or ""
    if _HARD_WORDS.search(name):
        return "hard"
    if activity.rpe is not None and activity.rpe >= HARD_RPE:
        return "hard"
    if hr_max is not None and activity.avg_hr is not None and activity.avg_hr >= HARD_HR_FRACTION * hr_max:
        return "hard"
    if _LONG_WORD.search(name):
        return "long"
    long_min = LONG_MINUTES.get(activity.sport)
    if long_min is not None and session_minutes(activity) >= long_min:
        return "long"
    long_km = LONG_KM.get(activity.sport)
    if long_km is not None and activity.distance_m is not None and activity.distance_m / 1000.0 >= long_km:
        return "long"
    return "easy"


def day_class(activities: Iterable[Activity], hr_max: float | None = None) -> str:
    """The class of a day: the hardest of its sessions (hard > long > easy), ``"rest"`` if none."""
    best = "rest"
    for activity in activities:
        c = session_class(activity, hr_max)
        if _RANK[c] > _RANK[best]:
            best = c
    return best


def class_index(name: str) -> int:
    """The position of a class name in ``CLASSES``."""
    try:
        return _RANK[name]
    except KeyError:
        raise InvalidInputError(f"unknown session class {name!r}; expected one of {', '.join(CLASSES)}") from None
